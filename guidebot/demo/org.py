"""The demo's corp: its regions, stores and guides, and the simulator control that seeds them."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

import aiohttp

from guidebot.config import WeComIdentity

# Department 1 is the corp itself; regions under it; stores (leaves) under the regions.
REGIONS = {2: "华东大区", 3: "华南大区"}
STORES = {
    10: ("上海南京西路店", 2),
    11: ("杭州湖滨店", 2),
    12: ("广州天河店", 3),
    13: ("深圳万象城店", 3),
}
GUIDES = [
    ("g01", "王芳", 10),
    ("g02", "李娜", 10),
    ("g03", "张伟", 10),
    ("g04", "刘洋", 11),
    ("g05", "陈静", 11),
    ("g06", "杨磊", 11),
    ("g07", "赵敏", 12),
    ("g08", "黄丽", 12),
    ("g09", "周杰", 12),
    ("g10", "吴婷", 13),
    ("g11", "徐涛", 13),
    ("g12", "孙悦", 13),
]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林罗高"
GIVEN = ("小明", "晓燕", "子涵", "梓萱", "浩然", "欣怡", "宇轩", "诗涵", "俊杰", "雨桐")
CHANNELS = ("store_qr", "poster", "livestream")
MONTH = 35  # days of history: a month, and first orders old enough for repurchase_30d


def demo_identity() -> WeComIdentity:
    """A fresh corp for each demo: random callback token and EncodingAESKey."""
    aes_key = base64.b64encode(secrets.token_bytes(32)).decode()[:43]
    return WeComIdentity(
        corp_id="wwdemo0000000001",
        agent_id=1000002,
        secret=secrets.token_urlsafe(24),
        token=secrets.token_hex(8),
        aes_key=aes_key,
    )


@dataclass
class DemoControl:
    """Drives the simulator's control API (the customers' and guides' side)."""

    http: aiohttp.ClientSession
    sim_url: str

    async def post(self, path: str, body: dict) -> dict:
        async with self.http.post(f"{self.sim_url}/_sim/{path}", json=body) as response:
            answer = await response.json()
            if response.status >= 400:
                raise RuntimeError(f"simulator {path}: {answer}")
            return answer


async def seed_org(control: DemoControl) -> None:
    for region_id, name in REGIONS.items():
        await control.post("departments", {"id": region_id, "name": name, "parentid": 1})
    for store_id, (name, region_id) in STORES.items():
        await control.post("departments", {"id": store_id, "name": name, "parentid": region_id})
    for userid, name, store_id in GUIDES:
        await control.post("users", {"userid": userid, "name": name, "department": [store_id]})
