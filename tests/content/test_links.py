"""Tracked-link tokens: genuine ones verify; anything altered, truncated or forged does not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guidebot.content import links

KEY = "k" * 40
NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)


def test_round_trip_carries_every_field():
    token, claims = links.mint(
        KEY, item_id=7, guide="g1", customer="wmc1", task_id=42, step="day3", now=NOW
    )
    got = links.verify(KEY, token)
    assert got == claims
    assert (got.item_id, got.guide, got.customer, got.task_id, got.step) == (
        7,
        "g1",
        "wmc1",
        42,
        "day3",
    )
    assert got.issued_at == NOW and got.mass_send_id is None
    assert len(token) < 160 and token.isascii() and "=" not in token


def test_unknown_parts_are_none_and_nonces_differ():
    first, a = links.mint(KEY, item_id=1, guide="g1", now=NOW)
    second, b = links.mint(KEY, item_id=1, guide="g1", now=NOW)
    assert first != second and a.nonce != b.nonce
    assert (a.customer, a.task_id, a.step) == (None, None, None)


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize("where", ["payload", "signature"])
def test_altered_token_is_rejected(where):
    token, _ = links.mint(KEY, item_id=7, guide="g1", customer="wmc1", now=NOW)
    payload, signature = token.split(".")
    if where == "payload":
        altered = f"{_flip(payload, 10)}.{signature}"
    else:
        altered = f"{payload}.{_flip(signature, 3)}"
    assert links.verify(KEY, altered) is None


def test_payload_swapped_for_another_customer_is_rejected():
    token, _ = links.mint(KEY, item_id=7, guide="g1", customer="wmc1", now=NOW)
    other, _ = links.mint(KEY, item_id=7, guide="g1", customer="wmc2", now=NOW)
    assert links.verify(KEY, other.split(".")[0] + "." + token.split(".")[1]) is None


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_token_is_rejected(cut):
    token, _ = links.mint(KEY, item_id=7, guide="g1", now=NOW)
    assert links.verify(KEY, token[:-cut]) is None
    assert links.verify(KEY, token[cut:]) is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "a.b.c", "x" * 700, "eyJ.%%%", "W10.AAAAAAAAAAAAAAAAAAAAAA", "ä.ö"],
)
def test_garbage_is_rejected(token):
    assert links.verify(KEY, token) is None


def test_another_key_does_not_verify():
    token, _ = links.mint(KEY, item_id=7, guide="g1", now=NOW)
    assert links.verify("z" * 40, token) is None


def test_a_signed_but_malformed_payload_is_rejected():
    # Signed with the right key, but not our shape (an older or future version).
    payload = links.b64e(b'[2,7,"g1","",0,"",0,1,"n"]')
    signature = links.b64e(links._mac(links.derive_key(KEY), payload))
    assert links.verify(KEY, f"{payload}.{signature}") is None


def test_the_nonce_is_readable_for_reconciliation_only():
    token, claims = links.mint(KEY, item_id=7, guide="g1", now=NOW)
    assert links.unverified_nonce(token) == claims.nonce
    assert links.unverified_nonce("garbage") is None
