"""The content library: the JSON API, search, YAML import, and WeCom media kept fresh."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest

from guidebot.content import service
from guidebot.content.errors import ContentError
from guidebot.content.importer import ImportReport, import_content, seed_demo_content
from guidebot.web.keys import WECOM
from tests.content.harness import PNG


async def test_create_get_search_patch_delete(h):
    created = await h.item(
        key="spring",
        kind="link",
        title="春季新品上市",
        summary="十款新色到店",
        url="https://example.com/spring",
        tags=["新品", "春季"],
    )
    assert created["kind"] == "link" and created["live"] is True
    await h.item(kind="text", title="新客问候话术", body="您好，我是您的专属导购", tags=["话术"])
    await h.item(kind="link", title="Wool care", url="https://example.com/care", tags=["care"])

    status, one = await h.api("GET", f"/content/{created['id']}")
    assert status == 200
    assert one["numbers"] == {"forwards": 0, "opens": 0, "unique_opens": 0}

    status, found = await h.api("GET", "/content", params={"q": "春季"})
    assert [i["key"] for i in found["items"]] == ["spring"]
    status, found = await h.api("GET", "/content", params={"q": "WOOL"})
    assert [i["title"] for i in found["items"]] == ["Wool care"]
    status, found = await h.api("GET", "/content", params={"tag": "话术"})
    assert [i["title"] for i in found["items"]] == ["新客问候话术"]
    status, everything = await h.api("GET", "/content")
    assert everything["total"] == 3

    status, patched = await h.api(
        "PATCH", f"/content/{created['id']}", json={"title": "春季新品 · 第二波", "stores": ["11"]}
    )
    assert status == 200 and patched["title"] == "春季新品 · 第二波"
    assert patched["stores"] == ["11"]

    status, _ = await h.api("DELETE", f"/content/{created['id']}")
    assert status == 200
    status, gone = await h.api("GET", f"/content/{created['id']}")
    assert status == 404 and gone["error"]["code"] == "not_found"
    status, found = await h.api("GET", "/content", params={"q": "春季"})
    assert found["items"] == []


async def test_the_api_needs_the_admin_token(h):
    status, _body = await h.api("GET", "/content", auth=False)
    assert status == 401


@pytest.mark.parametrize(
    ("fields", "reason", "expected"),
    [
        ({"kind": "video", "title": "x"}, "'kind' must be one of", 400),
        ({"kind": "link", "title": "x"}, "a link item needs 'url'", 422),
        ({"kind": "link", "title": "x", "url": "ftp://x"}, "'url' must be an http(s) URL", 400),
        ({"kind": "text", "title": "x"}, "a text item needs 'body'", 422),
        ({"kind": "image", "title": "x"}, "a image item needs 'media'", 422),
        ({"kind": "text", "title": "x", "body": "y", "colour": 1}, "unknown field 'colour'", 400),
        (
            {
                "kind": "text",
                "title": "x",
                "body": "y",
                "valid_from": "2026-03-02",
                "valid_to": "2026-03-01",
            },
            "'valid_to' must be after 'valid_from'",
            422,
        ),
        (
            {
                "kind": "image",
                "title": "x",
                "media": {
                    "filename": "a.gif",
                    "data_base64": base64.b64encode(b"GIF89a....").decode(),
                },
            },
            "must be a JPG or PNG",
            422,
        ),
    ],
)
async def test_bad_items_are_refused_with_a_reason(h, fields, reason, expected):
    # 400: a field does not fit the schema; 422: the fields do not make an item together.
    status, body = await h.api("POST", "/content", json=fields)
    assert status == expected
    assert reason in body["error"]["reason"]


async def test_validity_and_stores_limit_what_a_guide_sees(h):
    now = h.clock.now()
    await h.item(kind="text", title="all stores", body="a")
    await h.item(kind="text", title="zhangjiang only", body="b", stores=["11"])
    await h.item(kind="text", title="xuhui only", body="c", stores=["12"])
    await h.item(
        kind="text", title="later", body="d", valid_from=(now + timedelta(days=1)).isoformat()
    )
    await h.item(
        kind="text", title="over", body="e", valid_to=(now - timedelta(days=1)).isoformat()
    )
    async with h.sessions() as session:
        items, _ = await service.search_items(
            session, live_at=now, store_code="11", restrict_store=True
        )
    assert sorted(i.title for i in items) == ["all stores", "zhangjiang only"]
    _status, live = await h.api("GET", "/content", params={"live": "true"})
    assert sorted(i["title"] for i in live["items"]) == [
        "all stores",
        "xuhui only",
        "zhangjiang only",
    ]


def _tag_patterns(body: dict) -> set[str]:
    """The pattern a body's schema gives each entry of its `tags` (an array, or null)."""
    tags = body["properties"]["tags"]
    return {form["items"]["pattern"] for form in tags.get("anyOf", [tags]) if "items" in form}


async def test_the_document_refuses_a_bar_in_a_tag_as_the_library_does(h):
    """Tags are searched joined by '|': the library refuses a tag holding one, and the schema the
    API publishes must say so too (its pattern once let "a|" through)."""
    document = await (await h.client.get("/api/v1/openapi.json")).json()
    operations = [
        document["paths"]["/api/v1/content"]["post"],
        document["paths"]["/api/v1/content/{id}"]["patch"],
    ]
    patterns = {
        p
        for op in operations
        for p in _tag_patterns(op["requestBody"]["content"]["application/json"]["schema"])
    }
    assert patterns, "the content bodies declare a pattern for their tags"
    for tag in ("|", "a|", "|a", "新品|春季", " | "):
        assert not any(re.search(p, tag) for p in patterns), (tag, patterns)
        item = {"kind": "text", "title": "x", "body": "y", "tags": [tag]}
        status, body = await h.api("POST", "/content", json=item)
        assert status == 400 and "'tags" in body["error"]["reason"], (tag, body)
    assert all(re.search(p, "春季 新品") for p in patterns)
    status, listed = await h.api("GET", "/content")
    assert status == 200 and listed["total"] == 0


async def test_openapi_documents_the_content_endpoints(h):
    response = await h.client.get("/api/v1/openapi.json")
    paths = (await response.json())["paths"]
    assert set(paths["/api/v1/content/{id}"]) == {"get", "patch", "delete"}
    assert set(paths["/api/v1/content"]) == {"get", "post"}
    assert "post" in paths["/api/v1/mass-sends"]


LIBRARY = """
items:
  - key: spring
    kind: link
    title: 春季新品
    url: https://example.com/spring
    tags: [新品]
    valid_from: 2026-03-01
  - key: card
    kind: image
    title: 护理小卡
    media: {file: media/card.png}
"""


async def test_import_is_idempotent_on_the_key(h, tmp_path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "card.png").write_bytes(PNG)
    library = tmp_path / "library.yaml"
    library.write_text(LIBRARY, encoding="utf-8")

    async def run() -> ImportReport:
        async with h.sessions() as session, session.begin():
            return await import_content(session, library, now=h.clock.now())

    first = await run()
    assert (first.created, first.updated, first.unchanged) == (["spring", "card"], [], [])
    again = await run()
    assert (again.created, again.updated, again.unchanged) == ([], [], ["spring", "card"])

    library.write_text(LIBRARY.replace("春季新品", "春季新品 · 上新"), encoding="utf-8")
    changed = await run()
    assert (changed.updated, changed.unchanged) == (["spring"], ["card"])
    _status, found = await h.api("GET", "/content", params={"q": "上新"})
    assert found["items"][0]["valid_from"] == "2026-02-28T16:00:00+00:00"  # midnight Shanghai
    assert found["total"] == 1

    async with h.sessions() as session, session.begin():
        item = await service.item_by_key(session, "card")
        await service.delete_item(session, item, h.clock.now())
    assert (await run()).skipped == ["card"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("items:\n  - kind: text\n    title: t\n    body: b\n", "item 1: 'key' is required"),
        (
            "items:\n  - {key: a, kind: text, title: t, body: b}\n"
            "  - {key: a, kind: text, title: t, body: b}\n",
            "item 2 (a): the key appears twice",
        ),
        ("items:\n  - {key: a, kind: link, title: t}\n", "item 1 (a): a link item needs 'url'"),
        (
            "items:\n  - {key: a, kind: image, title: t, media: {file: ../x.png}}\n",
            "is outside the content directory",
        ),
        ("items: [\n", "not valid YAML"),
    ],
)
async def test_import_errors_name_the_file_and_item_and_write_nothing(h, tmp_path, text, message):
    library = tmp_path / "bad.yaml"
    library.write_text(text, encoding="utf-8")
    with pytest.raises(ContentError) as caught:
        async with h.sessions() as session, session.begin():
            await import_content(session, library, now=h.clock.now())
    assert str(library) in caught.value.reason and message in caught.value.reason
    _status, found = await h.api("GET", "/content")
    assert found["total"] == 0


async def test_demo_content_seeds_and_reseeds(h):
    async with h.sessions() as session, session.begin():
        first = await seed_demo_content(session, now=h.clock.now())
    async with h.sessions() as session, session.begin():
        again = await seed_demo_content(session, now=h.clock.now())
    assert len(first.created) >= 6 and again.unchanged == first.created
    kinds = {i["kind"] for i in (await h.api("GET", "/content"))[1]["items"]}
    assert kinds == {"text", "link", "image", "miniprogram", "file"}


async def test_media_is_uploaded_once_and_refreshed_before_three_days(h):
    item = await h.item(
        kind="image",
        title="card",
        media={
            "filename": "card.png",
            "content_type": "image/png",
            "data_base64": base64.b64encode(PNG).decode(),
        },
    )
    wecom = h.app[WECOM]
    first = await service.ensure_media(h.sessions, wecom, item["id"], h.clock.now())
    h.advance(86400 * 2)
    assert await service.ensure_media(h.sessions, wecom, item["id"], h.clock.now()) == first
    assert len(await h.calls("media/upload")) == 1

    # The periodic refresh re-uploads after two days, so a sent id never nears WeCom's 3 days.
    h.advance(3600)
    assert await service.refresh_media(h.sessions, wecom, h.clock.now()) == 1
    refreshed = await service.ensure_media(h.sessions, wecom, item["id"], h.clock.now())
    assert refreshed != first
    assert len(await h.calls("media/upload")) == 2

    # Without the refresh job, an id is replaced once it is 2.5 days old.
    h.advance(86400 * 2.5)
    third = await service.ensure_media(h.sessions, wecom, item["id"], h.clock.now())
    assert third not in (first, refreshed)
    h.sim_state.live_media(third, "image")  # the simulator accepts it

    _status, one = await h.api("GET", f"/content/{item['id']}")
    assert one["media"]["wecom_media_id"] == third


async def test_new_bytes_forget_the_old_upload(h):
    item = await h.item(
        kind="file",
        title="sizes",
        media={
            "filename": "s.txt",
            "content_type": "text/plain",
            "data_base64": base64.b64encode(b"S M L XL").decode(),
        },
    )
    wecom = h.app[WECOM]
    first = await service.ensure_media(h.sessions, wecom, item["id"], h.clock.now())
    status, _ = await h.api(
        "PATCH",
        f"/content/{item['id']}",
        json={
            "media": {"filename": "s.txt", "data_base64": base64.b64encode(b"XS S M L").decode()}
        },
    )
    assert status == 200
    assert await service.ensure_media(h.sessions, wecom, item["id"], h.clock.now()) != first
