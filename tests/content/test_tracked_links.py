"""GET /r/{token}: genuine links are logged and redirected; anything else is a 404 that logs
nothing but one line saying a token was rejected."""

from __future__ import annotations

import base64
import logging

import pytest

from guidebot.content import links
from tests.content.harness import PNG


async def _link(h, **claims) -> tuple[dict, str]:
    item = await h.item(kind="link", title="春季新品", url="https://example.com/spring?x=1")
    token, _ = links.mint(
        h.settings.secret_key, item_id=item["id"], now=h.clock.now(), **{"guide": "g1", **claims}
    )
    return item, token


async def test_an_open_is_logged_and_redirected(h):
    await h.add("g1", "wmc1")
    item, token = await _link(h, customer="wmc1", task_id=9, step="day3")
    response = await h.client.get(
        f"/r/{token}", allow_redirects=False, headers={"User-Agent": "MicroMessenger/8.0"}
    )
    assert response.status == 302
    assert response.headers["Location"] == "https://example.com/spring?x=1"
    assert response.headers["Cache-Control"] == "no-store"
    [opened] = await h.opens()
    assert (opened.item_id, opened.guide_userid, opened.external_userid) == (
        item["id"],
        "g1",
        "wmc1",
    )
    assert (opened.task_id, opened.step, opened.first, opened.store_id) == (9, "day3", True, 11)
    assert opened.user_agent_hash and "MicroMessenger" not in opened.user_agent_hash
    assert opened.opened_at == h.clock.now()


async def test_unique_per_customer_and_item(h):
    item, token = await _link(h, customer="wmc1")
    _, again = await _link(h, customer="wmc1")  # another item; same customer
    other_guide, _ = links.mint(
        h.settings.secret_key, item_id=item["id"], guide="g3", customer="wmc1", now=h.clock.now()
    )
    for t in (token, token, other_guide, again):
        assert (await h.client.get(f"/r/{t}", allow_redirects=False)).status == 302
    assert len(await h.opens()) == 4
    assert [o.first for o in await h.opens()] == [True, False, False, True]
    assert len(await h.visitors()) == 2
    _status, one = await h.api("GET", f"/content/{item['id']}")
    assert one["numbers"] == {"forwards": 0, "opens": 3, "unique_opens": 1}


async def test_without_a_customer_a_visitor_cookie_tells_visitors_apart(h):
    _item, token = await _link(h)  # the bot's cards: guide only
    first = await h.client.get(f"/r/{token}", allow_redirects=False)
    cookie = first.cookies["gb_v"]
    assert cookie["httponly"] and cookie["path"] == "/r/"
    await h.client.get(f"/r/{token}", allow_redirects=False)  # the same browser again
    h.client.session.cookie_jar.clear()
    await h.client.get(f"/r/{token}", allow_redirects=False)  # someone else
    assert [o.first for o in await h.opens()] == [True, False, True]
    assert {v.visitor_key.split(":")[0] for v in await h.visitors()} == {"v"}


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize("how", ["payload", "signature", "truncated", "forged", "swapped"])
async def test_altered_or_forged_tokens_get_404_and_nothing_is_logged(h, caplog, how):
    item, token = await _link(h, customer="wmc1")
    payload, signature = token.split(".")
    if how == "payload":
        bad = f"{_flip(payload, 12)}.{signature}"
    elif how == "signature":
        bad = f"{payload}.{_flip(signature, 0)}"
    elif how == "truncated":
        bad = token[:-4]
    elif how == "forged":  # right shape, signed with a guessed key
        bad, _ = links.mint("x" * 40, item_id=item["id"], guide="g1", now=h.clock.now())
    else:  # a genuine payload for another customer under this token's signature
        other, _ = links.mint(
            h.settings.secret_key,
            item_id=item["id"],
            guide="g1",
            customer="wmc2",
            now=h.clock.now(),
        )
        bad = f"{other.split('.')[0]}.{signature}"
    with caplog.at_level(logging.INFO):
        response = await h.client.get(f"/r/{bad}", allow_redirects=False)
    assert response.status == 404
    assert "Location" not in response.headers
    assert await h.opens() == [] and await h.visitors() == []
    assert "gb_v" not in response.cookies
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "rejected" in logged
    assert "wmc" not in logged and "g1" not in logged and bad not in logged


async def test_a_deleted_item_is_gone_and_not_counted(h):
    item, token = await _link(h, customer="wmc1")
    await h.api("DELETE", f"/content/{item['id']}")
    assert (await h.client.get(f"/r/{token}", allow_redirects=False)).status == 404
    assert await h.opens() == []


async def test_text_and_image_items_get_a_small_page(h):
    text = await h.item(kind="text", title="问候话术", body="您好 <b>欢迎</b>")
    image = await h.item(
        kind="image",
        title="搭配图",
        media={
            "filename": "a.png",
            "content_type": "text/html",
            "data_base64": base64.b64encode(PNG).decode(),
        },
    )
    token, _ = links.mint(h.settings.secret_key, item_id=text["id"], guide="g1", now=h.clock.now())
    page = await h.client.get(f"/r/{token}")
    body = await page.text()
    assert page.status == 200 and "问候话术" in body
    assert "&lt;b&gt;欢迎&lt;/b&gt;" in body  # escaped

    token, _ = links.mint(h.settings.secret_key, item_id=image["id"], guide="g1", now=h.clock.now())
    page = await h.client.get(f"/r/{token}")
    assert f'src="/r/{token}/media"' in await page.text()
    media = await h.client.get(f"/r/{token}/media")
    assert media.status == 200 and await media.read() == PNG
    assert media.headers["Content-Type"] == "image/png"  # from the bytes, not as declared
    assert len(await h.opens()) == 2  # the media request is not another open
    assert (await h.client.get(f"/r/{token[:-2]}/media")).status == 404
