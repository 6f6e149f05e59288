"""A fast path for the flat XML WeCom sends, so most callbacks skip building an element tree.

Nearly every callback envelope and most decrypted events are one `<xml>` root with leaf
children, each holding a CDATA section or plain text. For a document of exactly that shape,
`flat_children` returns the children as (name, text) pairs, equal to what defusedxml and
ElementTree would give; for anything else (nesting, entities or character references, an
XML declaration, a DTD, attributes, characters XML forbids, a carriage return that XML would
normalise) it returns None and the caller parses with defusedxml as before. The accepted
shape has no DTD and no references at all, so it cannot carry entity tricks.
"""

from __future__ import annotations

import re

_WS = "[ \t\n]*"  # not \s: Python's \s also matches characters XML forbids, such as \x1c
_CHILD = re.compile(
    rf"<([A-Za-z_][A-Za-z0-9_]*)>(?:<!\[CDATA\[(.*?)\]\]>|([^<&]*))</\1>{_WS}", re.DOTALL
)
_OPEN = re.compile(rf"<xml>{_WS}")
_CLOSE = re.compile(rf"</xml>{_WS}\Z")
# What XML 1.0 does not allow in a document (expat refuses it), and "\r", which it rewrites.
_SPECIAL = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]")


def flat_children(document: str | bytes) -> list[tuple[str, str]] | None:
    """The root `<xml>`'s leaf children as (name, stripped text) pairs, or None if not flat."""
    if isinstance(document, bytes):
        try:
            document = document.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if _SPECIAL.search(document):
        return None
    opened = _OPEN.match(document)
    if opened is None:
        return None
    children = []
    position = opened.end()
    while True:
        child = _CHILD.match(document, position)
        if child is None:
            break
        name, cdata, text = child.groups()
        value = cdata if cdata is not None else text
        if "]]>" in value:  # ends a CDATA section; not allowed in character data
            return None
        children.append((name, value.strip()))
        position = child.end()
    if not _CLOSE.match(document, position):
        return None
    return children
