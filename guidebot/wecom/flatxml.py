"""A fast path for the flat XML WeCom sends, so most callbacks skip building an element tree.

Nearly every callback envelope and most decrypted events are one `<xml>` root with leaf
children, each holding a CDATA section or plain text. For a document of exactly that shape,
`flat_children` returns the children as (name, text) pairs, equal to what defusedxml and
ElementTree would give; for anything else (nesting, entities or character references, an
XML declaration, a DTD, attributes, characters XML forbids, a carriage return that XML would
normalise) it returns None and the caller parses with defusedxml as before. The accepted
shape has no DTD and no references at all, so it cannot carry entity tricks.

This runs on every callback, so it is written for speed: see the comments on the patterns.
"""

from __future__ import annotations

import re

_WS = "[ \t\n]*+"  # not \s: Python's \s also matches characters XML forbids, such as \x1c
_NAME = "[A-Za-z_][A-Za-z0-9_]*+"
# Everything up to the first "]]>", which ends a CDATA section and may not appear in
# character data at all. Runs of a negated class, because re scans those far faster than a
# lazy `.*?` that tries "]]>" at every character; possessive (`*+`), so a match that fails
# gives up at once instead of backtracking.
_CDATA = r"[^\]]*+(?:\](?!\]>)[^\]]*+)*+"
_TEXT = r"[^<&\]]*+(?:\](?!\]>)[^<&\]]*+)*+"
_CHILD = re.compile(rf"<({_NAME})>(?:<!\[CDATA\[({_CDATA})\]\]>|({_TEXT}))</\1>{_WS}")
_OPEN = re.compile(rf"<xml>{_WS}")
_CLOSE = re.compile(rf"</xml>{_WS}\Z")

# What XML 1.0 does not allow in a document (expat refuses it), and "\r", which it rewrites:
# the C0 controls but tab and newline, lone surrogates, U+FFFE and U+FFFF. They are looked for
# in the UTF-8 bytes, where C-level bytes methods find them several times faster than a regex
# search of the text: a control is one byte of its own (no multi-byte sequence holds a byte
# below 0x80), U+FFFE and U+FFFF are always these three bytes (0xEF only ever leads a
# sequence), and a lone surrogate cannot be encoded or decoded at all.
_CONTROLS = bytes([*range(0x00, 0x09), *range(0x0B, 0x20)])
_NONCHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")


def flat_children(document: str | bytes) -> list[tuple[str, str]] | None:
    """The root `<xml>`'s leaf children as (name, stripped text) pairs, or None if not flat."""
    try:
        if isinstance(document, bytes):
            raw = document
            document = document.decode("utf-8")
        else:
            raw = document.encode("utf-8")
    except UnicodeError:  # bytes that are not UTF-8, or a str with a lone surrogate
        return None
    if _has_forbidden_characters(raw):
        return None
    opened = _OPEN.match(document)
    if opened is None:
        return None
    children = []
    position = opened.end()
    while child := _CHILD.match(document, position):
        name, cdata, text = child.groups()
        children.append((name, (cdata if cdata is not None else text).strip()))
        position = child.end()
    if not _CLOSE.match(document, position):
        return None
    return children


def _has_forbidden_characters(raw: bytes) -> bool:
    if len(raw.translate(None, _CONTROLS)) != len(raw):
        return True
    return not raw.isascii() and any(sequence in raw for sequence in _NONCHARACTERS)
