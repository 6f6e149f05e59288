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


async def _browse(h, token: str, cookies: dict[str, str] | None = None, **headers: str):
    """A browser that keeps cookies opens the link and follows it back to itself once."""
    response = await h.client.get(
        f"/r/{token}", allow_redirects=False, cookies=cookies, headers=headers
    )
    back = response.headers.get("Location", "")
    if response.status == 302 and back.startswith("?seen="):
        response = await h.client.get(f"/r/{token}{back}", allow_redirects=False, headers=headers)
    return response


async def test_without_a_customer_a_visitor_is_a_browser_with_an_id_guidebot_signed(h):
    item, token = await _link(h)  # the bot's cards and mass sends: guide only
    first = await h.client.get(f"/r/{token}", allow_redirects=False)
    # Logged as an open of nobody known; the browser gets an id and comes back once with it,
    # to the address naming that open (signed: it becomes the visitor's open).
    seen = first.headers["Location"]
    assert first.status == 302 and seen.startswith("?seen=")
    assert links.verify_open_ref(h.settings.secret_key, seen.removeprefix("?seen="))
    cookie = first.cookies["gb_v"]
    assert cookie["httponly"] and cookie["path"] == "/r/"
    assert links.verify_visitor(h.settings.secret_key, cookie.value)
    assert [(o.visitor_key, o.first) for o in await h.opens()] == [("u:", False)]
    assert await h.visitors() == []
    back = await h.client.get(f"/r/{token}{seen}", allow_redirects=False)
    assert back.headers["Location"] == "https://example.com/spring?x=1"
    assert "gb_v" not in back.cookies
    [visitor] = await h.visitors()
    assert visitor.visitor_key.startswith("v:") and cookie.value not in visitor.visitor_key
    # The same open, now the visitor's (and their first of the item).
    assert [(o.visitor_key, o.first) for o in await h.opens()] == [(visitor.visitor_key, True)]

    again = await h.client.get(f"/r/{token}", allow_redirects=False)  # the same browser
    assert again.headers["Location"] == "https://example.com/spring?x=1"
    h.client.session.cookie_jar.clear()
    await _browse(h, token)  # someone else
    assert [o.first for o in await h.opens()] == [True, False, True]
    assert len(await h.visitors()) == 2
    # The same browser opening another guide's link of the item is still one visitor.
    other, _ = links.mint(h.settings.secret_key, item_id=item["id"], guide="g3", now=h.clock.now())
    await h.client.get(f"/r/{other}", allow_redirects=False)
    assert len(await h.visitors()) == 2


async def test_scripted_opens_without_a_signed_id_add_opens_never_visitors(h):
    item, token = await _link(h)
    forged = links.mint_visitor("x" * 40)  # signed with a guessed key
    for n in range(50):
        h.client.session.cookie_jar.clear()
        made_up = [{"gb_v": forged}, {"gb_v": f"v{n:020d}.{n:022d}"}, None][n % 3]
        response = await h.client.get(f"/r/{token}", allow_redirects=False, cookies=made_up)
        assert response.status == 302
        h.client.session.cookie_jar.clear()  # the script never sends back what it was given
        await h.client.get(f"/r/{token}?seen=1", allow_redirects=False, cookies=made_up)
    assert len(await h.opens()) == 50
    assert await h.visitors() == []
    _status, one = await h.api("GET", f"/content/{item['id']}")
    assert one["numbers"] == {"forwards": 0, "opens": 50, "unique_opens": 0}


async def test_one_clients_burst_of_new_visitors_is_capped(h):
    from guidebot.content.opens import VISITOR_BURST, VISITOR_BURST_WINDOW

    _item, token = await _link(h)
    for _ in range(VISITOR_BURST + 5):  # a script that takes every id and brings it back
        h.client.session.cookie_jar.clear()
        await _browse(h, token)
    assert len(await h.opens()) == VISITOR_BURST + 5
    assert len(await h.visitors()) == VISITOR_BURST
    # Another item, and the same client once the window has passed, count again.
    _, other = await _link(h)
    h.client.session.cookie_jar.clear()
    await _browse(h, other)
    assert len(await h.visitors()) == VISITOR_BURST + 1
    h.clock.advance(VISITOR_BURST_WINDOW)
    h.client.session.cookie_jar.clear()
    await _browse(h, token)
    assert len(await h.visitors()) == VISITOR_BURST + 2


async def test_behind_a_trusted_balancer_each_client_has_its_own_burst(
    aiohttp_client, migrated_sqlite_url, clock, tmp_path
):
    from guidebot.content.opens import VISITOR_BURST
    from tests.content.harness import start_harness

    h = await start_harness(
        aiohttp_client, migrated_sqlite_url, clock, tmp_path, trusted_proxies=("127.0.0.0/8",)
    )
    _item, token = await _link(h)
    for n in range(VISITOR_BURST + 2):  # one client, making up a forwarded address each time
        h.client.session.cookie_jar.clear()
        await _browse(h, token, **{"X-Forwarded-For": f"192.0.2.{n}, 198.51.100.1"})
    assert len(await h.visitors()) == VISITOR_BURST
    h.client.session.cookie_jar.clear()
    await _browse(h, token, **{"X-Forwarded-For": "198.51.100.2"})  # someone else
    assert len(await h.visitors()) == VISITOR_BURST + 1


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
