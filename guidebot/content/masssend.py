"""Mass send: one item to a guide's customers picked by tag, status or name, as a WeCom
mass-send task (add_msg_template) the guide confirms in the client; results followed by
polling get_groupmsg_send_result.

At most once (architecture rule 6): the row is `sending` and committed before add_msg_template. An
answer that never came (WeComUncertain), or a row found `sending` after a crash, becomes
`unknown`; for link items the poller then looks for the task in get_groupmsg_list_v2 by the
tracked link's nonce and adopts it. Nothing is ever re-sent blindly. Every customer the
results say received it is logged as a forward (via "mass_send").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guidebot.clock import Clock
from guidebot.config import Settings
from guidebot.contacts.models import Guide, Relation, RelationStatus
from guidebot.content import links, service
from guidebot.content.errors import Invalid, NotFound
from guidebot.content.models import (
    ContentItem,
    ContentKind,
    ForwardVia,
    MassSend,
    MassSendResult,
    MassSendStatus,
)
from guidebot.db.engine import upsert_insert
from guidebot.db.parking import park_apart, unparked
from guidebot.wecom.client import WeComClient, WeComError, WeComUncertain

log = logging.getLogger(__name__)

POLL_FOR = timedelta(days=7)  # after this a task the guide never confirmed stops being polled
SENDING_STALE = timedelta(minutes=5)  # a `sending` row this old lost its process
RECONCILE_WINDOW = timedelta(minutes=10)

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Filter:
    tags: tuple[str, ...] = ()
    match: str = "any"  # "any" or "all" of the tags
    status: str = RelationStatus.ACTIVE
    customers: tuple[str, ...] = ()  # the guide's explicit pick, if any

    @classmethod
    def parse(cls, raw: Any) -> Filter:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise Invalid("'filter' must be an object {tags?, match?, status?, customers?}")
        unknown = set(raw) - {"tags", "match", "status", "customers"}
        if unknown:
            raise Invalid(f"filter: unknown field {sorted(unknown)[0]!r}")
        tags = raw.get("tags") or []
        customers = raw.get("customers") or []
        for name, value in (("tags", tags), ("customers", customers)):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise Invalid(f"filter.{name} must be a list of strings")
        match = raw.get("match", "any")
        if match not in ("any", "all"):
            raise Invalid("filter.match must be 'any' or 'all'")
        status = raw.get("status", RelationStatus.ACTIVE)
        if status != RelationStatus.ACTIVE:
            raise Invalid("filter.status: only 'active' customers can receive a mass send")
        return cls(tuple(tags), match, status, tuple(customers))

    def as_json(self) -> dict[str, Any]:
        return {
            "tags": list(self.tags),
            "match": self.match,
            "status": self.status,
            "customers": list(self.customers),
        }

    def accepts(self, relation: Relation) -> bool:
        if self.customers and relation.external_userid not in self.customers:
            return False
        if not self.tags:
            return True
        have = set()
        for tag in relation.tags or []:
            have.update(v for v in (tag.get("id"), tag.get("name")) if v)
        hits = [t in have for t in self.tags]
        return all(hits) if self.match == "all" else any(hits)


async def recipients(session: AsyncSession, guide: str, flt: Filter) -> list[str]:
    rows = await session.scalars(
        select(Relation)
        .where(Relation.guide_userid == guide, Relation.status == flt.status)
        .order_by(Relation.external_userid)
    )
    return [r.external_userid for r in rows if flt.accepts(r)]


def message_for(
    item: ContentItem, url: str | None, media_id: str | None
) -> tuple[str | None, list[dict[str, Any]]]:
    """(text, attachments) of add_msg_template / send_welcome_msg for an item."""
    if item.kind == ContentKind.TEXT:
        return item.body, []
    if item.kind == ContentKind.LINK:
        link = {"title": item.title[:64], "url": url or item.url}
        if item.summary:
            link["desc"] = item.summary[:170]
        if item.cover_url:
            link["picurl"] = item.cover_url
        return None, [{"msgtype": "link", "link": link}]
    if item.kind == ContentKind.IMAGE:
        return None, [{"msgtype": "image", "image": {"media_id": media_id}}]
    if item.kind == ContentKind.MINIPROGRAM:
        program = {
            "title": item.title[:21],
            "pic_media_id": media_id,
            "appid": item.miniprogram_appid,
            "page": item.miniprogram_page,
        }
        return None, [{"msgtype": "miniprogram", "miniprogram": program}]
    return None, [{"msgtype": "file", "file": {"media_id": media_id}}]


async def create_mass_send(
    sessions: Sessions,
    wecom: WeComClient,
    clock: Clock,
    settings: Settings,
    *,
    guide: str,
    item_id: int,
    flt: Filter,
    note: str | None = None,
) -> MassSend:
    """Record the mass send, then ask WeCom to create the task; the row as it ended up."""
    now = clock.now()
    async with sessions() as session, session.begin():
        if await session.get(Guide, guide) is None:
            raise NotFound(f"no guide {guide!r}")
        item = await service.get_item(session, item_id)
        if not service.is_live(item, now):
            raise Invalid(f"content item {item_id} is not valid now")
        chosen = await recipients(session, guide, flt)
        if not chosen:
            raise Invalid(f"no {flt.status} customer of {guide!r} matches the filter")
        row = MassSend(
            guide_userid=guide,
            item_id=item_id,
            filter=flt.as_json(),
            recipients=chosen,
            status=MassSendStatus.PENDING,
            fail_list=[],
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()
        token, claims = links.mint(
            settings.secret_key, item_id=item_id, guide=guide, mass_send_id=row.id, now=now
        )
        row.link_nonce = claims.nonce
        mass_id, kind = row.id, item.kind
    try:
        media_id = await service.ensure_media(sessions, wecom, item_id, now)
    except WeComError as exc:
        return await _finish(sessions, mass_id, clock, status=MassSendStatus.FAILED, error=exc)
    async with sessions() as session, session.begin():
        marked = await session.execute(
            update(MassSend)
            .where(MassSend.id == mass_id, MassSend.status == MassSendStatus.PENDING)
            .values(status=MassSendStatus.SENDING, requested_at=now, updated_at=now)
        )
        if marked.rowcount != 1:
            return await session.get(MassSend, mass_id)
        item = await session.get(ContentItem, item_id)
        url = links.link_url(settings.public_url, token) if kind == ContentKind.LINK else None
        text, attachments = message_for(item, url, media_id)
    if note:
        text = f"{note}\n{text}" if text else note
    try:
        result = await wecom.add_msg_template(
            external_userids=chosen, sender=guide, text=text, attachments=attachments
        )
    except WeComUncertain as exc:
        log.warning("mass send %s: outcome unknown (%s); will reconcile", mass_id, exc)
        return await _finish(sessions, mass_id, clock, status=MassSendStatus.UNKNOWN, error=exc)
    except WeComError as exc:
        return await _finish(sessions, mass_id, clock, status=MassSendStatus.FAILED, error=exc)
    return await _adopt(sessions, mass_id, clock, result.msgid, list(result.fail_list))


async def _finish(
    sessions: Sessions, mass_id: int, clock: Clock, *, status: str, error: Exception | None
) -> MassSend:
    async with sessions() as session, session.begin():
        row = await session.get(MassSend, mass_id)
        row.status = status
        row.error = str(error) if error else None
        row.updated_at = clock.now()
        if status in (MassSendStatus.DONE, MassSendStatus.FAILED):
            row.done_at = clock.now()
        return row


async def _adopt(
    sessions: Sessions, mass_id: int, clock: Clock, msgid: str, fail_list: list[str]
) -> MassSend:
    now = clock.now()
    async with sessions() as session, session.begin():
        row = await session.get(MassSend, mass_id)
        row.status = MassSendStatus.CREATED
        row.msgid = msgid
        row.fail_list = fail_list
        row.error = None
        row.updated_at = now
        insert = upsert_insert(session.bind.dialect.name)
        pending = [ext for ext in row.recipients if ext not in set(fail_list)]
        if pending:
            await session.execute(
                insert(MassSendResult)
                .values(
                    [
                        {
                            "mass_send_id": mass_id,
                            "external_userid": ext,
                            "status": 0,
                            "updated_at": now,
                        }
                        for ext in pending
                    ]
                )
                .on_conflict_do_nothing(index_elements=["mass_send_id", "external_userid"])
            )
        return row


# ---- following results -----------------------------------------------------------------------


@dataclass(slots=True)
class PollReport:
    checked: int = 0
    delivered: int = 0
    done: int = 0
    reconciled: int = 0
    parked: int = 0  # mass sends it could not follow (guidebot.db.parking)


JOB = "mass-sends"  # as guidebot.app names the job; the mass sends it parks are filed under it


async def poll_mass_sends(
    sessions: Sessions, wecom: WeComClient, clock: Clock, *, limit: int = 50
) -> PollReport:
    """The periodic job: follow created tasks' results; reconcile unknown ones."""
    report = PollReport()
    now = clock.now()
    async with sessions() as session, session.begin():
        # A `sending` row this old lost the process that was sending it.
        await session.execute(
            update(MassSend)
            .where(
                MassSend.status == MassSendStatus.SENDING,
                MassSend.requested_at < now - SENDING_STALE,
            )
            .values(
                status=MassSendStatus.UNKNOWN, error="interrupted while sending", updated_at=now
            )
        )
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(MassSend)
                .where(
                    MassSend.status.in_((MassSendStatus.CREATED, MassSendStatus.UNKNOWN)),
                    unparked(JOB, MassSend.__tablename__, MassSend.id),
                )
                .order_by(MassSend.checked_at.is_not(None), MassSend.checked_at, MassSend.id)
                .limit(limit)
            )
        )
    for row in rows:
        try:
            if row.status == MassSendStatus.UNKNOWN:
                report.reconciled += await _reconcile(sessions, wecom, clock, row)
            else:
                delivered, done = await _follow(sessions, wecom, clock, row)
                report.checked += 1
                report.delivered += delivered
                report.done += done
        except WeComError as exc:
            log.warning("mass send %s: checking results failed: %s", row.id, exc)
        except Exception as exc:
            # One mass send it cannot follow (an answer no instant holds) is parked with its
            # reason, and later runs skip it; the others are followed all the same.
            await park_apart(
                sessions,
                exc,
                job=JOB,
                table=MassSend.__tablename__,
                key=row.id,
                now=now,
                detail=f"mass send {row.id} by {row.guide_userid} (msgid {row.msgid})",
            )
            report.parked += 1
    return report


async def _follow(
    sessions: Sessions, wecom: WeComClient, clock: Clock, row: MassSend
) -> tuple[int, int]:
    results = [r async for r in wecom.iter_groupmsg_send_result(row.msgid, row.guide_userid)]
    now = clock.now()
    delivered = 0
    async with sessions() as session, session.begin():
        known = {
            r.external_userid: r
            for r in await session.scalars(
                select(MassSendResult).where(MassSendResult.mass_send_id == row.id)
            )
        }
        for entry in results:
            ext = entry.get("external_userid")
            if not ext:
                continue
            status = int(entry.get("status", 0) or 0)
            sent = entry.get("send_time")
            send_time = _instant(sent, f"{ext}'s send_time") if sent else None
            result = known.get(ext)
            if result is None:
                result = MassSendResult(mass_send_id=row.id, external_userid=ext)
                session.add(result)
                known[ext] = result
            if result.status != status or result.send_time != send_time:
                result.status, result.send_time, result.updated_at = status, send_time, now
            if status == 1 and await service.record_forward(
                session,
                ref=f"m:{row.id}:{ext}",
                item_id=row.item_id,
                guide=row.guide_userid,
                customer=ext,
                via=ForwardVia.MASS_SEND,
                sent_at=send_time or now,
                now=now,
                mass_send_id=row.id,
            ):
                delivered += 1
        current = await session.get(MassSend, row.id)
        current.checked_at = now
        current.updated_at = now
        finished = bool(known) and all(r.status != 0 for r in known.values())
        if finished or now - row.created_at > POLL_FOR:
            current.status = MassSendStatus.DONE
            current.done_at = now
            return delivered, 1
    return delivered, 0


def _instant(seconds: Any, name: str) -> datetime:
    """An epoch second from WeCom as an instant, or a ValueError that names it."""
    try:
        return datetime.fromtimestamp(int(seconds), UTC)
    except (OverflowError, OSError, ValueError, TypeError):
        raise ValueError(f"{name} {seconds!r} is no instant") from None


async def _reconcile(sessions: Sessions, wecom: WeComClient, clock: Clock, row: MassSend) -> int:
    """Find the task an unanswered add_msg_template may have created, by the link's nonce."""
    now = clock.now()
    start = (row.requested_at or row.created_at) - timedelta(minutes=1)
    end = min(now, start + RECONCILE_WINDOW)
    found = None
    if row.link_nonce:
        async for task in wecom.iter_groupmsg_list_v2(
            start_time=start, end_time=end, filter_type=0, limit=100
        ):
            if any(row.link_nonce in _link_nonces(a) for a in task.get("attachments") or []):
                found = task
                break
    if found is not None:
        log.info("mass send %s: found its task %s; adopting it", row.id, found.get("msgid"))
        await _adopt(sessions, row.id, clock, str(found.get("msgid")), [])
        return 1
    async with sessions() as session, session.begin():
        current = await session.get(MassSend, row.id)
        current.checked_at = now
        if now > end and now - row.created_at > POLL_FOR:
            current.status = MassSendStatus.FAILED
            current.error = "no task found for it in WeCom; nothing was sent"
            current.done_at = now
    return 0


def _link_nonces(attachment: dict[str, Any]) -> set[str]:
    link = attachment.get("link") if isinstance(attachment, dict) else None
    url = link.get("url") if isinstance(link, dict) else None
    if not isinstance(url, str) or "/r/" not in url:
        return set()
    nonce = links.unverified_nonce(url.rsplit("/r/", 1)[1])
    return {nonce} if nonce else set()


async def get_mass_send(
    session: AsyncSession, mass_id: int
) -> tuple[MassSend, list[MassSendResult]]:
    row = await session.get(MassSend, mass_id)
    if row is None:
        raise NotFound(f"no mass send {mass_id}")
    results = list(
        await session.scalars(
            select(MassSendResult)
            .where(MassSendResult.mass_send_id == mass_id)
            .order_by(MassSendResult.external_userid)
        )
    )
    return row, results
