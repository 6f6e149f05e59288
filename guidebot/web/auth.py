"""Who is asking: roles, sessions (the admin's and the guide's) and CSRF tokens.

Roles
-----
* `hq`: the `Authorization: Bearer <GUIDEBOT_ADMIN_TOKEN>` header, or an HQ account's session.
* `manager`: a manager account's session; sees only the stores bound to the account.
* `guide`: the sidebar's session (`gb_guide`, minted after WeCom OAuth in
  guidebot.web.sidebar, kept here); sees only the guide's own customers and numbers.

Sessions
--------
`/sidebar/oauth` sets `gb_guide`: the guide's userid, an expiry and a nonce, HMAC-SHA256 with a
key derived from GUIDEBOT_SECRET_KEY, 12 hours, HttpOnly, SameSite=Lax; only an active guide's
session is honoured. `/admin/login` sets `gb_admin`: the account id and an expiry, signed with
HMAC-SHA256 under a key derived from GUIDEBOT_SECRET_KEY (the guide's scheme, another purpose
string), HttpOnly, SameSite=Lax, Secure when GUIDEBOT_PUBLIC_URL is https. The account is read
again on every request, so disabling it ends its sessions. Each cookie carries a random nonce;
signing out revokes it in the database (guidebot.web.revoked), so a copy of the cookie stops
working on every instance at once, as does the guide's after /sidebar/logout.

CSRF
----
Session-bound tokens: the token is an HMAC of the session cookie's value under a third derived
key. Admin forms carry it in a hidden `csrf` field; JSON calls made with a cookie session send it
as `X-CSRF-Token`. Every POST, PUT, PATCH and DELETE made with a cookie session must carry it;
calls with the bearer token need none (a browser never adds that header by itself).

Passwords are hashed in guidebot.web.passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import or_, select

from guidebot.contacts.models import Guide, GuideStatus, StoreMembership
from guidebot.content import links
from guidebot.web.accounts import load_account
from guidebot.web.keys import CLOCK, SESSIONS, SETTINGS
from guidebot.web.revoked import is_revoked

ADMIN_COOKIE = "gb_admin"
ADMIN_TTL = timedelta(hours=12)
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_COOKIE = "gb_guide"  # the guide's (the sidebar's)
SESSION_TTL = timedelta(hours=12)
_ADMIN_PURPOSE = b"guidebot/admin-session/v1"
_GUIDE_PURPOSE = b"guidebot/guide-session/v1"
_CSRF_PURPOSE = b"guidebot/csrf/v1"

# ---- signed values ---------------------------------------------------------------------------


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret_key: str, purpose: bytes) -> bytes:
    return hmac.new(secret_key.encode(), purpose, hashlib.sha256).digest()


def _sign(secret_key: str, purpose: bytes, payload: str) -> str:
    return _b64e(hmac.new(_key(secret_key, purpose), payload.encode(), hashlib.sha256).digest())


def mint_admin_session(secret_key: str, account_id: int, now: datetime) -> str:
    expires = int((now + ADMIN_TTL).timestamp())
    payload = _b64e(json.dumps([account_id, expires, secrets.token_hex(8)]).encode())
    return f"{payload}.{_sign(secret_key, _ADMIN_PURPOSE, payload)}"


def read_admin_claims(
    secret_key: str, value: str | None, now: datetime
) -> tuple[int, datetime, str] | None:
    """A valid, unexpired admin cookie's account id, expiry and revocation key; else None."""
    if not value or len(value) > 300 or value.count(".") != 1:
        return None
    payload, _, signature = value.partition(".")
    if not hmac.compare_digest(signature, _sign(secret_key, _ADMIN_PURPOSE, payload)):
        return None
    try:
        account_id, expires, nonce = json.loads(_b64d(payload))
    except ValueError:
        return None
    if not isinstance(account_id, int) or not isinstance(expires, int):
        return None
    if not isinstance(nonce, str) or expires <= now.timestamp():
        return None
    return account_id, datetime.fromtimestamp(expires, UTC), f"admin:{nonce}"


def read_admin_session(secret_key: str, value: str | None, now: datetime) -> int | None:
    """The account id of a valid, unexpired admin cookie (revocation is checked by the caller)."""
    claims = read_admin_claims(secret_key, value, now)
    return claims[0] if claims is not None else None


def csrf_token(secret_key: str, session_value: str) -> str:
    return _sign(secret_key, _CSRF_PURPOSE, session_value)


def csrf_ok(secret_key: str, session_value: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(given or "", csrf_token(secret_key, session_value))


# ---- the guide's session (the sidebar) --------------------------------------------------------


def _guide_key(secret_key: str) -> bytes:
    return links.derive_key(secret_key, _GUIDE_PURPOSE)


def mint_session(secret_key: str, userid: str, now: datetime) -> str:
    expires = int((now + SESSION_TTL).timestamp())
    payload = links.b64e(json.dumps([userid, expires, secrets.token_hex(8)]).encode())
    mac = hmac.new(_guide_key(secret_key), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{links.b64e(mac)}"


def read_session_claims(
    secret_key: str, value: str | None, now: datetime
) -> tuple[str, datetime, str] | None:
    """A valid, unexpired guide cookie's userid, expiry and revocation key; else None."""
    if not value or len(value) > 400 or value.count(".") != 1:
        return None
    payload, _, signature = value.partition(".")
    try:
        given = links.b64d(signature)
        expected = hmac.new(_guide_key(secret_key), payload.encode(), hashlib.sha256).digest()
    except ValueError:
        return None
    if not hmac.compare_digest(given, expected):
        return None
    try:
        userid, expires, nonce = json.loads(links.b64d(payload))
    except ValueError:
        return None  # a cookie from before sessions had a nonce: its guide signs in again
    if not isinstance(userid, str) or not isinstance(expires, int) or not isinstance(nonce, str):
        return None
    if expires <= now.timestamp():
        return None
    return userid, datetime.fromtimestamp(expires, UTC), f"guide:{nonce}"


def read_session(secret_key: str, value: str | None, now: datetime) -> str | None:
    """The userid of a valid, unexpired guide cookie (revocation is checked by current_guide)."""
    claims = read_session_claims(secret_key, value, now)
    return claims[0] if claims is not None else None


def set_guide_session(response: web.StreamResponse, request: web.Request, userid: str) -> None:
    app = request.app
    response.set_cookie(
        SESSION_COOKIE,
        mint_session(app[SETTINGS].secret_key, userid, app[CLOCK].now()),
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",  # the sidebar page calls /api/v1 for the guide's own customers and numbers
        httponly=True,
        samesite="Lax",
        secure=app[SETTINGS].public_url.startswith("https://"),
    )


async def current_guide(request: web.Request) -> Guide | None:
    app = request.app
    claims = read_session_claims(
        app[SETTINGS].secret_key, request.cookies.get(SESSION_COOKIE), app[CLOCK].now()
    )
    if claims is None:
        return None
    userid, _expires, revocation_key = claims
    async with app[SESSIONS]() as session:
        if await is_revoked(session, revocation_key):
            return None
        guide = await session.get(Guide, userid)
    return guide if guide is not None and guide.status == GuideStatus.ACTIVE else None


# ---- principals ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the request is for. `session` is the cookie's value (None for the bearer token)."""

    role: str  # "hq", "manager" or "guide"
    name: str
    store_ids: frozenset[int] = frozenset()  # a manager's stores
    userid: str | None = None  # a guide's userid
    session: str | None = None
    account_id: int | None = None  # an admin account's (None for the bearer token and guides)
    language: str | None = None  # the account's chosen language (guidebot.i18n), if any

    @property
    def is_hq(self) -> bool:
        return self.role == "hq"

    def csrf(self, secret_key: str) -> str:
        return csrf_token(secret_key, self.session) if self.session else ""


# request[PRINCIPAL]: the Principal, set by the API's guard and the admin pages.
PRINCIPAL = web.RequestKey("principal", Principal)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def principal_of(request: web.Request) -> Principal | None:
    """The request's principal, or None. A wrong bearer token is None, never a session."""
    app = request.app
    settings, now = app[SETTINGS], app[CLOCK].now()
    token = _bearer(request)
    if token is not None:
        ok = bool(token) and hmac.compare_digest(token.encode(), settings.admin_token.encode())
        return Principal("hq", "admin token") if ok else None
    admin = request.cookies.get(ADMIN_COOKIE)
    claims = read_admin_claims(settings.secret_key, admin, now)
    if claims is not None:
        account_id, _expires, revocation_key = claims
        async with app[SESSIONS]() as session:
            revoked = await is_revoked(session, revocation_key)
            account = None if revoked else await load_account(session, account_id)
        if account is not None:
            stores = account.store_ids if account.role == "manager" else frozenset()
            return Principal(
                account.role,
                account.username,
                stores,
                session=admin,
                account_id=account.account_id,
                language=account.language,
            )
    guide = await current_guide(request)
    if guide is not None:
        return Principal(
            "guide", guide.name, userid=guide.userid, session=request.cookies.get(SESSION_COOKIE)
        )
    return None


def csrf_required(request: web.Request, who: Principal) -> bool:
    """True when this request must carry a CSRF token and does not carry a valid one."""
    if request.method not in UNSAFE_METHODS or who.session is None:
        return False
    return not csrf_ok(
        request.app[SETTINGS].secret_key, who.session, request.headers.get(CSRF_HEADER)
    )


def set_admin_cookie(response: web.StreamResponse, request: web.Request, value: str) -> None:
    settings = request.app[SETTINGS]
    response.set_cookie(
        ADMIN_COOKIE,
        value,
        max_age=int(ADMIN_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=settings.public_url.startswith("https://"),
    )


def principal(request: web.Request) -> Principal:
    """The principal `_guarded` (or the admin pages) put on the request."""
    return request[PRINCIPAL]


# ---- scope -----------------------------------------------------------------------------------
# Views open to managers and guides use these to narrow what they read; anything outside the
# scope is answered like something that does not exist (404).


def store_visible(who: Principal, store_id: int | None) -> bool:
    if who.is_hq:
        return True
    return who.role == "manager" and store_id is not None and store_id in who.store_ids


def relation_visible(who: Principal, guide_userid: str, store_id: int | None) -> bool:
    if who.is_hq:
        return True
    if who.role == "guide":
        return guide_userid == who.userid
    return store_id is not None and store_id in who.store_ids


async def guide_visible(session, who: Principal, userid: str) -> bool:
    """HQ: any guide; a guide: themself; a manager: guides who belong, or belonged, to one of
    their stores, as the store's leaderboard lists them. What a manager then reads of the
    guide is narrowed to the days in their stores (Scope(stores=...)), never a former store's.
    """
    if who.is_hq:
        return True
    if who.role == "guide":
        return userid == who.userid
    found = await session.scalar(
        select(StoreMembership.id)
        .where(
            StoreMembership.guide_userid == userid,
            StoreMembership.store_id.in_(sorted(who.store_ids)),
            # A membership closed the instant it opened held no day.
            or_(
                StoreMembership.valid_to.is_(None),
                StoreMembership.valid_to > StoreMembership.valid_from,
            ),
        )
        .limit(1)
    )
    return found is not None
