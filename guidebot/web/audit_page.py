"""/admin/audit: the audit trail for HQ (who changed what, when, from where), newest first."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from guidebot.web.api.privacy import AuditFilter, read_trail
from guidebot.web.keys import SETTINGS
from guidebot.web.pages import _hq_only, _signed_in, render

PER_PAGE = 50

# What each action is, in words (Chinese first); an action not listed shows its code.
ACTIONS = {
    "account.save": "保存账号 / Account saved",
    "content.create": "新增内容 / Content added",
    "content.update": "修改内容 / Content changed",
    "content.delete": "删除内容 / Content deleted",
    "content.import": "导入内容 / Content imported",
    "mass_send.create": "创建群发 / Mass send created",
    "contact_way.create": "创建联系我二维码 / Contact way created",
    "transfer.request": "客户转接 / Customers transferred",
    "group_join_way.create": "创建加入群聊二维码 / Group join code created",
    "group_join_way.delete": "删除加入群聊二维码 / Group join code deleted",
    "group_welcome.save": "设置门店入群欢迎语 / Store group welcome set",
    "group_welcome.delete": "删除门店入群欢迎语 / Store group welcome removed",
    "store.update": "修改门店设置 / Store settings changed",
    "order.post": "订单录入 / Order posted",
    "order.refund": "订单退款 / Order refunded",
    "playbooks.reload": "重新加载SOP / Playbooks reloaded",
    "playbook.save": "保存SOP / Playbook saved",
    "task.done": "任务标记完成 / Task marked done",
    "task.skip": "任务跳过 / Task skipped",
    "task.snooze": "任务推迟 / Task put off",
    "inbox.replay": "重放回调 / Callbacks replayed",
    "inbox.dismiss": "放弃失败回调 / Failed callbacks dismissed",
    "jobs.retry": "重试搁置行 / Parked rows retried",
    "privacy.erase": "删除客户个人信息 / Customer's data erased",
    "privacy.export": "导出客户个人信息 / Customer's data exported",
}
ROLES = {"hq": "总部 / HQ", "manager": "店长 / Manager", "cli": "命令行 / Command line"}


def _change(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, indent=1)


async def audit_page(request: web.Request) -> web.StreamResponse:
    _hq_only(await _signed_in(request))
    given = {k: v.strip() for k, v in request.query.items() if v.strip()}
    wanted_page = given.pop("page", "1")
    raw = {k: given[k] for k in ("from", "to", "actor", "action") if k in given}
    try:
        digits = wanted_page.isascii() and wanted_page.isdigit() and len(wanted_page) <= 6
        page = max(1, min(int(wanted_page), 100_000)) if digits else 1
        wanted = AuditFilter.model_validate({**raw, "page": page, "limit": PER_PAGE})
    except ValidationError:
        raise web.HTTPBadRequest(
            text="日期格式应为 YYYY-MM-DD / dates are YYYY-MM-DD (or an ISO 8601 instant)"
        ) from None
    entries, total = await read_trail(request.app, wanted)
    tz = request.app[SETTINGS].tz
    rows = [
        {
            "at": e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
            "actor": e.actor,
            "role": ROLES.get(e.role, e.role),
            "ip": e.ip or "—",
            "action": ACTIONS.get(e.action, e.action),
            "target": e.target or "—",
            "before": _change(e.before),
            "after": _change(e.after),
        }
        for e in entries
    ]
    return render(
        request,
        "audit.html",
        {
            "rows": rows,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PER_PAGE)),
            "filters": raw,
            "actions": ACTIONS,
        },
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin/audit", audit_page)
