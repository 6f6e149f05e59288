"""The demo's week of community work (`guidebot demo`), through the real paths:

1. HQ labels each store's VIP group `VIP` (PUT /api/v1/groups/{chat_id}/labels/VIP, audited).
2. The demo playbook (guidebot.sop.demo_groups) plans this week's occurrence: a group message
   to the groups labelled VIP, one per owner, and a Moments task for two guides of each store;
   the rows go to the simulated WeCom (add_msg_template, add_moment_task).
3. In the simulated WeCom client, most owners confirm their group send and most guides publish
   their post (some do not: the figures show both); guidebot asks WeCom and records it.
4. A few customers in each VIP group, and a few of each publishing guide's customers, open the
   link on their phones: each phone first opened a link naming its customer (so guidebot ties
   the browser to them), then the group's or the post's link; one of each buys. The orders
   come in through the order API and count for the owner (`group`) or the guide (`moments`).
5. The rollups fold it in, so the dashboard shows it at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from sqlalchemy import select

from guidebot.contacts.models import Relation, RelationStatus
from guidebot.content import links
from guidebot.content.service import item_by_key
from guidebot.groups.demo import VipGroups, members_now
from guidebot.groups.models import CustomerGroup
from guidebot.metrics.rollup import refresh
from guidebot.sop.demo_groups import VIP_LABEL, VIP_WEEKLY, send_all, settle, this_week
from guidebot.sop.group_models import GroupSendStatus, SopGroupSend
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS, SOP

log = logging.getLogger(__name__)

JOB_WAIT = 20.0  # seconds for WeCom's Moments creation jobs to finish (the demo's: 1)
JOB_POLL = 0.25  # seconds between looks at the jobs
BROWSERS = 2  # phones per group and per post that open its link


@dataclass
class CommunityWeek:
    group_sends: int = 0
    confirmed: int = 0
    moments: int = 0
    published: int = 0
    opens: int = 0
    orders: list[str] = field(default_factory=list)


async def community_week(
    server: web.Application,
    post,
    http: aiohttp.ClientSession,
    admin_token: str,
    vip: VipGroups,
    rng: random.Random,
) -> CommunityWeek:
    week = CommunityWeek()
    sop, sessions = server[SOP], server[SESSIONS]
    playbook = sop.registry.get(VIP_WEEKLY)
    if playbook is None:
        return week
    api = f"{server[SETTINGS].public_url}/api/v1"
    headers = {"Authorization": f"Bearer {admin_token}"}
    for chat_id in vip.chat_ids.values():
        url = f"{api}/groups/{chat_id}/labels/{VIP_LABEL}"
        async with http.put(url, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"labelling {chat_id} failed: {await response.text()}")
    await this_week(sop, playbook, server[CLOCK].now())
    await send_all(sop)
    await _owners_confirm(server, post, week)
    await _guides_publish(server, post, week)
    await settle(sop)
    owners = await _owners(server, list(vip.chat_ids.values()))
    for row in await _rows(server, GroupSendStatus.DONE):
        if row.action == "group_message":
            people = [
                c for chat in owners.get(row.userid, ()) for c in await members_now(sessions, chat)
            ]
        else:
            people = await _customers_of(server, row.userid)
        rng.shuffle(people)
        for number, customer in enumerate(people[:BROWSERS]):
            await _phone(server, customer, row.link_url or "")
            week.opens += 1
            if number == 0:  # one of them buys
                paid_at = server[CLOCK].now().isoformat()
                order_id = f"demo-community-{row.id}-{customer}"  # one may buy through two
                week.orders.append(
                    await _order(http, api, headers, order_id, customer, paid_at, rng)
                )
    await refresh(sessions, server[SETTINGS].timezone, server[CLOCK].now())
    return week


async def _rows(server: web.Application, *statuses: str) -> list[SopGroupSend]:
    async with server[SESSIONS]() as session:
        return list(
            await session.scalars(
                select(SopGroupSend)
                .where(SopGroupSend.playbook_id == VIP_WEEKLY, SopGroupSend.status.in_(statuses))
                .order_by(SopGroupSend.id)
            )
        )


async def _owners_confirm(server: web.Application, post, week: CommunityWeek) -> None:
    """Every owner but one sends the group message in the client."""
    sends = [r for r in await _rows(server, GroupSendStatus.SENT) if r.action == "group_message"]
    week.group_sends = len(sends)
    for row in sends[: max(len(sends) - 1, 1)]:
        await post("groupmsg/confirm", {"msgid": row.wecom_msgid, "userid": row.userid})
        week.confirmed += 1


async def _guides_publish(server: web.Application, post, week: CommunityWeek) -> None:
    """WeCom's creation jobs finish; then most guides publish (a few leave it for later)."""
    sop = server[SOP]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + JOB_WAIT
    while True:
        await settle(sop)  # the moment_id once WeCom's job finished
        posts = [r for r in await _rows(server, GroupSendStatus.SENT) if r.action == "moment_task"]
        if all(r.moment_id for r in posts) or loop.time() > deadline:
            break
        await asyncio.sleep(JOB_POLL)  # the real clock: the simulated jobs take a second
    week.moments = len(posts)
    ready = [r for r in posts if r.moment_id]
    for row in ready[: max(len(ready) - 3, 1)]:
        await post("moments/publish", {"moment_id": row.moment_id, "userid": row.userid})
        week.published += 1


async def _owners(server: web.Application, chat_ids: list[str]) -> dict[str, list[str]]:
    """Each owner's groups among these."""
    async with server[SESSIONS]() as session:
        rows = await session.execute(
            select(CustomerGroup.owner_userid, CustomerGroup.chat_id).where(
                CustomerGroup.chat_id.in_(chat_ids)
            )
        )
        owned: dict[str, list[str]] = {}
        for owner, chat_id in rows:
            owned.setdefault(owner or "", []).append(chat_id)
        return owned


async def _customers_of(server: web.Application, guide: str) -> list[str]:
    async with server[SESSIONS]() as session:
        return sorted(
            await session.scalars(
                select(Relation.external_userid).where(
                    Relation.guide_userid == guide, Relation.status == RelationStatus.ACTIVE
                )
            )
        )


async def _phone(server: web.Application, customer: str, community_url: str) -> None:
    """A customer's phone: it opened a link naming them (its guide's), then this one."""
    settings, now = server[SETTINGS], server[CLOCK].now()
    async with server[SESSIONS]() as session:
        guide = await session.scalar(
            select(Relation.guide_userid).where(
                Relation.external_userid == customer, Relation.status == RelationStatus.ACTIVE
            )
        )
        item = await item_by_key(session, "weekly-lookbook")
    if guide is None or item is None:
        return
    token, _ = links.mint(
        settings.secret_key, item_id=item.id, guide=guide, customer=customer, now=now
    )
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as phone:
        for url in (links.link_url(settings.public_url, token), community_url):
            async with phone.get(url, allow_redirects=False) as response:
                seen = response.headers.get("Location", "")
            if seen.startswith("?seen="):
                async with phone.get(url + seen, allow_redirects=False):
                    pass


async def _order(
    http: aiohttp.ClientSession,
    api: str,
    headers: dict,
    order_id: str,
    customer: str,
    paid_at: str,
    rng: random.Random,
) -> str:
    """Through the order API, as the brand's shop posts it; the rule it was attributed by."""
    body = {
        "order_id": order_id,
        "external_userid": customer,
        "amount": f"{rng.randint(199, 1599)}.00",
        "paid_at": paid_at,
    }
    async with http.post(f"{api}/orders", json=body, headers=headers) as response:
        if response.status >= 400:
            raise RuntimeError(f"a demo order failed: {await response.text()}")
        answer = await response.json()
    return str(answer["attribution"]["rule"])


__all__ = ["CommunityWeek", "community_week"]
