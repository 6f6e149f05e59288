"""What `guidebot demo` prints: that it is preparing, then how to open it and sign in."""

from __future__ import annotations

from guidebot.config import Settings
from guidebot.demo.org import GUIDES, STORES


def preparing(history_days: int) -> str:
    """What the demo does before its banner (a month of history takes 15-20 s on two cores):
    said at once, so a first run does not look stuck."""
    if not history_days:
        return "正在准备演示企业…… / Preparing the demo's corp..."
    return (
        f"正在准备演示企业和 {history_days} 天的历史数据（约 20 秒）…… / "
        f"Preparing the demo's corp and {history_days} days of history (about 20 s)..."
    )


def print_banner(urls: dict, settings: Settings) -> None:
    token = urls["admin_token"]
    store = next(iter(STORES))
    print(
        "\n".join(
            [
                "",
                "guidebot demo is running (Ctrl-C to stop) / 演示已启动（Ctrl-C 停止）",
                f"  open / 打开:      {urls['open']}",
                f"  admin pages:     {urls['admin']}",
                *(
                    f"    sign in as {name} / {password}"
                    for name, password in urls["accounts"].items()
                ),
                f"  guide sidebar:   {urls['server']}/sidebar/login?userid={GUIDES[0][0]}"
                "   (as a guide, outside WeCom)",
                f"  API:             {urls['server']}/api/v1   (admin token {token})",
                f"  callback URL:    {urls['server']}/wecom/callback",
                f"  simulated WeCom: {urls['simulator']}   (control API under /_sim/)",
                f"  database:        {settings.database_url}",
                "",
                "try:",
                f"  curl -H 'Authorization: Bearer {token}' {urls['server']}/api/v1/stores",
                f"  curl -H 'Authorization: Bearer {token}' {urls['server']}/api/v1/customers",
                f"  curl {urls['simulator']}/_sim/calls?api=externalcontact/get",
                f"  guidebot sop simulate first_contact --store {store}"
                "   (another shell, same folder: finds this database)",
                "",
            ]
        ),
        flush=True,
    )
