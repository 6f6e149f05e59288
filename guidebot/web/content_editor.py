"""/admin/content/new and /admin/content/{id}: HQ writes the content library in the browser.

The form posts with the admin's CSRF token; its fields go through the same checks as the JSON
API (guidebot.content.fields.clean_fields) and the same service functions (create, update,
retire), and each change is written to the audit trail in the same transaction. A bad field
shows its error in the page's language next to the field, and nothing is saved. The preview is
the page the customer opens from a guide's link (content_page.html), fed the item's own media.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import select

from guidebot.audit.recorder import row_values
from guidebot.contacts.models import Department
from guidebot.content import service
from guidebot.content.errors import ContentError, NotFound
from guidebot.content.fields import MEDIA_LIMITS, MediaInput, clean_fields
from guidebot.content.models import ContentItem, ContentKind, ContentMedia
from guidebot.web.api.content import AUDITED_FIELDS
from guidebot.web.audited import record_change
from guidebot.web.auth import PRINCIPAL, csrf_ok
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS
from guidebot.web.lang import language_of
from guidebot.web.pages import _, _hq_only, _signed_in, render
from guidebot.web.responses import render as render_public

# The form carries at most the largest file WeCom takes, with room for the other fields.
FORM_BYTES = max(MEDIA_LIMITS.values()) + (1 << 20)
TEXT_FIELDS = ("title", "summary", "body", "url", "cover_url", "valid_from", "valid_to")
_SEPARATORS = re.compile(r"[,，、\s]+")


async def _stores(session) -> list[Department]:
    query = select(Department).where(Department.is_store.is_(True), Department.deleted_at.is_(None))
    return list(await session.scalars(query.order_by(Department.sort_order, Department.id)))


def _values(item: ContentItem | None, tz) -> dict[str, Any]:
    """The form's fields as the item holds them (empty for a new one)."""
    if item is None:
        blank = dict.fromkeys((*TEXT_FIELDS, "appid", "page", "tags"), "")
        return {**blank, "kind": ContentKind.LINK, "stores": []}
    day = lambda when: when.astimezone(tz).date().isoformat() if when else ""  # noqa: E731
    return {
        "kind": item.kind,
        "title": item.title,
        "summary": item.summary or "",
        "body": item.body or "",
        "url": item.url or "",
        "cover_url": item.cover_url or "",
        "appid": item.miniprogram_appid or "",
        "page": item.miniprogram_page or "",
        "tags": "、".join(item.tags or []),
        "stores": list(item.stores or []),
        "valid_from": day(item.valid_from),
        "valid_to": day(item.valid_to),
    }


async def _posted(request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """The form as it was typed (to show again) and as clean_fields takes it."""
    form = await request.post()
    who = request[PRINCIPAL]
    if not csrf_ok(request.app[SETTINGS].secret_key, who.session or "", str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text=_("Missing or wrong CSRF token.", request))
    typed: dict[str, Any] = {
        name: str(form.get(name, "")) for name in (*TEXT_FIELDS, "kind", "appid", "page", "tags")
    }
    typed["stores"] = [str(s) for s in form.getall("stores", [])]
    data: dict[str, Any] = {name: typed[name] for name in TEXT_FIELDS}
    data["kind"] = typed["kind"]
    data["tags"] = [t for t in _SEPARATORS.split(typed["tags"]) if t]
    data["stores"] = typed["stores"]
    appid, page = typed["appid"].strip(), typed["page"].strip()
    data["miniprogram"] = {"appid": appid, "page": page} if appid or page else None
    if media := await _media(form):
        data["media"] = media
    return typed, data


def _read_and_close(file) -> bytes:
    with file:
        return file.read(FORM_BYTES)


async def _media(form: MultiDictProxy) -> MediaInput | None:
    upload = form.get("media")
    if not isinstance(upload, web.FileField) or not upload.filename:
        return None
    data = await asyncio.to_thread(_read_and_close, upload.file)
    return MediaInput(upload.filename, upload.content_type or "application/octet-stream", data)


async def _page(
    request: web.Request,
    item: ContentItem | None,
    values: dict[str, Any],
    *,
    error: ContentError | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[SESSIONS]() as session:
        stores = await _stores(session)
        media = await service.get_media(session, item.id) if item is not None else None
    lang = language_of(request, request[PRINCIPAL])
    return render(
        request,
        "content_edit.html",
        {
            "item": item,
            "v": values,
            "media": media,
            "stores": stores,
            "kinds": ContentKind.ALL,
            "saved": "saved" in request.query and error is None,
            "error": error.translated(lang) if error else None,
            "error_field": (error.field or "").split(".")[0] if error else None,
        },
        status,
    )


async def new_form(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    return await _page(request, None, _values(None, request.app[SETTINGS].tz))


async def create(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    typed, data = await _posted(request)
    now = request.app[CLOCK].now()
    try:
        fields = clean_fields(data, tz=request.app[SETTINGS].tz)
        async with request.app[SESSIONS]() as session, session.begin():
            item = await service.create_item(session, fields, now)
            after = row_values(item, *AUDITED_FIELDS)
            record_change(
                request, session, "content.create", target=f"content:{item.id}", after=after
            )
    except ContentError as exc:
        return await _page(request, None, typed, error=exc, status=422)
    raise web.HTTPSeeOther(f"/admin/content/{item.id}?saved=1")


async def _item(session, request: web.Request) -> ContentItem:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise web.HTTPNotFound()
    try:
        return await service.get_item(session, int(raw))
    except NotFound:
        raise web.HTTPNotFound() from None


async def edit_form(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    async with request.app[SESSIONS]() as session:
        item = await _item(session, request)
    return await _page(request, item, _values(item, request.app[SETTINGS].tz))


async def update(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    typed, data = await _posted(request)
    now = request.app[CLOCK].now()
    async with request.app[SESSIONS]() as session:
        item = await _item(session, request)
    try:
        fields = clean_fields(data, tz=request.app[SETTINGS].tz, partial=True)
        async with request.app[SESSIONS]() as session, session.begin():
            item = await _item(session, request)
            before = row_values(item, *AUDITED_FIELDS)
            if await service.update_item(session, item, fields, now):
                after = row_values(item, *AUDITED_FIELDS)
                target = f"content:{item.id}"
                record_change(
                    request, session, "content.update", target=target, before=before, after=after
                )
    except ContentError as exc:
        return await _page(request, item, typed, error=exc, status=422)
    raise web.HTTPSeeOther(f"/admin/content/{item.id}?saved=1")


async def retire(request: web.Request) -> web.StreamResponse:
    """Retired items leave the library and the sidebar; their forwards and opens stay."""
    _hq_only(await _signed_in(request))
    await _posted(request)
    now = request.app[CLOCK].now()
    async with request.app[SESSIONS]() as session, session.begin():
        item = await _item(session, request)
        before = row_values(item, *AUDITED_FIELDS)
        await service.delete_item(session, item, now)
        after = row_values(item, *AUDITED_FIELDS)
        record_change(
            request,
            session,
            "content.delete",
            target=f"content:{item.id}",
            before=before,
            after=after,
        )
    raise web.HTTPSeeOther("/admin/content?retired=1")


async def preview(request: web.Request) -> web.StreamResponse:
    """The page a customer opens from a guide's link, without counting an open."""
    _hq_only(await _signed_in(request))
    async with request.app[SESSIONS]() as session:
        item = await _item(session, request)
        has_media = await session.get(ContentMedia, item.id) is not None
    media_url = f"/admin/content/{item.id}/media" if has_media else None
    response = render_public(request, "content_page.html", {"item": item, "media_url": media_url})
    response.headers["Cache-Control"] = "no-store"
    return response


async def media(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    async with request.app[SESSIONS]() as session:
        item = await _item(session, request)
        stored = await session.get(ContentMedia, item.id)
        if stored is None:
            raise web.HTTPNotFound()
        data, content_type = stored.data, stored.content_type
    if item.kind == ContentKind.FILE:
        disposition = "attachment"
    else:  # an image: its type from its bytes, never from what was declared
        disposition = "inline"
        content_type = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": disposition,
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )


def setup_routes(app: web.Application) -> None:
    create.body_limit = update.body_limit = FORM_BYTES  # type: ignore[attr-defined]
    app.router.add_get("/admin/content/new", new_form)
    app.router.add_post("/admin/content/new", create)
    app.router.add_get("/admin/content/{id}", edit_form)
    app.router.add_post("/admin/content/{id}", update)
    app.router.add_post("/admin/content/{id}/retire", retire)
    app.router.add_get("/admin/content/{id}/preview", preview)
    app.router.add_get("/admin/content/{id}/media", media)
