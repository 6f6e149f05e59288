"""Tracked-link tokens: a compact signed payload, `GET /r/{token}`; and the signed visitor ids of
the browsers that open links naming no customer, and the signed ref of the open such a browser's
first visit logged (below).

    token = base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload))[:16])

The payload is a JSON array: version, item id, guide, customer ("" when unknown), task id (0
when none), playbook step ("" when none), mass send id (0 when none), issued-at (epoch seconds)
and a random nonce; a link forwarded into a customer group from the sidebar (version 2) adds
the group's chat id, so its opens, and the orders they lead to, count for the group; a link a
community step minted (version 3) adds `via` instead: the step it was minted for
(`group:<send id>`, `moment:<send id>`), so opens are credited to it. The key is derived from
GUIDEBOT_SECRET_KEY for this purpose only, so a tracked-link signature can never be replayed as
a session cookie or the other way round. The signature is checked in constant time before
anything in the payload is looked at; a token that fails any check is simply "not found" to the
caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

VERSION = 1
GROUP_VERSION = 2  # the payload carries a tenth element: the group's chat id
VIA_VERSION = 3  # ...or `via`, the community step's send
MAX_VIA = 32
MAX_TOKEN_LENGTH = 600
_SIGNATURE_BYTES = 16  # 128-bit truncated HMAC-SHA256: short URLs, still unforgeable
_PURPOSE = b"guidebot/tracked-link/v1"


@dataclass(frozen=True, slots=True)
class LinkClaims:
    item_id: int
    guide: str
    customer: str | None
    task_id: int | None
    step: str | None
    mass_send_id: int | None
    issued_at: datetime
    nonce: str
    chat_id: str | None = None  # the customer group it was forwarded into
    via: str | None = None  # "group:<send id>" or "moment:<send id>"


def derive_key(secret_key: str, purpose: bytes = _PURPOSE) -> bytes:
    return hmac.new(secret_key.encode(), purpose, hashlib.sha256).digest()


def b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    if not text or any(c not in _ALPHABET for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def mint(
    secret_key: str,
    *,
    item_id: int,
    guide: str,
    now: datetime,
    customer: str | None = None,
    task_id: int | None = None,
    step: str | None = None,
    mass_send_id: int | None = None,
    chat_id: str | None = None,
    via: str | None = None,
) -> tuple[str, LinkClaims]:
    """A new token (with a fresh nonce) and the claims it carries."""
    if via is not None and not 0 < len(via) <= MAX_VIA:
        raise ValueError("via is 1-32 characters")
    if via is not None and chat_id:
        raise ValueError("a link carries a group chat or a community step's send, not both")
    claims = LinkClaims(
        item_id=int(item_id),
        guide=guide,
        customer=customer or None,
        task_id=int(task_id) if task_id else None,
        step=step or None,
        mass_send_id=int(mass_send_id) if mass_send_id else None,
        issued_at=datetime.fromtimestamp(int(now.timestamp()), UTC),
        nonce=b64e(secrets.token_bytes(9)),
        chat_id=chat_id or None,
        via=via,
    )
    return sign(secret_key, claims), claims


def sign(secret_key: str, claims: LinkClaims) -> str:
    body: list[object] = [
        VIA_VERSION if claims.via else GROUP_VERSION if claims.chat_id else VERSION,
        claims.item_id,
        claims.guide,
        claims.customer or "",
        claims.task_id or 0,
        claims.step or "",
        claims.mass_send_id or 0,
        int(claims.issued_at.timestamp()),
        claims.nonce,
    ]
    if claims.via:
        body.append(claims.via)
    elif claims.chat_id:
        body.append(claims.chat_id)
    payload = b64e(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    return f"{payload}.{b64e(_mac(derive_key(secret_key), payload))}"


def verify(secret_key: str, token: str) -> LinkClaims | None:
    """The claims of a genuine token; None for anything forged, altered, truncated or odd."""
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    payload, _, signature = token.partition(".")
    try:
        given = b64d(signature)
        expected = _mac(derive_key(secret_key), payload)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None
    if not hmac.compare_digest(given, expected):
        return None
    # Genuine from here on: still parse defensively (an old version, a bug of our own).
    try:
        body = json.loads(b64d(payload))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    shapes = (([VERSION], 9), ([GROUP_VERSION], 10), ([VIA_VERSION], 10))
    if not isinstance(body, list) or (body[:1], len(body)) not in shapes:
        return None
    _, item_id, guide, customer, task_id, step, mass_send_id, issued_at, nonce = body[:9]
    chat_id = body[9] if body[0] == GROUP_VERSION else None
    if chat_id is not None and not (isinstance(chat_id, str) and chat_id):
        return None
    via = body[9] if body[0] == VIA_VERSION else None
    if via is not None and not (isinstance(via, str) and 0 < len(via) <= MAX_VIA):
        return None
    if not (
        _is_int(item_id)
        and item_id > 0
        and isinstance(guide, str)
        and guide
        and isinstance(customer, str)
        and _is_int(task_id)
        and isinstance(step, str)
        and _is_int(mass_send_id)
        and _is_int(issued_at)
        and isinstance(nonce, str)
        and nonce
    ):
        return None
    return LinkClaims(
        item_id=item_id,
        guide=guide,
        customer=customer or None,
        task_id=task_id or None,
        step=step or None,
        mass_send_id=mass_send_id or None,
        issued_at=datetime.fromtimestamp(issued_at, UTC),
        nonce=nonce,
        chat_id=chat_id,
        via=via,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ---- visitor ids -------------------------------------------------------------------------------
#
# A browser that opens a link without naming a customer gets a visitor id in a cookie:
#
#     value = base64url(16 random bytes) "." base64url(HMAC-SHA256(key, id)[:16])
#
# under a key of its own. Only an id guidebot issued verifies: a made-up or altered cookie is no
# visitor at all, so it can never count as another unique visitor.

_VISITOR_PURPOSE = b"guidebot/visitor-id/v1"
_CLIENT_PURPOSE = b"guidebot/client-address/v1"
MAX_VISITOR_LENGTH = 64


def mint_visitor(secret_key: str) -> str:
    """A new signed visitor id, as the cookie carries it."""
    visitor = b64e(secrets.token_bytes(16))
    return f"{visitor}.{b64e(_mac(derive_key(secret_key, _VISITOR_PURPOSE), visitor))}"


def verify_visitor(secret_key: str, value: str | None) -> str | None:
    """The id of a genuine visitor cookie; None for none, a made-up or an altered one."""
    if not value or len(value) > MAX_VISITOR_LENGTH or value.count(".") != 1:
        return None
    visitor, _, signature = value.partition(".")
    try:
        given = b64d(signature)
        b64d(visitor)
        expected = _mac(derive_key(secret_key, _VISITOR_PURPOSE), visitor)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None
    return visitor if hmac.compare_digest(given, expected) else None


# The open a cookie-less first visit logged, named in the redirect that hands the browser its
# visitor id (`?seen=<ref>`): when the browser comes back with the id, that open becomes its
# visitor's, so a group or Moments link opened in a tied browser counts for the customer
# (guidebot.metrics.community). Signed under a key of its own: a made-up ref names no open.
_OPEN_PURPOSE = b"guidebot/open-ref/v1"
MAX_OPEN_REF = 40


def open_ref(secret_key: str, open_id: int) -> str:
    """`<open id>.<signature>` for the redirect's `seen`."""
    body = str(int(open_id))
    return f"{body}.{b64e(_mac(derive_key(secret_key, _OPEN_PURPOSE), body)[:12])}"


def verify_open_ref(secret_key: str, value: str | None) -> int | None:
    """The open id a genuine ref names; None for anything else (`seen=1` included)."""
    if not value or len(value) > MAX_OPEN_REF or value.count(".") != 1:
        return None
    body, _, signature = value.partition(".")
    if not body.isascii() or not body.isdigit():
        return None
    try:
        given = b64d(signature)
    except (ValueError, binascii.Error):
        return None
    expected = _mac(derive_key(secret_key, _OPEN_PURPOSE), body)[:12]
    return int(body) if hmac.compare_digest(given, expected) else None


def client_tag(secret_key: str, address: str) -> str:
    """A keyed digest of a client's address: enough to cap one client's bursts, without keeping
    the address itself."""
    digest = hmac.new(derive_key(secret_key, _CLIENT_PURPOSE), address.encode(), hashlib.sha256)
    return b64e(digest.digest()[:16])


def link_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/r/{token}"


def unverified_nonce(token: str) -> str | None:
    """The nonce a token claims, unchecked: only for matching our own links in WeCom's lists
    (get_groupmsg_list_v2) when reconciling. Never trust anything else read this way."""
    try:
        body = json.loads(b64d(token.split(".", 1)[0]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if isinstance(body, list) and len(body) in (9, 10) and isinstance(body[8], str):
        return body[8]
    return None
