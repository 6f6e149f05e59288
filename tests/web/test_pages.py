"""The admin pages over HTTP: sign-in (cookie flags, CSRF), each page for HQ, a manager's scope."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.metrics.conftest import at
from tests.web.conftest import PASSWORD, admin_cookie

PERIOD = {"from": "2026-03-09", "to": "2026-03-15"}


def _login_csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def _sign_in(
    h,
    username: str,
    password: str = PASSWORD,
    *,
    token: bool = True,
    via: str | None = None,
    client=None,
):
    """Sign in (at `client`, another instance, if given); `via` is the X-Forwarded-For a load
    balancer would add."""
    client = client or h.client
    headers = {"X-Forwarded-For": via} if via else {}
    client.session.cookie_jar.clear()
    page = await client.get("/admin/login", headers=headers)
    assert page.status == 200
    form = {"username": username, "password": password, "next": "/admin/customers"}
    if token:
        form["csrf"] = _login_csrf(await page.text())
    return await client.post("/admin/login", data=form, allow_redirects=False, headers=headers)


async def test_sign_in_sets_a_signed_httponly_samesite_cookie(h, sessions):
    await sessions.account("boss", "hq", [])
    response = await h.client.get("/admin", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/admin/login?next=/admin")

    response = await _sign_in(h, "boss", "wrong password")
    assert response.status == 401
    assert "用户名或密码错误" in await response.text()  # Chinese unless English is chosen
    response = await _sign_in(h, "nobody")
    assert response.status == 401

    response = await _sign_in(h, "boss")
    assert (response.status, response.headers["Location"]) == (303, "/admin/customers")
    [cookie] = [c for c in response.headers.getall("Set-Cookie") if c.startswith("gb_admin=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # GUIDEBOT_PUBLIC_URL is http here
    page = await h.client.get("/admin")
    assert page.status == 200
    assert "<h1>概览 · 全部门店" in await page.text()


async def test_login_and_logout_refuse_a_post_without_the_csrf_token(h, sessions):
    hq = await sessions.account("boss", "hq", [])
    response = await _sign_in(h, "boss", token=False)
    assert response.status == 403
    assert "gb_admin=" not in " ".join(response.headers.getall("Set-Cookie", []))

    h.client.session.cookie_jar.clear()
    response = await h.client.post(
        "/admin/logout", data={"csrf": "forged"}, headers=admin_cookie(hq), allow_redirects=False
    )
    assert response.status == 403
    response = await h.client.post(
        "/admin/logout",
        data={"csrf": sessions.csrf(hq)},
        headers=admin_cookie(hq),
        allow_redirects=False,
    )
    assert response.status == 303
    assert "gb_admin=" in response.headers["Set-Cookie"]


async def test_every_page_renders_for_hq(h, sessions):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc02")
    await h.settle()
    cookie = admin_cookie(await sessions.account("boss", "hq", []))
    for path in (
        "/admin",
        "/admin?store=12",
        "/admin/stores",
        "/admin/stores?store=11&metric=open_rate",
        "/admin/guides/g1",
        "/admin/customers",
        "/admin/customers?q=顾客02",
        "/admin/playbooks",
        "/admin/content",
    ):
        response = await h.client.get(path, params=PERIOD, headers=cookie)
        assert response.status == 200, (path, await response.text())
        html = await response.text()
        assert "https://" not in html.replace("https://brand.example", ""), path
    response = await h.client.get("/admin/customers", params={"q": "顾客02"}, headers=cookie)
    html = await response.text()
    assert "wmc02" in html and "wmc01" not in html
    # Both adds enrolled in week_sop, whose goal is an order within 7 days: still open.
    response = await h.client.get("/admin/playbooks", headers=cookie)
    goal = re.search(r'data-testid="goal-week_sop">(.*?)</p>', await response.text(), re.S)
    assert " ".join(goal[1].split()) == "目标：7 天内客户下单付款 · 已达成 0 · 进行中 2 · 未达成 0"
    response = await h.client.get("/admin/playbooks", params={"lang": "en"}, headers=cookie)
    goal = re.search(r'data-testid="goal-week_sop">(.*?)</p>', await response.text(), re.S)
    assert (
        " ".join(goal[1].split())
        == "Goal: Order paid within 7 days · met 0 · still open 2 · missed 0"
    )
    response = await h.client.get("/admin/static/chart.umd.js")
    assert response.status == 200 and b"Chart" in await response.read()


async def test_a_manager_sees_only_their_stores(h, sessions):
    h.set_time(at(9, 10))
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc02")
    await h.settle()
    cookie = admin_cookie(await sessions.account("m11", "manager", ["11"]))
    response = await h.client.get("/admin", params=PERIOD, headers=cookie)
    html = await response.text()
    assert "张江店" in html and "徐汇店" not in html
    response = await h.client.get("/admin/customers", headers=cookie)
    html = await response.text()
    assert "wmc01" in html and "wmc02" not in html
    response = await h.client.get("/admin/stores", params=PERIOD, headers=cookie)
    assert "徐汇店" not in await response.text()
    for path in ("/admin?store=12", "/admin/guides/g2", "/admin/playbooks", "/admin/content"):
        response = await h.client.get(path, headers=cookie)
        assert response.status == 404, path


async def test_cookies_are_secure_behind_https(aiohttp_client, migrated_sqlite_url, clock, sop_dir):
    from tests.metrics.conftest import make_harness
    from tests.web.conftest import Sessions

    h = await make_harness(
        aiohttp_client, migrated_sqlite_url, clock, sop_dir, public_url="https://guide.example"
    )
    await Sessions(h).account("boss", "hq", [])
    page = await h.client.get("/admin/login")
    assert "Secure" in page.headers["Set-Cookie"]
    response = await h.client.post(
        "/admin/login",
        data={"username": "boss", "password": PASSWORD, "csrf": _login_csrf(await page.text())},
        headers={"Cookie": f"gb_login={page.cookies['gb_login'].value}"},
        allow_redirects=False,
    )
    [cookie] = [c for c in response.headers.getall("Set-Cookie") if c.startswith("gb_admin=")]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


async def test_five_wrong_passwords_make_the_next_sign_in_wait(h, sessions, clock):
    await sessions.account("boss", "hq", [])
    for _ in range(5):
        assert (await _sign_in(h, "Boss", "guess")).status == 401  # names match case-blind

    # The sixth try is refused unread, even with the right password; a wait is named.
    refused = await _sign_in(h, "boss")
    assert refused.status == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60
    assert "登录失败次数过多，请 15 分钟后再试。" in await refused.text()
    assert not [c for c in refused.headers.getall("Set-Cookie", []) if c.startswith("gb_admin=")]

    clock.advance(timedelta(minutes=15, seconds=1))  # the failures age out
    assert (await _sign_in(h, "boss")).status == 303


async def test_every_instance_counts_the_same_failures(h, sessions, clock, aiohttp_client):
    from guidebot.app import create_app

    await sessions.account("boss", "hq", [])
    # A second instance on the same database, behind a round-robin balancer.
    other = await aiohttp_client(create_app(h.settings, clock=clock, run_workers=False))
    for n in range(5):
        guess = await _sign_in(h, "boss", "guess", client=other if n % 2 else None)
        assert guess.status == 401
    assert (await _sign_in(h, "boss", client=other)).status == 429
    assert (await _sign_in(h, "boss")).status == 429

    clock.advance(timedelta(minutes=15, seconds=1))
    assert (await _sign_in(h, "boss", client=other)).status == 303
    # The good sign-in cleared the name everywhere: four more wrong tries are only 401s.
    for n in range(4):
        assert (await _sign_in(h, "boss", "guess", client=other if n % 2 else None)).status == 401
    assert (await _sign_in(h, "boss")).status == 303


async def test_one_address_guessing_many_names_waits_too(h, sessions, clock):
    await sessions.account("clerk", "hq", [])
    for i in range(20):  # four tries at each of five names: no name reaches its limit
        assert (await _sign_in(h, f"name{i % 5}", "guess")).status == 401
    assert (await _sign_in(h, "clerk")).status == 429
    clock.advance(timedelta(minutes=16))
    assert (await _sign_in(h, "clerk")).status == 303


async def test_behind_a_trusted_balancer_each_client_address_counts_alone(
    aiohttp_client, migrated_sqlite_url, clock, sop_dir
):
    from tests.metrics.conftest import make_harness
    from tests.web.conftest import Sessions

    # The test client is the balancer: every request reaches the server from 127.0.0.1.
    h = await make_harness(
        aiohttp_client, migrated_sqlite_url, clock, sop_dir, trusted_proxies=("127.0.0.0/8",)
    )
    await Sessions(h).account("clerk", "hq", [])
    for i in range(20):  # one guesser, who also makes up a forwarded address each time
        guess = await _sign_in(h, f"name{i % 5}", "guess", via=f"192.0.2.{i}, 198.51.100.1")
        assert guess.status == 401
    assert (await _sign_in(h, "clerk", via="198.51.100.1")).status == 429
    # Another shop's office behind the same balancer signs in as usual.
    assert (await _sign_in(h, "clerk", via="198.51.100.2")).status == 303


async def test_a_good_sign_in_clears_the_account_s_failures(h, sessions):
    await sessions.account("boss", "hq", [])
    for _ in range(4):
        assert (await _sign_in(h, "boss", "guess")).status == 401
    assert (await _sign_in(h, "boss")).status == 303
    # The account starts again from none: four more wrong tries are still only 401s.
    for _ in range(4):
        assert (await _sign_in(h, "boss", "guess")).status == 401
    assert (await _sign_in(h, "boss")).status == 303


async def test_the_customer_page_filters_by_tag(h, sessions):
    h.set_time(at(9, 10))
    answer = await h.control("tags", {"group_name": "客户等级", "tags": ["VIP"]})
    [vip] = answer["tag_group"]["tag"]
    await h.add("g1", "wmc01")
    await h.add("g2", "wmc02")
    await h.settle()
    h.advance(timedelta(minutes=1))
    await h.act(
        "contact/edit", {"userid": "g2", "external_userid": "wmc02", "add_tag": [vip["id"]]}
    )
    cookie = admin_cookie(await sessions.account("boss", "hq", []))
    response = await h.client.get("/admin/customers", params={"tag": "VIP"}, headers=cookie)
    html = await response.text()
    assert response.status == 200
    assert "wmc02" in html and "wmc01" not in html
    assert '<span class="badge">VIP</span>' in html


async def test_the_funnels_say_wecom_counts_no_views_in_both_languages(h, sessions):
    """WeCom reports no reads of a chat message: where a funnel is shown (the dashboard, the
    content page, a playbook's step funnel), the page says what is counted instead."""
    cookie = admin_cookie(await sessions.account("boss", "hq", []))
    note = re.compile(r'data-testid="exposure-note">(.*?)</p>', re.S)
    for path in ("/admin", "/admin/content", "/admin/playbooks/week_sop"):
        # (?lang= is kept in a cookie: each request says which it wants.)
        response = await h.client.get(path, params={**PERIOD, "lang": "zh"}, headers=cookie)
        assert response.status == 200, path
        [zh] = note.findall(await response.text())
        assert "企业微信不提供聊天消息的阅读数" in zh and "get_groupmsg_send_result" in zh, path
        response = await h.client.get(path, params={**PERIOD, "lang": "en"}, headers=cookie)
        [en] = note.findall(await response.text())
        assert en.startswith("WeCom gives no view count for a chat message"), path
