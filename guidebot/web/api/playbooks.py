"""JSON API of the playbook studio (HQ only; the page is guidebot.web.studio).

POST /api/v1/playbooks/validate  {"name", "text"}: the checker's errors and warnings, each at
                                 its line and column with the hint apart, and the timeline
POST /api/v1/playbooks/preview   {"name", "text", "store"?, "added_at"?}: the same, and the real
                                 planner's due times for a customer of that store added then,
                                 with each message rendered in the engine's sandbox
PUT  /api/v1/playbooks/{id}      {"text", "base_version"?}: refused (422, with the errors) when
                                 the checker fails; else the next version, recorded with who
                                 saved it and its diff, written into the playbook directory,
                                 and the registry reloaded (guidebot.sop.versions). Only a
                                 playbook the registry has (a file in the directory): 404 else

Text with errors fits the request's schema, so its refusal is a 422 (the API's rule: a 400 is
a request that does not fit its schema), with the errors beside the usual error object.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web

from guidebot import i18n
from guidebot.contacts.directory import find_store, store_zone
from guidebot.sop import studio
from guidebot.sop.checks import MAX_VERSION
from guidebot.sop.loader import MAX_FILE_BYTES, LoadedPlaybook
from guidebot.sop.playbook import Playbook
from guidebot.sop.trigger_words import written_values
from guidebot.sop.versions import SaveConflict, SaveRefused, current_file, save_playbook
from guidebot.web.api.common import (
    ApiError,
    ApiRoutes,
    bad_request,
    body_of,
    check_instant,
    not_found,
    param,
    unprocessable,
)
from guidebot.web.api.declare import Body, Int, OneOf, Text
from guidebot.web.api.openapi import (
    BOOLEAN,
    ERROR_SCHEMA,
    INTEGER,
    NUMBER,
    STRING,
    list_of,
    maybe,
    shape,
)
from guidebot.web.audited import record_change
from guidebot.web.auth import principal
from guidebot.web.keys import CLOCK, SESSIONS, SOP

api = ApiRoutes()

ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
PLAYBOOK_ID = Text(64, pattern=ID_PATTERN, description="a playbook's id (its file name)")
PLAYBOOK_TEXT = Text(
    MAX_FILE_BYTES, multiline=True, description="the playbook's YAML, as its file holds it"
)
# A body holds the text once, escaped: a Chinese character is at most 6 bytes of JSON (\uXXXX).
STUDIO_BODY = 6 * MAX_FILE_BYTES + 4096
LOCAL_TIME = Text(
    40,
    pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?(Z|[+-][0-9]{2}:[0-9]{2})?$",
    description="when the sample customer adds the guide: YYYY-MM-DDTHH:MM in the store's time "
    "zone (else the playbook's), or with a UTC offset; default now",
)


class PlaybookText(Body):
    """Playbook text as HQ is writing it; `lang` the language of the messages (default en, the
    checker's own sentences; the studio sends its page's language)."""

    name: PLAYBOOK_ID
    text: PLAYBOOK_TEXT
    lang: OneOf("zh", "en", description="the errors' language: en (default) or zh") = None


class PreviewRequest(PlaybookText):
    """Playbook text and the sample customer to plan it for."""

    store: Text(64, description="a store's code or department id; default none") = None
    added_at: LOCAL_TIME = None


class PlaybookSave(Body):
    """The new text; `base_version`, the version the editor opened, refuses a save over a
    version someone saved meanwhile (409)."""

    text: PLAYBOOK_TEXT
    base_version: Int(1, MAX_VERSION) = None


TEXT_OUT = maybe(STRING)
DIAGNOSTIC = shape(
    {
        "line": INTEGER,
        "col": INTEGER,
        "path": STRING,
        "message": STRING,
        "hint": TEXT_OUT,
        "code": STRING,
    }
)
ENTRY = shape(
    {
        "kind": {"type": "string", "enum": ["trigger", "step", "window", "stop", "goal"]},
        "id": TEXT_OUT,
        "name": TEXT_OUT,
        "action": TEXT_OUT,
        "event": TEXT_OUT,
        "at": TEXT_OUT,
        "day": maybe(NUMBER),
        "template": TEXT_OUT,
        "value": TEXT_OUT,
        "detail": TEXT_OUT,
        "immediate": BOOLEAN,
    }
)
CHECKED = {
    "errors": list_of(DIAGNOSTIC),
    "warnings": list_of(DIAGNOSTIC),
    "timeline": list_of(ENTRY),
    "version": maybe(INTEGER),
}
PREVIEW_STEP = shape(
    {
        "id": STRING,
        "name": TEXT_OUT,
        "action": STRING,
        "to": maybe({"type": "string", "enum": ["customer", "guide"]}),
        "due_at": STRING,
        "due_local": STRING,
        "moved": BOOLEAN,
        "immediate": BOOLEAN,
        "expires_local": STRING,
        "message": TEXT_OUT,
        "error": TEXT_OUT,
    }
)
PREVIEW = shape(
    {
        **CHECKED,
        "preview": maybe(
            shape(
                {
                    "zone": STRING,
                    "store": maybe(shape({"code": STRING, "name": STRING})),
                    "added_at": STRING,
                    "enrolled_at": STRING,
                    "steps": list_of(PREVIEW_STEP),
                }
            )
        ),
    }
)
REFUSED = {
    **ERROR_SCHEMA,
    "properties": {**ERROR_SCHEMA["properties"], "errors": list_of(DIAGNOSTIC)},
}
SAVED = shape(
    {
        "id": STRING,
        "version": INTEGER,
        "unchanged": BOOLEAN,
        "warnings": list_of(DIAGNOSTIC),
        "running": maybe(INTEGER),
    }
)


async def checked_json(
    loaded: LoadedPlaybook, lang: str | None = None, text: str | None = None
) -> dict[str, Any]:
    """The checker's answer; the timeline in `lang`, its offsets as `text` writes them."""
    language = i18n.ZH if lang == "zh" else i18n.EN
    errors, warnings = studio.diagnostics(loaded, language)
    playbook = loaded.playbook
    written = await asyncio.to_thread(written_values, text) if text and playbook else {}
    return {
        "errors": errors,
        "warnings": warnings,
        "timeline": studio.timeline(playbook, language, written) if playbook is not None else [],
        "version": loaded.version,
    }


async def _check(request: web.Request, name: str, text: str) -> LoadedPlaybook:
    return await studio.check_off_loop(text, name, request.app[SOP].registry.templates_dir)


@api.post(
    "/playbooks/validate",
    summary="Check playbook text as `guidebot sop check` does: each error at its line and "
    "column with its hint, and the playbook's timeline",
    body=PlaybookText,
    max_body=STUDIO_BODY,
    response=shape(CHECKED),
)
async def validate_playbook(request: web.Request) -> web.Response:
    body = body_of(request, PlaybookText)
    loaded = await _check(request, body.name, body.text)
    return web.json_response(await checked_json(loaded, body.lang, body.text))


@api.post(
    "/playbooks/preview",
    summary="Check playbook text and plan it for a sample customer of a store added at a time, "
    "with every message rendered as its reader gets it",
    body=PreviewRequest,
    max_body=STUDIO_BODY,
    response=PREVIEW,
    errors=(422,),
)
async def preview_playbook(request: web.Request) -> web.Response:
    body = body_of(request, PreviewRequest)
    loaded = await _check(request, body.name, body.text)
    answer: dict[str, Any] = {**await checked_json(loaded, body.lang, body.text), "preview": None}
    if loaded.enabled and loaded.playbook is not None:
        answer["preview"] = await _preview(request, loaded.playbook, body.store, body.added_at)
    return web.json_response(answer)


async def _preview(
    request: web.Request, playbook: Playbook, store_ref: str | None, added_at: str | None
) -> dict[str, Any]:
    store, found = None, None
    if store_ref:
        async with request.app[SESSIONS]() as session:
            found = await find_store(session, store_ref)
        if found is None or not found.is_store:
            raise unprocessable(f"没有门店 {store_ref!r} / no store {store_ref!r}")
        store = {"code": found.code, "name": found.name}
    zone = store_zone(found, playbook.timezone)  # the store's own zone, else the playbook's
    at = _added_at(added_at, zone, request.app[CLOCK].now())
    shown = await studio.preview(
        playbook,
        request.app[SOP].registry.templates_dir,
        added_at=at,
        zone=zone,
        store=store,
    )
    return {**shown, "store": store}


def _added_at(raw: str | None, zone, now: datetime) -> datetime:
    if raw is None:
        return now
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"'added_at' 不是有效时间 / 'added_at' is no time: {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)  # the store's wall clock, as `sop simulate` reads it
    return check_instant(value, "added_at")


@api.route(
    "PUT",
    "/playbooks/{id}",
    "Save a playbook: refused with the checker's errors; else the next version, kept with "
    "who saved it and its diff, written into the playbook directory and loaded",
    path={"id": PLAYBOOK_ID},
    body=PlaybookSave,
    max_body=STUDIO_BODY,
    response=SAVED,
    responses={422: REFUSED},
    errors=(409,),
)
async def save(request: web.Request) -> web.Response:
    playbook_id = param(request, "id")
    body = body_of(request, PlaybookSave)
    registry = request.app[SOP].registry
    if current_file(registry, playbook_id) is None:
        raise not_found(f"没有剧本 {playbook_id!r} / no playbook {playbook_id!r}")
    who = principal(request)
    before = current_file(registry, playbook_id)
    try:
        async with request.app[SESSIONS]() as session, session.begin():
            saved = await save_playbook(
                session,
                registry,
                playbook_id,
                body.text,
                saved_by=who.name,
                now=request.app[CLOCK].now(),
                base_version=body.base_version,
            )
            if not saved.unchanged:
                record_change(
                    request,
                    session,
                    "playbook.save",
                    target=f"playbook:{playbook_id}",
                    before={"version": before.version if before is not None else None},
                    after={"version": saved.version, "text": body.text},
                )
    except SaveRefused as refused:
        errors, _ = studio.diagnostics(refused.loaded)
        first = errors[0] if errors else None
        where = f"{first['line']}:{first['col']}: {first['message']}" if first else ""
        return web.json_response(
            {
                "error": {
                    "code": "invalid_playbook",
                    "reason": f"剧本有 {len(errors)} 处错误，未保存 / the playbook has "
                    f"{len(errors)} error(s) and was not saved ({where})",
                },
                "errors": errors,
            },
            status=422,
        )
    except SaveConflict as conflict:
        raise ApiError(409, "conflict", str(conflict)) from None
    running = registry.get(playbook_id)
    _, warnings = studio.diagnostics(saved.loaded)
    return web.json_response(
        {
            "id": playbook_id,
            "version": saved.version,
            "unchanged": saved.unchanged,
            "warnings": warnings,
            "running": running.version if running is not None else None,
        }
    )


__all__ = ["api", "checked_json"]
