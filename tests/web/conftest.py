"""The web tests reuse the metrics harness (tests/metrics/conftest.py): simulated WeCom, store 11
张江店 with g1 and g3, store 12 徐汇店 with g2, customers wmc01..wmc12, a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from guidebot.web.accounts import save_account
from guidebot.web.auth import (
    ADMIN_COOKIE,
    SESSION_COOKIE,
    csrf_token,
    mint_admin_session,
    mint_session,
)
from tests.metrics.conftest import clock, h, sop_dir  # noqa: F401  (fixtures)

PASSWORD = "correct horse battery"


class Sessions:
    """Cookies for an HQ account, a manager of store 11 and guide g1, minted as sign-in does."""

    def __init__(self, harness: Any) -> None:
        self.h = harness

    async def account(self, username: str, role: str, stores: list[str]) -> str:
        async with self.h.sessions() as session, session.begin():
            account = await save_account(
                session, username, PASSWORD, role, stores, self.h.clock.now()
            )
            account_id = account.id
        return mint_admin_session(self.h.settings.secret_key, account_id, self.h.clock.now())

    def guide(self, userid: str) -> str:
        return mint_session(self.h.settings.secret_key, userid, self.h.clock.now())

    def csrf(self, value: str) -> str:
        return csrf_token(self.h.settings.secret_key, value)


def admin_cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{ADMIN_COOKIE}={value}"}


def guide_cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


@pytest.fixture
def sessions(h) -> Sessions:  # noqa: F811
    return Sessions(h)
