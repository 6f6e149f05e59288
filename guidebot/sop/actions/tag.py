"""tag: mark_tag on the pair, idempotent. It sends no message; without an expire_after of
its own it expires after DEFAULT_TAG_EXPIRY.

WeCom makes no callback for what an API does (doc 92130), so a marked tag is recorded on the
pair here, with the outcome (guidebot.contacts.tags.mark_tags): the sidebar, the bot, the
filters and the tag triggers see it at once, and the tags gained are announced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from guidebot.contacts.models import EventSource
from guidebot.contacts.tags import corp_tags, mark_tags
from guidebot.sop.actions.base import (
    ActionRuntime,
    Outcome,
    Prepared,
    Shared,
    StepAction,
    not_sent,
    transient,
)
from guidebot.sop.models import CompletedBy, TaskStatus
from guidebot.sop.playbook import DEFAULT_TAG_EXPIRY
from guidebot.wecom.client import WeComError

NO_RELATION = 84061


class Tag(StepAction):
    name = "tag"
    sends = False
    takes_tag = True
    order = 3
    describe = "tag (marks a corp tag)"

    def validate(
        self,
        check: Any,
        draft: Any,
        keys: Mapping[str, Any],
        path: str,
        *,
        trigger: Any,
        first_of: Mapping[str, int],
    ) -> None:
        if "tag" not in keys:
            check.error(
                draft.node,
                f"{path}.tag",
                "required key is missing for action 'tag' (the corp tag to mark)",
            )
            draft.ok = False
        if draft.expire_after is None and "expire_after" not in keys:
            draft.expire_after = DEFAULT_TAG_EXPIRY

    async def execute(
        self, runtime: ActionRuntime, rows: Sequence[Prepared], now: datetime, shared: Shared
    ) -> list[Outcome]:
        return [await mark_tag(runtime, row, now, shared) for row in rows]


async def mark_tag(runtime: ActionRuntime, row: Prepared, now: datetime, shared: Shared) -> Outcome:
    wanted = row.tag or ""
    try:
        tag_id = await _tag_id(runtime, wanted, shared)
        if tag_id is None:
            return Outcome(
                row.id, row.enrollment_id, TaskStatus.FAILED, f"no corp tag named {wanted!r}"
            )
        await runtime.wecom.mark_tag(row.guide_userid, row.external_userid, add_tag=[tag_id])
    except WeComError as exc:
        if transient(exc):
            return not_sent(row, exc, now, "tag")
        if exc.errcode == NO_RELATION:
            return Outcome(
                row.id, row.enrollment_id, TaskStatus.FAILED, "not the guide's customer (84061)"
            )
        return Outcome(row.id, row.enrollment_id, TaskStatus.FAILED, f"mark_tag refused: {exc}")
    tag = shared.tags.get(tag_id) or {"id": tag_id, "name": wanted, "group": None}

    async def record(session: Any) -> None:
        await mark_tags(
            session,
            userid=row.guide_userid,
            external_userid=row.external_userid,
            add=[tag],
            at=now,
            now=now,
            source=EventSource.PLAYBOOK,
        )

    return Outcome(
        row.id,
        row.enrollment_id,
        TaskStatus.DONE,
        result={"tag_id": tag_id},
        completed_by=CompletedBy.ENGINE,
        record=record,
    )


async def _tag_id(runtime: ActionRuntime, wanted: str, shared: Shared) -> str | None:
    """Corp tag names → ids, fetched at most once per execute pass."""
    async with shared.lock:
        if shared.tag_ids is None:
            ids: dict[str, str] = {}
            shared.tags = corp_tags(await runtime.wecom.get_corp_tag_list())
            for tag_id, tag in shared.tags.items():
                ids.setdefault(str(tag.get("name")), tag_id)
                ids[tag_id] = tag_id
            shared.tag_ids = ids
    return shared.tag_ids.get(wanted)


ACTION = Tag()
