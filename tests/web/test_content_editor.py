"""The content library written from /admin/content: create, edit, retire, media, preview and
the stores that see an item, through the form as a browser posts it; each change in the audit
trail; a bad field shows its error in the page's language and nothing is saved."""

from __future__ import annotations

import re

import aiohttp
from sqlalchemy import func, select

from guidebot.audit.models import AuditEntry
from guidebot.content import service
from guidebot.content.models import ContentItem
from tests.web.conftest import admin_cookie, guide_cookie

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _form(csrf: str, **fields: object) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    for name, value in fields.items():
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, bytes):
                form.add_field(name, one, filename="cover.png", content_type="image/png")
            else:
                form.add_field(name, str(one))
    return form


async def _hq(h, sessions):
    value = await sessions.account("boss", "hq", [])
    return admin_cookie(value), sessions.csrf(value)


async def _count(h, model) -> int:
    async with h.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_hq_creates_edits_previews_and_retires_an_item(h, sessions):
    cookie, csrf = await _hq(h, sessions)
    page = await h.client.get("/admin/content/new", headers=cookie)
    assert page.status == 200
    html = await page.text()
    assert "新建内容" in html and "张江店" in html and "New content" not in html

    created = await h.client.post(
        "/admin/content/new",
        headers=cookie,
        allow_redirects=False,
        data=_form(
            csrf,
            kind="image",
            title="春季新品海报",
            summary="三月上新",
            tags="春季、新品",
            stores=["11"],
            media=PNG,
        ),
    )
    assert created.status == 303, await created.text()
    item_id = int(re.search(r"/admin/content/(\d+)", created.headers["Location"])[1])
    async with h.sessions() as session:
        item = await service.get_item(session, item_id)
        assert (item.kind, item.tags, item.stores) == ("image", ["春季", "新品"], ["11"])
        media = await service.get_media(session, item_id)
        assert media.data == PNG

    # The sidebar's list: g1 of store 11 sees it, g2 of store 12 does not.
    for guide, seen in (("g1", ["春季新品海报"]), ("g2", [])):
        listing = await h.client.get(
            "/sidebar/api/content", headers=guide_cookie(sessions.guide(guide))
        )
        assert [i["title"] for i in (await listing.json())["items"]] == seen, guide
    listing = await (await h.client.get("/admin/content", headers=cookie)).text()
    assert '<td data-testid="stores">张江店</td>' in listing
    edit = await (await h.client.get(f"/admin/content/{item_id}?saved=1", headers=cookie)).text()
    assert "已保存" in edit and "春季新品海报" in edit and "cover.png" in edit
    changed = await h.client.post(
        f"/admin/content/{item_id}",
        headers=cookie,
        allow_redirects=False,
        data=_form(csrf, kind="image", title="春季新品海报（第二版）", tags="春季", stores=[]),
    )
    assert changed.status == 303
    g2 = await h.client.get("/sidebar/api/content", headers=guide_cookie(sessions.guide("g2")))
    assert [i["title"] for i in (await g2.json())["items"]] == ["春季新品海报（第二版）"]  # all
    listing = await (await h.client.get("/admin/content", headers=cookie)).text()
    assert f'<a href="/admin/content/{item_id}">春季新品海报（第二版）</a>' in listing
    assert "所有门店" in listing

    preview = await h.client.get(f"/admin/content/{item_id}/preview", headers=cookie)
    body = await preview.text()
    assert "春季新品海报（第二版）" in body and f'src="/admin/content/{item_id}/media"' in body
    picture = await h.client.get(f"/admin/content/{item_id}/media", headers=cookie)
    assert picture.headers["Content-Type"] == "image/png" and await picture.read() == PNG

    retired = await h.client.post(
        f"/admin/content/{item_id}/retire", headers=cookie, allow_redirects=False, data=_form(csrf)
    )
    assert retired.status == 303
    async with h.sessions() as session:
        assert (await service.search_items(session))[1] == 0
        actions = list(
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.target == f"content:{item_id}")
            )
        )
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "content.update")
        )
    assert sorted(actions) == ["content.create", "content.delete", "content.update"]
    assert entry.actor == "hq:boss"
    assert entry.before["title"] == "春季新品海报" and entry.after["title"].endswith("（第二版）")


async def test_a_bad_field_shows_its_error_in_the_pages_language_and_saves_nothing(h, sessions):
    cookie, csrf = await _hq(h, sessions)
    for lang, words in (
        ("zh", "「链接」须为 http(s) 网址"),
        ("en", "'Link' must be an http(s) URL"),
    ):
        response = await h.client.post(
            f"/admin/content/new?lang={lang}",
            headers=cookie,
            data=_form(csrf, kind="link", title="活动页", url="ftp://example.com/x"),
        )
        assert response.status == 422
        html = await response.text()
        error = re.search(r'id="form-error" role="alert">(.*?)</p>', html)[1]
        assert words in error.replace("&#39;", "'"), error
        assert 'value="活动页"' in html  # what was typed is still there
    no_media = await h.client.post(
        "/admin/content/new?lang=zh",
        headers=cookie,
        data=_form(csrf, kind="image", title="没有图片"),
    )
    assert no_media.status == 422
    assert "图片类内容需要上传「媒体文件」" in await no_media.text()
    assert await _count(h, ContentItem) == 0
    assert await _count(h, AuditEntry) == 0


async def test_only_hq_with_a_csrf_token_writes(h, sessions):
    cookie, csrf = await _hq(h, sessions)
    forged = await h.client.post(
        "/admin/content/new",
        headers=cookie,
        data=_form("wrong", kind="text", title="x", body="y"),
    )
    assert forged.status == 403
    manager = admin_cookie(await sessions.account("mgr", "manager", ["11"]))
    assert (await h.client.get("/admin/content/new", headers=manager)).status == 404
    posted = await h.client.post(
        "/admin/content/new", headers=manager, data=_form(csrf, kind="text", title="x", body="y")
    )
    assert posted.status == 404
    assert await _count(h, ContentItem) == 0
