"""The simulator finds a pair from either side without scanning every pair.

`Relations` (guidebot.wecom.simulator.records) keeps the pairs by customer and by guide beside
the (userid, external_userid) map, so a profile read (all of a customer's guides) and a guide's
customer list cost what that customer or guide has, not what the whole corp has. The indexes
must agree with the map however a pair is set: as the state's own add and transfer do, or as a
benchmark seeding the state directly does.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guidebot.wecom.simulator.records import Relation, Relations
from tests.fuzzing import examples

PAIRS = st.lists(
    st.tuples(st.sampled_from(["g1", "g2", "g3"]), st.sampled_from(["w1", "w2", "w3", "w4"])),
    max_size=20,
)


@settings(max_examples=examples(200))
@given(sets=PAIRS, deletes=PAIRS)
def test_either_side_finds_what_a_scan_of_every_pair_finds(sets, deletes):
    book = Relations()
    for n, (userid, ext) in enumerate(sets):
        book[(userid, ext)] = Relation(userid, ext, createtime=n)
    for key in deletes:
        if key in book:
            del book[key]
    for ext in ("w1", "w2", "w3", "w4", "nobody"):
        scanned = [r for (_, e), r in book.items() if e == ext]
        assert sorted(book.of_customer(ext), key=id) == sorted(scanned, key=id)
    for userid in ("g1", "g2", "g3", "nobody"):
        scanned = [r for (u, _), r in book.items() if u == userid]
        assert sorted(book.of_guide(userid), key=id) == sorted(scanned, key=id)


def test_a_replaced_pair_is_found_as_its_new_relation():
    book = Relations()
    book[("g1", "w1")] = Relation("g1", "w1", createtime=1)
    book[("g1", "w1")] = newer = Relation("g1", "w1", createtime=2)
    assert book.of_customer("w1") == [newer] == book.of_guide("g1")


@pytest.mark.parametrize("call", ["pop", "popitem", "clear", "update", "setdefault"])
def test_what_would_bypass_the_indexes_is_refused(call):
    book = Relations()
    book[("g1", "w1")] = Relation("g1", "w1", createtime=1)
    with pytest.raises(TypeError, match="one pair at a time"):
        getattr(Relations, call)(book, ("g1", "w1"))
    assert book.of_customer("w1") and len(book) == 1
