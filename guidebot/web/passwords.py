"""Password hashes for /admin accounts: scrypt (n=2**14, r=8, p=1, 16-byte salt) from hashlib,
stored as `scrypt$n$r$p$salt$hash` (base64url), compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# The work factor of new hashes. Each hash carries its own, so changing it never locks anyone
# out. The tests lower it, except those about the cost itself (tests/conftest.py).
SCRYPT_COST = {"n": 2**14, "r": 8, "p": 1}
_DUMMY_SALT = b"guidebot-dummy-salt"


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    n, r, p = SCRYPT_COST["n"], SCRYPT_COST["r"], SCRYPT_COST["p"]
    return f"scrypt${n}${r}${p}${_b64e(salt)}${_b64e(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check; with stored=None it does the same work and answers False."""
    if stored is None:
        _scrypt(password, _DUMMY_SALT, **SCRYPT_COST)
        return False
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        given = _scrypt(password, _b64d(salt), int(n), int(r), int(p))
        return hmac.compare_digest(given, _b64d(expected))
    except ValueError:
        return False
