"""Signing out ends the session on the server, on every instance: a copy of the cookie taken
before /admin/logout or /sidebar/logout no longer works anywhere, though it has not expired."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from guidebot.web.revoked import RevokedSession
from tests.web.conftest import admin_cookie, guide_cookie
from tests.web.test_pages import _sign_in


async def _second_instance(h, clock, aiohttp_client):
    from guidebot.app import create_app

    return await aiohttp_client(create_app(h.settings, clock=clock, run_workers=False))


async def _status(client, path: str, headers: dict[str, str]) -> int:
    response = await client.get(path, headers=headers, allow_redirects=False)
    return response.status


async def test_admin_sign_out_revokes_the_cookie_on_every_instance(
    h, sessions, clock, aiohttp_client
):
    await sessions.account("boss", "hq", [])
    other = await _second_instance(h, clock, aiohttp_client)
    signed_in = await _sign_in(h, "boss")
    cookie = admin_cookie(signed_in.cookies["gb_admin"].value)
    h.client.session.cookie_jar.clear()
    for client in (h.client, other):
        assert await _status(client, "/admin", cookie) == 200
        assert await _status(client, "/api/v1/stores", cookie) == 200
    # A second sign-in (another browser) is a session of its own.
    elsewhere = admin_cookie((await _sign_in(h, "boss")).cookies["gb_admin"].value)
    h.client.session.cookie_jar.clear()

    value = cookie["Cookie"].partition("=")[2]
    response = await other.post(
        "/admin/logout",
        data={"csrf": sessions.csrf(value)},
        headers=cookie,
        allow_redirects=False,
    )
    assert response.status == 303

    clock.advance(timedelta(hours=1))  # well before the cookie's own 12 hours are up
    for client in (h.client, other):
        assert await _status(client, "/admin", cookie) == 303  # back to the sign-in page
        assert await _status(client, "/api/v1/stores", cookie) == 401
        assert await _status(client, "/admin", elsewhere) == 200


async def test_guide_sign_out_revokes_the_cookie_on_every_instance(h, clock, aiohttp_client):
    other = await _second_instance(h, clock, aiohttp_client)
    response = await h.client.get("/sidebar/login?userid=g1", allow_redirects=False)
    cookie = guide_cookie(response.cookies["gb_guide"].value)
    response = await h.client.get("/sidebar/login?userid=g1", allow_redirects=False)
    elsewhere = guide_cookie(response.cookies["gb_guide"].value)
    h.client.session.cookie_jar.clear()
    for client in (h.client, other):
        assert await _status(client, "/api/v1/customers", cookie) == 200
        assert await _status(client, "/sidebar/api/customers", cookie) == 200

    response = await h.client.get("/sidebar/logout", headers=cookie, allow_redirects=False)
    assert response.status == 302

    clock.advance(timedelta(hours=1))
    for client in (h.client, other):
        assert await _status(client, "/api/v1/customers", cookie) == 401
        assert await _status(client, "/sidebar/api/customers", cookie) == 401
        assert await _status(client, "/sidebar/api/customers", elsewhere) == 200


async def test_revocations_are_pruned_once_their_cookies_would_have_expired(h, clock):
    async def sign_in_and_out() -> None:
        response = await h.client.get("/sidebar/login?userid=g1", allow_redirects=False)
        cookie = guide_cookie(response.cookies["gb_guide"].value)
        h.client.session.cookie_jar.clear()
        response = await h.client.get("/sidebar/logout", headers=cookie, allow_redirects=False)
        assert response.status == 302

    async def revoked() -> int:
        async with h.sessions() as session:
            return len(list(await session.scalars(select(RevokedSession.key))))

    await sign_in_and_out()
    await sign_in_and_out()
    assert await revoked() == 2
    clock.advance(timedelta(hours=11))
    await sign_in_and_out()
    assert await revoked() == 3
    clock.advance(timedelta(hours=1, seconds=1))  # the first two cookies have expired
    await sign_in_and_out()
    assert await revoked() == 2
