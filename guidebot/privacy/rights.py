"""A customer's rights: every record guidebot holds about them (export), and erasure.

Both run in one transaction. The erasure is recorded in the audit trail in that transaction,
with who asked, when, why and a salted hash of the customer's id (`customer_hash`), never the id
or anything it erased.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guidebot.audit.recorder import Actor, record
from guidebot.contacts import word_index
from guidebot.db.turns import take_turns
from guidebot.privacy.customers import HOLDINGS, Subject, rows_of, words_of

FORMAT = "guidebot.customer-export/1"


class PrivacyError(ValueError):
    """A request about a customer that cannot be done; `reason` is bilingual."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def customer_hash(secret_key: str, external_userid: str, now: datetime) -> str:
    """The salted hash the erasure record keeps instead of the id."""
    return Subject(external_userid, secret_key, now).hashed()


async def export_customer(
    session: AsyncSession,
    external_userid: str,
    *,
    secret_key: str,
    now: datetime,
    actor: Actor | None = None,
) -> dict[str, Any]:
    """{"format", "external_userid", "exported_at", "tables": {table: [row, ...]}}: every row
    of every table that holds the customer (tables without any are left out). With `actor`,
    the export is recorded in the audit trail (`privacy.export`, the id's salted hash); the
    caller commits."""
    words = await words_of(session, external_userid)
    subject = Subject(external_userid, secret_key, now, words)
    tables: dict[str, list[dict]] = {}
    for holding in HOLDINGS:
        rows = await rows_of(session, holding, subject)
        if rows:
            tables[holding.table] = rows
    if not tables:
        raise PrivacyError(
            "customer_not_found",
            f"没有这位客户的记录 / guidebot holds nothing about customer {external_userid!r}",
        )
    if actor is not None:
        counts = {table: len(rows) for table, rows in tables.items()}
        target = f"customer:{subject.hashed()}"
        record(session, actor, "privacy.export", target=target, after={"rows": counts}, now=now)
    return {
        "format": FORMAT,
        "external_userid": external_userid,
        "exported_at": now.isoformat(),
        "tables": tables,
    }


@dataclass(frozen=True, slots=True)
class Erasure:
    customer_hash: str
    rows: dict[str, int]  # rows changed per table
    audit_id: int


async def erase_customer(
    session: AsyncSession,
    external_userid: str,
    *,
    reason: str,
    actor: Actor,
    secret_key: str,
    now: datetime,
) -> Erasure:
    """Erase the customer's personal data everywhere, in the caller's transaction."""
    reason = reason.strip()
    if not reason:
        raise PrivacyError("reason_required", "请写明删除原因 / give the reason for the erasure")
    await take_turns(session, f"customer:{external_userid}")
    words = await words_of(session, external_userid)
    subject = Subject(external_userid, secret_key, now, words)
    found = False
    for holding in HOLDINGS:
        if await rows_of(session, holding, subject):
            found = True
            break
    if not found:
        raise PrivacyError(
            "customer_not_found",
            f"没有这位客户的记录 / guidebot holds nothing about customer {external_userid!r}",
        )
    rows: dict[str, int] = {}
    for holding in HOLDINGS:
        if holding.erase is not None:
            changed = await holding.erase(session, subject)
            if changed:
                rows[holding.table] = changed
    # SQLite's search indexes dropped the erased words with the rows (triggers); merging
    # takes them out of the index's older segments too (guidebot.contacts.word_index).
    await word_index.forget(session)
    hashed = subject.hashed()
    entry = record(
        session,
        actor,
        "privacy.erase",
        target=f"customer:{hashed}",
        after={"reason": reason, "rows": rows},
        now=now,
    )
    await session.flush()
    return Erasure(customer_hash=hashed, rows=rows, audit_id=entry.id)
