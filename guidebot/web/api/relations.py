"""JSON API for how relations begin and move: 「联系我」 contact ways (a QR code whose state
names store, channel and campaign) and transfers of customers to another guide.

Views only parse, call one domain function and render; the domain's errors become JSON errors
in guidebot.web.api.errors (NotFound 404, Invalid 422, Conflict 409, Upstream 502).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from guidebot.contacts.models import ContactWay, Transfer, TransferKind, TransferStatus
from guidebot.contacts.transfers import MAX_CUSTOMERS, list_transfers, start_transfers
from guidebot.contacts.ways import MAX_USERS, STATE_MAX, create_contact_way, list_contact_ways
from guidebot.web.api.common import INT32_MAX, ApiRoutes, bad_request, iso, json_body
from guidebot.web.api.contacts import (
    EXTERNAL_USERID,
    STORE_REF,
    TEXT_OUT,
    USERID,
    WHEN,
    str_field,
    text_query,
)
from guidebot.web.api.declare import Array, Body, Either, Int, OneOf, Query, Text
from guidebot.web.api.openapi import ANY, INTEGER, STRING, list_of, maybe, shape
from guidebot.web.audited import record_after
from guidebot.web.keys import CLOCK, SESSIONS, WECOM

api = ApiRoutes()

PART = Text(STATE_MAX, pattern="^[A-Za-z0-9_.-]+$", description="letters, digits, '_', '.' or '-'")


class WayFilter(Query):
    store: STORE_REF = None


class NewWay(Body):
    __doc__ = (
        f"channel and campaign together with the store code make a state of at most {STATE_MAX} "
        "characters (422 when longer)"
    )
    store: Either(STORE_REF, Int(1, INT32_MAX), description="a store's code or department id")
    channel: PART
    campaign: PART = None
    userids: Array(USERID, min_items=1, max_items=MAX_USERS)
    remark: Text(30) = None


class TransferFilter(Query):
    status: OneOf(*TransferStatus.ALL) = None
    guide: USERID = None
    external_userid: EXTERNAL_USERID = None


class NewTransfers(Body):
    kind: OneOf(*TransferKind.ALL)
    handover_userid: USERID
    takeover_userid: USERID
    external_userids: Array(EXTERNAL_USERID, min_items=1, max_items=MAX_CUSTOMERS)
    message: Text(200, multiline=True) = None


def _str_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"{name!r} must be a non-empty list of strings")
    return value


def render_way(w: ContactWay) -> dict[str, Any]:
    return {
        "config_id": w.config_id,
        "state": w.state,
        "store_id": w.store_id,
        "channel": w.channel,
        "campaign": w.campaign,
        "userids": w.userids,
        "qr_code": w.qr_code,
        "remark": w.remark,
        "created_at": iso(w.created_at),
    }


def render_transfer(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "kind": t.kind,
        "handover_userid": t.handover_userid,
        "takeover_userid": t.takeover_userid,
        "external_userid": t.external_userid,
        "status": t.status,
        "errcode": t.errcode,
        "fail_reason": t.fail_reason,
        "requested_at": iso(t.requested_at),
        "completed_at": iso(t.completed_at),
    }


WAY = shape(
    {
        "config_id": STRING,
        "state": STRING,
        "store_id": INTEGER,
        "channel": STRING,
        "campaign": TEXT_OUT,
        "userids": list_of(ANY),
        "qr_code": TEXT_OUT,
        "remark": TEXT_OUT,
        "created_at": WHEN,
    }
)
TRANSFER = shape(
    {
        "id": INTEGER,
        "kind": STRING,
        "handover_userid": STRING,
        "takeover_userid": STRING,
        "external_userid": STRING,
        "status": STRING,
        "errcode": maybe(INTEGER),
        "fail_reason": TEXT_OUT,
        "requested_at": WHEN,
        "completed_at": WHEN,
    }
)


# ---- contact ways ----------------------------------------------------------------------------


@api.get(
    "/contact-ways",
    summary="List the 「联系我」 contact ways",
    query=WayFilter,
    response=shape({"contact_ways": list_of(WAY)}),
    errors=(422,),
)
async def list_ways(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        ways = await list_contact_ways(session, store=text_query(request, "store"))
    return web.json_response({"contact_ways": [render_way(w) for w in ways]})


@api.post(
    "/contact-ways",
    summary="Create a 「联系我」 QR way whose state encodes store, channel and campaign",
    body=NewWay,
    response=WAY,
    success=(201,),
    errors=(409, 422, 502),
)
async def create_way(request: web.Request) -> web.Response:
    body = await json_body(request)
    store = str_field(body, "store")
    channel = str_field(body, "channel")
    campaign = str_field(body, "campaign", required=False)
    remark = str_field(body, "remark", required=False)
    userids = _str_list(body, "userids")
    async with request.app[SESSIONS]() as session:
        way = await create_contact_way(
            session,
            request.app[WECOM],
            request.app[CLOCK].now(),
            store=store or "",
            channel=channel or "",
            campaign=campaign,
            userids=userids,
            remark=remark,
        )
    answer = render_way(way)
    await record_after(
        request, "contact_way.create", target=f"contact_way:{way.config_id}", after=answer
    )
    return web.json_response(answer, status=201)


# ---- transfers -------------------------------------------------------------------------------


@api.get(
    "/transfers",
    summary="List customer transfers, newest first",
    query=TransferFilter,
    response=shape({"transfers": list_of(TRANSFER)}),
    errors=(422,),
)
async def get_transfers(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        rows = await list_transfers(
            session,
            status=text_query(request, "status"),
            guide=text_query(request, "guide"),
            external_userid=text_query(request, "external_userid"),
        )
    return web.json_response({"transfers": [render_transfer(t) for t in rows]})


@api.post(
    "/transfers",
    summary="Transfer customers to another guide (in_service, or resigned after leaving)",
    body=NewTransfers,
    response=shape(
        {
            "transfers": list_of(
                shape(
                    {
                        "external_userid": STRING,
                        "status": STRING,
                        "transfer_id": maybe(INTEGER),
                        "errcode": maybe(INTEGER),
                        "reason": TEXT_OUT,
                    }
                )
            )
        }
    ),
    success=(202,),
    errors=(409, 422, 502),
)
async def post_transfers(request: web.Request) -> web.Response:
    body = await json_body(request)
    kind = str_field(body, "kind")
    handover = str_field(body, "handover_userid")
    takeover = str_field(body, "takeover_userid")
    message = str_field(body, "message", required=False)
    customers = _str_list(body, "external_userids")
    async with request.app[SESSIONS]() as session:
        outcomes = await start_transfers(
            session,
            request.app[WECOM],
            request.app[CLOCK].now(),
            kind=kind or "",
            handover_userid=handover or "",
            takeover_userid=takeover or "",
            external_userids=customers,
            message=message,
        )
    answer = {"transfers": [o.as_dict() for o in outcomes]}
    await record_after(
        request,
        "transfer.request",
        target=f"guide:{handover}",
        after={"kind": kind, "handover": handover, "takeover": takeover, **answer},
    )
    # Accepted, not done: WeCom completes a transfer about a day later.
    return web.json_response(answer, status=202)
