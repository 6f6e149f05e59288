"""Nightly reconciliation: WeCom drops some callbacks, so compare with what it lists.

For every active guide, externalcontact/batch/get_by_user (≤100 userids a call, every page)
lists the customers WeCom says they have. A pair WeCom lists and guidebot does not know (or
knows as ended before WeCom's createtime) is an add that never arrived; an active relation
WeCom does not list is a delete that never arrived. Both are repaired through the same
functions the callbacks use, logged with source "reconcile", and each repair gets one log
line. Running it twice repairs nothing the second time.

WeCom keeps listing a pair after the customer deleted the guide (the one-way relationship
remains), so a missed del_follow_user cannot be seen here; a missed del_external_contact can.

Tags too: an active pair whose corp tags (follow_info.tag_id) differ from guidebot's record
takes WeCom's, named from the corp tag list (get_corp_tag_list, read once a run), through the
same function every tag change goes through (guidebot.contacts.tags.record_tags): a missed
edit_external_contact is repaired, and the tags it gave are announced like an edit's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.contacts.models import (
    EventSource,
    Guide,
    GuideStatus,
    Relation,
    RelationStatus,
    Transfer,
    TransferStatus,
)
from guidebot.contacts.relations import lock_relation
from guidebot.contacts.service import record_added, record_ended
from guidebot.contacts.tags import Tag, corp_tags, named, record_tags
from guidebot.contacts.wecom_profile import Profile, from_epoch
from guidebot.db.base import constant
from guidebot.db.parking import isolating
from guidebot.wecom.client import WeComClient, WeComError, WeComTransportError

log = logging.getLogger(__name__)

BATCH = 100  # userids per batch/get_by_user call
# Member-level refusals: one bad userid fails the whole call, so retry the chunk one by one.
MEMBER_ERRORS = frozenset({40003, 60111, 60011, 84074})
REASON = "reconciliation"
JOB = "reconcile-contacts"  # as guidebot.app schedules it; parked pairs are filed under it

Pair = tuple[str, str]


@dataclass(slots=True)
class ReconcileReport:
    started_at: datetime
    guides: int = 0
    listed: int = 0  # pairs WeCom listed
    added: list[Pair] = field(default_factory=list)
    reactivated: list[Pair] = field(default_factory=list)
    ended: list[Pair] = field(default_factory=list)
    retagged: list[Pair] = field(default_factory=list)  # active pairs whose tags were repaired
    errors: list[str] = field(default_factory=list)
    parked: list[Pair] = field(default_factory=list)  # pairs it could not repair (parked_rows)

    @property
    def repairs(self) -> int:
        return len(self.added) + len(self.reactivated) + len(self.ended) + len(self.retagged)


async def reconcile(session: AsyncSession, wecom: WeComClient, now: datetime) -> ReconcileReport:
    """Repair missed adds, deletes and tag edits for every active guide; see the module
    docstring.

    Commits after each chunk of guides, and before each WeCom call, so SQLite's single writer
    is never held across the network. Guides whose listing failed are left untouched.
    """
    guides = list(
        await session.scalars(
            select(Guide.userid).where(Guide.status == GuideStatus.ACTIVE).order_by(Guide.userid)
        )
    )
    await session.commit()
    report = ReconcileReport(started_at=now, guides=len(guides))
    tags = await _corp_tags(wecom, report)
    for start in range(0, len(guides), BATCH):
        chunk = guides[start : start + BATCH]
        items, listed_guides = await _list(wecom, chunk, report)
        report.listed += len(items)
        await _apply(session, listed_guides, _named(items, tags), now, report)
        await session.commit()
    log.info(
        "reconciliation: %d guides, %d pairs listed; %d added, %d reactivated, %d ended, "
        "%d retagged, %d errors, %d parked",
        report.guides,
        report.listed,
        len(report.added),
        len(report.reactivated),
        len(report.ended),
        len(report.retagged),
        len(report.errors),
        len(report.parked),
    )
    return report


async def _corp_tags(wecom: WeComClient, report: ReconcileReport) -> dict[str, Tag] | None:
    """The corp's tags by id (doc 92117), or None when WeCom would not say: then tags keep the
    names they had, and a tag never named is kept by id."""
    try:
        return corp_tags(await wecom.get_corp_tag_list())
    except WeComError as exc:
        report.errors.append(f"get_corp_tag_list: {exc}")
        log.warning("reconciliation reads tags without their names: %s", exc)
        return None


def _named(items: list[dict[str, Any]], tags: dict[str, Tag] | None) -> list[dict[str, Any]]:
    """batch/get_by_user gives a pair's tag ids only; with the corp list they are named as
    externalcontact/get names them (follow_user.tags), which is how the relation keeps them."""
    if tags is None:
        return items
    out = []
    for item in items:
        follow = dict(item.get("follow_info") or {})
        if isinstance(follow.get("tag_id"), list):
            follow["tags"] = [
                {"tag_id": t["id"], "tag_name": t["name"], "group_name": t["group"]}
                for t in named([str(i) for i in follow["tag_id"]], tags, ())
            ]
        out.append({**item, "follow_info": follow})
    return out


async def _list(
    wecom: WeComClient, userids: Sequence[str], report: ReconcileReport
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every item WeCom lists for these guides, and the guides it could list."""
    try:
        return [item async for item in wecom.iter_batch_get_by_user(userids)], list(userids)
    except WeComError as exc:
        if (
            len(userids) > 1
            and exc.errcode in MEMBER_ERRORS
            and not isinstance(exc, WeComTransportError)
        ):
            items: list[dict[str, Any]] = []
            listed: list[str] = []
            for userid in userids:
                more, ok = await _list(wecom, [userid], report)
                items += more
                listed += ok
            return items, listed
        report.errors.append(f"{','.join(userids)}: {exc}")
        log.warning("reconciliation skipped %d guide(s): %s", len(userids), exc)
        return [], []


async def _apply(
    session: AsyncSession,
    guides: Sequence[str],
    items: list[dict[str, Any]],
    now: datetime,
    report: ReconcileReport,
) -> None:
    if not guides:
        return
    listed: dict[Pair, dict[str, Any]] = {}
    for item in items:
        follow = item.get("follow_info") or {}
        contact = item.get("external_contact") or {}
        if follow.get("userid") and contact.get("external_userid"):
            listed[(follow["userid"], contact["external_userid"])] = item

    # One unlocked read; only the pairs that need a repair are locked, and re-checked then.
    rows = (
        await session.execute(
            select(
                Relation.guide_userid,
                Relation.external_userid,
                Relation.status,
                Relation.last_event_at,
                Relation.tags,
            ).where(Relation.guide_userid.in_(guides))
        )
    ).all()
    known = {(r.guide_userid, r.external_userid): (r.status, r.last_event_at) for r in rows}

    # A pair the repairs cannot handle (an instant out of range, say) is parked with its
    # reason, and the others are repaired all the same (guidebot.db.parking).
    async def add_all(pairs: Sequence[Pair]) -> list[_Repair]:
        return [r for pair in pairs if (r := await _add(session, pair, listed[pair], known, now))]

    def listing(pair: Pair) -> str:
        createtime = listed[pair]["follow_info"].get("createtime")
        return f"WeCom lists {_pair(pair)} with createtime {createtime!r}"

    await _repair(session, list(listed), add_all, now, report, listing)

    in_transfer = {
        (handover, ext)
        for handover, ext in await session.execute(
            select(Transfer.handover_userid, Transfer.external_userid).where(
                Transfer.handover_userid.in_(guides),
                Transfer.status == constant(TransferStatus.PENDING),
            )
        )
    }
    unlisted = [
        pair
        for pair, (status, _) in known.items()
        # a pending transfer is settled by the transfer poll
        if status == RelationStatus.ACTIVE and pair not in listed and pair not in in_transfer
    ]

    await _retag_listed(session, rows, listed, now, report)

    async def end_all(pairs: Sequence[Pair]) -> list[_Repair]:
        return [r for pair in pairs if (r := await _end(session, pair, now))]

    await _repair(
        session,
        unlisted,
        end_all,
        now,
        report,
        lambda p: f"{_pair(p)} is active here and not listed by WeCom",
    )


@dataclass(frozen=True, slots=True)
class _Repair:
    kind: str  # "added", "reactivated", "retagged" or "ended"
    pair: Pair
    note: str  # the log line


def _pair(pair: Pair) -> str:
    return "/".join(pair)


async def _repair(
    session: AsyncSession,
    pairs: list[Pair],
    work: Callable[[Sequence[Pair]], Awaitable[list[_Repair]]],
    now: datetime,
    report: ReconcileReport,
    detail: Callable[[Pair], str],
) -> None:
    done, parked = await isolating(
        session, pairs, work, job=JOB, table="relations", key=_pair, now=now, detail=detail
    )
    for repair in (r for batch in done for r in batch):
        getattr(report, repair.kind).append(repair.pair)
        log.info("%s", repair.note)
    report.parked += parked


async def _add(
    session: AsyncSession,
    pair: Pair,
    item: dict[str, Any],
    known: dict[Pair, tuple[str, datetime]],
    now: datetime,
) -> _Repair | None:
    userid, ext = pair
    follow = item["follow_info"]
    createtime = from_epoch(follow.get("createtime")) or now
    status, last_event_at = known.get(pair, (None, None))
    if status is not None and (status == RelationStatus.ACTIVE or createtime <= last_event_at):
        return None  # known, or ended after this add (a one-way lost relation stays listed)
    was_ended = status is not None
    await record_added(
        session,
        userid=userid,
        external_userid=ext,
        at=createtime,
        now=now,
        source=EventSource.RECONCILE,
        state=follow.get("state") or None,
        profile=Profile(dict(item["external_contact"]), dict(follow)),
    )
    kind = "reactivated" if was_ended else "added"
    note = f"reconciliation: {kind} {userid}/{ext} (WeCom createtime {createtime.isoformat()})"
    return _Repair(kind, pair, note)


async def _retag_listed(
    session: AsyncSession,
    rows: Sequence[Any],
    listed: dict[Pair, dict[str, Any]],
    now: datetime,
    report: ReconcileReport,
) -> None:
    """Active pairs whose tags differ from WeCom's listing take WeCom's."""
    retag = [
        (r.guide_userid, r.external_userid)
        for r in rows
        if r.status == RelationStatus.ACTIVE
        and (r.guide_userid, r.external_userid) in listed
        and _tags_differ(r.tags, listed[(r.guide_userid, r.external_userid)]["follow_info"])
    ]

    async def retag_all(pairs: Sequence[Pair]) -> list[_Repair]:
        return [r for pair in pairs if (r := await _retag(session, pair, listed[pair], now))]

    await _repair(
        session,
        retag,
        retag_all,
        now,
        report,
        lambda p: f"{_pair(p)}: WeCom lists tags {listed[p]['follow_info'].get('tag_id')!r}",
    )


def _tag_ids(tags: Sequence[Any] | None) -> set[str]:
    return {str(t.get("id")) for t in tags or () if isinstance(t, dict) and t.get("id")}


def _tags_differ(tags: Sequence[Any] | None, follow: dict[str, Any]) -> bool:
    listed = follow.get("tag_id")
    return isinstance(listed, list) and _tag_ids(tags) != {str(t) for t in listed}


async def _retag(
    session: AsyncSession, pair: Pair, item: dict[str, Any], now: datetime
) -> _Repair | None:
    relation = await lock_relation(session, *pair)
    follow = item["follow_info"]
    if (
        relation is None
        or relation.status != RelationStatus.ACTIVE
        or not _tags_differ(relation.tags, follow)
        or relation.updated_at >= now  # changed during the walk: the newer word stands
    ):
        return None
    if "tags" in follow:
        tags = [
            {"id": t.get("tag_id"), "name": t.get("tag_name"), "group": t.get("group_name")}
            for t in follow["tags"]
        ]
    else:
        tags = named([str(t) for t in follow["tag_id"]], {}, relation.tags or [])
    before = sorted(_tag_ids(relation.tags))
    await record_tags(session, relation, tags, at=now, now=now, source=EventSource.RECONCILE)
    note = (
        f"reconciliation: retagged {_pair(pair)} ({before} here, {sorted(_tag_ids(tags))} in WeCom)"
    )
    return _Repair("retagged", pair, note)


async def _end(session: AsyncSession, pair: Pair, now: datetime) -> _Repair | None:
    relation = await lock_relation(session, *pair)
    if (
        relation is None
        or relation.status != RelationStatus.ACTIVE
        or not relation.confirmed  # WeCom lists an unconfirmed 免验证 add nowhere
        or relation.last_event_at >= now  # it happened during the walk
    ):
        return None
    await record_ended(
        session,
        userid=relation.guide_userid,
        external_userid=relation.external_userid,
        status=RelationStatus.REMOVED,
        at=now,
        now=now,
        source=EventSource.RECONCILE,
        reason=REASON,
    )
    note = f"reconciliation: ended {_pair(pair)} (active here, not listed by WeCom)"
    return _Repair("ended", pair, note)
