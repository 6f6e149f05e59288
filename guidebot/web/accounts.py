"""HQ and store-manager accounts: who may sign in to /admin with a password.

An account has a username, a password hash (guidebot.web.passwords.hash_password: scrypt from the
standard library) and a role: `hq` sees everything, `manager` sees the stores bound to it in
`account_stores` (department ids, so a store keeps its managers when its code changes). Guides
do not have accounts: they sign in through WeCom (the sidebar's OAuth).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ForeignKey, Integer, String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from guidebot.audit.recorder import Actor, record
from guidebot.contacts.directory import find_store
from guidebot.db.base import Base, UTCDateTime
from guidebot.db.engine import create_engine, create_session_factory
from guidebot.web.passwords import hash_password, verify_password

ROLES = ("hq", "manager")


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The pages' language the account chose (guidebot.i18n: zh_CN or en); None: not chosen.
    language: Mapped[str | None] = mapped_column(String(8))


class AccountStore(Base):
    __tablename__ = "account_stores"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    store_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), primary_key=True)


class AccountError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Credentials:
    account_id: int
    password_hash: str


@dataclass(frozen=True, slots=True)
class SignedIn:
    account_id: int
    username: str
    role: str
    store_ids: frozenset[int]
    language: str | None = None


async def store_ids_of(session: AsyncSession, account_id: int) -> frozenset[int]:
    rows = await session.scalars(
        select(AccountStore.store_id).where(AccountStore.account_id == account_id)
    )
    return frozenset(rows)


async def save_account(
    session: AsyncSession,
    username: str,
    password: str,
    role: str,
    stores: list[str],
    now: datetime,
    *,
    actor: Actor | None = None,
) -> Account:
    """Create the account, or reset its password, role and stores (by store code or id);
    recorded in the audit trail as `actor`'s change when given."""
    username = username.strip()
    if not username or len(username) > 64:
        raise AccountError("username must be 1 to 64 characters")
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if len(password) < 8:
        raise AccountError("password must have at least 8 characters")
    if role == "manager" and not stores:
        raise AccountError("a manager needs at least one store")
    if role == "hq" and stores:
        raise AccountError("an hq account sees every store; do not name stores")
    # scrypt in a thread: the event loop keeps serving while it runs.
    password_hash = await asyncio.to_thread(hash_password, password)
    store_ids = []
    for ref in stores:
        found = await find_store(session, ref)
        if found is None or not found.is_store:
            raise AccountError(f"no store {ref!r}")
        store_ids.append(found.id)
    account = await session.scalar(select(Account).where(Account.username == username))
    before = None if account is None else await _audited(session, account)
    if account is None:
        account = Account(username=username, created_at=now)
        session.add(account)
    account.password_hash = password_hash
    account.role = role
    account.disabled_at = None
    await session.flush()
    await session.execute(delete(AccountStore).where(AccountStore.account_id == account.id))
    for store_id in sorted(set(store_ids)):
        session.add(AccountStore(account_id=account.id, store_id=store_id))
    await session.flush()
    if actor is not None:
        after = {**await _audited(session, account), "password": "set"}
        record(
            session,
            actor,
            "account.save",
            target=f"account:{username}",
            before=before,
            after=after,
            now=now,
        )
    return account


async def _audited(session: AsyncSession, account: Account) -> dict:
    """An account as the audit trail keeps it (never its password hash)."""
    return {
        "username": account.username,
        "role": account.role,
        "stores": sorted(await store_ids_of(session, account.id)),
        "disabled_at": account.disabled_at,
    }


async def find_credentials(session: AsyncSession, username: str) -> Credentials | None:
    """The enabled account's id and password hash, or None."""
    account = await session.scalar(select(Account).where(Account.username == username.strip()))
    if account is None or account.disabled_at is not None:
        return None
    return Credentials(account.id, account.password_hash)


async def password_matches(password: str, found: Credentials | None) -> bool:
    """The scrypt check, in a thread; an unknown name costs the same and answers False.

    Callers that may run many at once bound them (guidebot.web.throttle.SignInGate)."""
    return await asyncio.to_thread(
        verify_password, password, found.password_hash if found is not None else None
    )


async def authenticate(
    sessions: async_sessionmaker[AsyncSession], username: str, password: str
) -> SignedIn | None:
    """The account if the password matches; None otherwise (same work either way). No
    transaction is open while the hash is computed."""
    async with sessions() as session:
        found = await find_credentials(session, username)
    if not await password_matches(password, found) or found is None:
        return None
    async with sessions() as session:
        return await load_account(session, found.account_id)


async def load_account(session: AsyncSession, account_id: int) -> SignedIn | None:
    account = await session.get(Account, account_id)
    if account is None or account.disabled_at is not None:
        return None
    return SignedIn(
        account.id,
        account.username,
        account.role,
        await store_ids_of(session, account.id),
        account.language,
    )


async def save_language(session: AsyncSession, account_id: int, language: str) -> None:
    """Remembers the account's choice of language (a guidebot.i18n language code)."""
    account = await session.get(Account, account_id)
    if account is not None:
        account.language = language


async def add_account(
    database_url: str, username: str, password: str, role: str, stores: list[str]
) -> SignedIn:
    """`guidebot accounts add`: create or reset an account in the configured database."""
    engine = create_engine(database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            account = await save_account(
                session,
                username,
                password,
                role,
                stores,
                datetime.now(UTC),
                actor=Actor.command_line(),
            )
            return SignedIn(
                account.id, account.username, account.role, await store_ids_of(session, account.id)
            )
    finally:
        await engine.dispose()
