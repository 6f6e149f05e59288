"""Accounts and passwords: scrypt hashes, validation, sign-in checks, `guidebot accounts add`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guidebot.cli import main
from guidebot.web.accounts import AccountError, authenticate, save_account
from guidebot.web.auth import mint_admin_session, read_admin_session
from guidebot.web.passwords import hash_password, verify_password
from tests.web.conftest import PASSWORD

NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)


@pytest.mark.real_password_cost
def test_password_hashes_are_salted_scrypt_and_verify_in_constant_time():
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret-pass", first)
    assert not verify_password("s3cret-pasS", first)
    assert not verify_password("s3cret-pass", None)
    assert not verify_password("s3cret-pass", "md5$abc")
    assert not verify_password("s3cret-pass", "garbage")


def test_admin_sessions_are_signed_and_expire():
    value = mint_admin_session("k" * 40, 7, NOW)
    assert read_admin_session("k" * 40, value, NOW) == 7
    assert read_admin_session("k" * 40, value, NOW + timedelta(hours=13)) is None
    assert read_admin_session("x" * 40, value, NOW) is None  # another secret key
    payload, _, signature = value.partition(".")
    assert read_admin_session("k" * 40, payload + "A." + signature, NOW) is None
    assert read_admin_session("k" * 40, None, NOW) is None


async def test_save_and_authenticate(h):
    async with h.sessions() as session, session.begin():
        for args, message in (
            (("", PASSWORD, "hq", []), "username"),
            (("x", "short", "hq", []), "at least 8"),
            (("x", PASSWORD, "root", []), "role must be"),
            (("x", PASSWORD, "manager", []), "at least one store"),
            (("x", PASSWORD, "manager", ["99"]), "no store '99'"),
            (("x", PASSWORD, "hq", ["11"]), "do not name stores"),
        ):
            with pytest.raises(AccountError, match=message):
                await save_account(session, *args, NOW)
        await save_account(session, "m", PASSWORD, "manager", ["11", "12", "11"], NOW)
    signed = await authenticate(h.sessions, "m", PASSWORD)
    assert signed is not None and signed.store_ids == {11, 12}
    assert await authenticate(h.sessions, "m", PASSWORD + "x") is None
    assert await authenticate(h.sessions, "nobody", PASSWORD) is None


def test_cli_accounts_add(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GUIDEBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("GUIDEBOT_ACCOUNT_PASSWORD", PASSWORD)
    assert main(["accounts", "add", "boss", "--role", "hq"]) == 0
    assert "account boss: role hq, stores all" in capsys.readouterr().out
    assert main(["accounts", "add", "m", "--role", "manager", "--store", "11"]) == 1
    assert "no store '11'" in capsys.readouterr().err
