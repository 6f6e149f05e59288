"""The flat-XML fast path gives exactly what defusedxml gives, or steps aside."""

from __future__ import annotations

from pathlib import Path

import defusedxml.ElementTree as defused_et
import pytest
from defusedxml import DefusedXmlException
from hypothesis import given, settings
from hypothesis import strategies as st

from guidebot.wecom.flatxml import flat_children
from tests.fuzzing import examples

FIXTURES = Path(__file__).parents[1] / "fixtures" / "wecom"
NOT_FLAT = "not flat"
REFUSED = "refused"


def by_tree(document: str | bytes):
    """What the slow path reads: (name, stripped text) per child, if every child is a leaf."""
    try:
        root = defused_et.fromstring(
            document, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except (DefusedXmlException, defused_et.ParseError, ValueError, LookupError):
        return REFUSED
    if root.tag != "xml" or any(len(child) for child in root):
        return NOT_FLAT
    return [(child.tag, (child.text or "").strip()) for child in root]


# Pieces chosen to sit on every edge the fast path must respect.
PIECES = ["a", "中", " ", "\n", "\t", "\r", "\x1c", "\u3000", "\x00", "&", "&amp;", "&#60;"]
PIECES += ["<", ">", "]", "]]>", "<![CDATA[", "\ufffe", "\ud800", "Item"]
TRICKY_TEXT = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
NAMES = st.sampled_from(["ToUserName", "Event", "Item", "xml", "a_1", "Bad-Name", "名", "A B"])
WHITESPACE = st.sampled_from(["", "\n", " \t", "\r\n", "\x1c"])


@st.composite
def child(draw) -> str:
    name = draw(NAMES)
    closing = draw(st.sampled_from([name, name, name, "Other"]))
    text = draw(TRICKY_TEXT)
    body = draw(
        st.sampled_from([f"<![CDATA[{text}]]>", text, f" <![CDATA[{text}]]>", f"<x>{text}</x>"])
    )
    return f"<{name}>{body}</{closing}>" + draw(WHITESPACE)


@st.composite
def document(draw) -> str:
    head = draw(
        st.sampled_from(["<xml>", "<xml>", "<?xml version='1.0'?><xml>", " <xml>", "<root>"])
    )
    children = "".join(draw(st.lists(child(), max_size=5)))
    tail = draw(st.sampled_from(["</xml>", "</xml>", "</xml>\n", "</xml>junk", "</root>"]))
    return head + draw(WHITESPACE) + children + tail


@settings(max_examples=examples(3000), deadline=None)
@given(document())
def test_whatever_the_fast_path_accepts_the_tree_reads_alike(doc):
    fast = flat_children(doc)
    if fast is not None:
        assert fast == by_tree(doc)
    encoded = doc.encode("utf-8", "surrogatepass")
    fast_bytes = flat_children(encoded)
    if fast_bytes is not None:
        assert fast_bytes == by_tree(encoded)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.xml")), ids=lambda p: p.stem)
def test_official_samples_read_alike_and_flat_ones_take_the_fast_path(path):
    document = path.read_bytes()
    expected = by_tree(document)
    fast = flat_children(document)
    if expected == NOT_FLAT:
        assert fast is None
    else:
        assert fast == expected


def test_the_usual_callback_shapes_are_flat():
    envelope = (
        b"<xml><ToUserName><![CDATA[ww1]]></ToUserName><Encrypt><![CDATA[AbC+/=]]></Encrypt>"
        b"<AgentID><![CDATA[1000002]]></AgentID></xml>"
    )
    assert flat_children(envelope) == [
        ("ToUserName", "ww1"),
        ("Encrypt", "AbC+/="),
        ("AgentID", "1000002"),
    ]
    add = (FIXTURES / "add_external_contact.xml").read_text()
    assert flat_children(add) is not None


@pytest.mark.parametrize(
    "document",
    [
        "<!DOCTYPE xml [<!ENTITY e 'x'>]><xml><A>&e;</A></xml>",
        "<xml><A>&lt;</A></xml>",
        "<xml><A>&#60;</A></xml>",
        "<xml><A x='1'>v</A></xml>",
        "<xml><A><![CDATA[a]]>b]]></A></xml>",
        "<xml><A>a\rb</A></xml>",
        "<xml><A>\x1c</A></xml>",
        "<xml><A/></xml>",
        "<xml><A>v</B></xml>",
        "\ufeff<xml></xml>",
    ],
)
def test_anything_unusual_is_left_to_defusedxml(document):
    assert flat_children(document) is None
