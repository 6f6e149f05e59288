"""`guidebot sop simulate` for a `group_message` step: the live groups its filter picks now,
read from the database the command finds (guidebot.sop.cli.store_database), by owner, through
the same query the engine plans with (guidebot.sop.group_steps.group_targets)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url

from guidebot.db.migrate import open_database
from guidebot.groups.labels import labels_of
from guidebot.groups.models import CustomerGroup
from guidebot.sop.group_steps import group_targets
from guidebot.sop.playbook import StepTargets

LOOKUP_TIMEOUT = 5.0
SHOWN = 20  # groups listed; more are counted


def picked_groups(url: str, targets: StepTargets | None) -> list[str]:
    """Lines: each owner with the groups picked for them (name, chat_id, labels), or why the
    database could not say."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).exists():
            return [
                f"（没有数据库 {database}，不知道会选中哪些群）/ (no database at {database}: "
                "which groups it picks is not known here)"
            ]
    try:
        return asyncio.run(asyncio.wait_for(_lines(url, targets), LOOKUP_TIMEOUT))
    except TimeoutError:
        return [f"(the database did not answer within {LOOKUP_TIMEOUT:.0f} s)"]
    except Exception as exc:
        return [f"(group lookup failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]})"]


async def _lines(url: str, targets: StepTargets | None) -> list[str]:
    async with open_database(url, prepare=False, pool_size=1) as sessions, sessions() as session:
        picked = await group_targets(session, targets)
        chat_ids = [c for t in picked for c in t.chat_ids]
        names = dict(
            (
                await session.execute(
                    select(CustomerGroup.chat_id, CustomerGroup.name).where(
                        CustomerGroup.chat_id.in_(chat_ids)
                    )
                )
            ).all()
        )
        labels = await labels_of(session, chat_ids)
    if not picked:
        return [
            "现在没有符合的群，这一步不会发送 / none now: no live group matches (a group step "
            "to no group sends nothing)"
        ]
    lines = [
        f"现在选中 {len(chat_ids)} 个群（{len(picked)} 位群主）/ "
        f"{len(chat_ids)} group(s) of {len(picked)} owner(s) now:"
    ]
    shown = 0
    for target in picked:
        for chat_id in target.chat_ids:
            if shown == SHOWN:
                return [
                    *lines,
                    f"…… 另有 {len(chat_ids) - SHOWN} 个 / ... and {len(chat_ids) - SHOWN} more",
                ]
            tags = f" [{', '.join(labels[chat_id])}]" if chat_id in labels else ""
            name = names.get(chat_id) or "（无群名）/ (no name)"
            lines.append(f"{target.userid}: {name} {chat_id}{tags}")
            shown += 1
    return lines


__all__ = ["picked_groups"]
