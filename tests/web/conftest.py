"""The web tests reuse the metrics harness (tests/metrics/conftest.py): simulated WeCom, store 11
张江店 with g1 and g3, store 12 徐汇店 with g2, customers wmc01..wmc12, a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from guidebot.clock import FakeClock
from guidebot.web.accounts import save_account
from guidebot.web.auth import (
    ADMIN_COOKIE,
    SESSION_COOKIE,
    csrf_token,
    mint_admin_session,
    mint_session,
)
from tests.harness import deploy_dir, served, write_playbook
from tests.metrics import conftest as metrics
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


# A test that only reads, on the module's loop: it may take `shared_h` instead of `h`.
READS_ONLY = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_h(module_database_url, tmp_path_factory):
    """One harness (as `h`) for a module's tests that only read, on SQLite then PostgreSQL:
    such a test runs on the module's event loop (`pytest.mark.asyncio(loop_scope="module")`)
    and neither writes nor moves the clock, so each sees what the module's fixtures made."""
    sop = deploy_dir(tmp_path_factory.mktemp("deploy"))
    write_playbook(sop, metrics.PLAYBOOK)
    async with served() as serve:
        clock = FakeClock(metrics.at(9, 9, 0))
        yield await metrics.make_harness(serve, module_database_url, clock, sop)


@pytest.fixture
def shared_h(module_h):
    """The module's harness, its client's cookies (a `?lang=` choice, say) forgotten."""
    module_h.client.session.cookie_jar.clear()
    return module_h
