"""The guide's chat sidebar: sign-in (signin), the page and the JS-SDK (page), what the page
reads (data) and what it changes (writes)."""

from __future__ import annotations

from aiohttp import web

from guidebot.web.keys import OAUTH_LIMIT
from guidebot.web.sidebar import data, group_chat, page, signin, writes
from guidebot.web.throttle import AttemptLimit


def setup_routes(app: web.Application) -> None:
    app[signin.SIDEBAR] = signin.SidebarState()
    app[OAUTH_LIMIT] = AttemptLimit({"oauth": signin.OAUTH_PER_ADDRESS})
    app.router.add_get("/sidebar", page.page)
    app.router.add_get("/sidebar/login", signin.dev_login)
    app.router.add_get("/sidebar/oauth", signin.oauth_return)
    app.router.add_get("/sidebar/logout", signin.logout)
    app.router.add_get("/sidebar/static/{name}", page.static)
    app.router.add_get("/sidebar/jsapi-config", page.jsapi_config)
    app.router.add_post("/sidebar/dev/jsapi-verify", page.dev_verify)
    app.router.add_get("/sidebar/api/customers", data.my_customers)
    app.router.add_get("/sidebar/api/customer", data.customer_profile)
    app.router.add_get("/sidebar/api/content", data.content_list)
    app.router.add_post("/sidebar/api/prepare", writes.prepare)
    app.router.add_post("/sidebar/api/forwards", writes.record_forward)
    app.router.add_post("/sidebar/api/replied", writes.mark_replied)
    app.router.add_post("/sidebar/api/tasks/{change}", writes.change_task)
    # Opened from a customer group's toolbar (group_chat_tools).
    app.router.add_get("/sidebar/api/group", group_chat.group_view)
    app.router.add_get("/sidebar/api/groups", group_chat.my_groups)
    app.router.add_post("/sidebar/api/group/prepare", group_chat.prepare)
    app.router.add_post("/sidebar/api/group/forwards", group_chat.record_forward)
