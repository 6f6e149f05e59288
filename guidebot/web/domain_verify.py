"""WeCom's domain-verification files at the web root: `GET /WW_verify_<code>.txt`.

Setting an app's 可信域名 (the sidebar's domain, needed by the JS-SDK and OAuth) asks the admin
to put a file WeCom names, `WW_verify_<code>.txt`, at that domain's root, and WeCom fetches it
to verify the domain. GUIDEBOT_WECOM_VERIFY_DIR names a folder holding such files; guidebot
serves each one as it is, and nothing else from that folder. Without the setting, or for a
name that is not such a file, the answer is 404.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from guidebot.web.keys import SETTINGS

# WeCom's file names: WW_verify_ and a short code of letters and digits.
NAME = r"WW_verify_[A-Za-z0-9]{1,64}\.txt"
# The files hold a short code; anything larger is not one of them.
MAX_BYTES = 4096


def _read(path: Path) -> bytes | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


async def verify_file(request: web.Request) -> web.Response:
    folder = request.app[SETTINGS].wecom_verify_dir
    if not folder:
        raise web.HTTPNotFound()
    data = await asyncio.to_thread(_read, Path(folder) / request.match_info["name"])
    if data is None:
        raise web.HTTPNotFound()
    return web.Response(body=data, content_type="text/plain", headers={"Cache-Control": "no-cache"})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/{name:" + NAME + "}", verify_file)
