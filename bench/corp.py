"""The corp both data benchmarks load: a root, `guides // 10` stores (at least one) and `guides`
active guides spread over them, each a member of their store since EARLY."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from guidebot.contacts.models import EARLY, Department, Guide, StoreMembership


def guide_ids(guides: int) -> list[str]:
    return [f"g{n:04d}" for n in range(guides)]


def corp_rows(guides: int, now: datetime) -> list[tuple[Any, list[dict]]]:
    """(model, rows) to insert in this order: departments, guides, store memberships."""
    stores = max(1, guides // 10)
    userids = guide_ids(guides)
    departments = [
        dict(id=1, name="corp", parent_id=None, is_store=False, code="corp", updated_at=now)
    ] + [
        dict(
            id=100 + s,
            name=f"店{s:03d}",
            parent_id=1,
            is_store=True,
            code=f"S{s:03d}",
            updated_at=now,
        )
        for s in range(stores)
    ]
    people = [
        dict(
            userid=u,
            name=f"导购{u[1:]}",
            status="active",
            main_department=100 + i % stores,
            updated_at=now,
        )
        for i, u in enumerate(userids)
    ]
    memberships = [
        dict(guide_userid=u, store_id=100 + i % stores, valid_from=EARLY)
        for i, u in enumerate(userids)
    ]
    return [(Department, departments), (Guide, people), (StoreMembership, memberships)]
