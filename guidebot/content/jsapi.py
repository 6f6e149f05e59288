"""WeCom JS-SDK signatures for the sidebar (reference §5).

    signature = sha1("jsapi_ticket=%s&noncestr=%s&timestamp=%s&url=%s")

in that fixed order, without URL-encoding anything, over the page URL without its `#fragment`.
The corp ticket signs `wx.config` / `getConfigSignature`; the app ticket signs
`wx.agentConfig` / `getAgentConfigSignature` (getCurExternalContact and sendChatMessage need the
app identity). Both tickets come from the WeCom client, which caches them in the database.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from guidebot.wecom.client import WeComClient


class BadPageUrl(ValueError):
    pass


def signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    raw = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def page_url(url: str, allowed_hosts: set[str]) -> str:
    """The URL to sign: the page's own, without the fragment, on one of our hosts."""
    url = url.split("#", 1)[0]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadPageUrl("url must be the page's absolute http(s) URL")
    if parts.netloc.lower() not in {h.lower() for h in allowed_hosts}:
        raise BadPageUrl("url is not a page of this server")
    return url


@dataclass(frozen=True, slots=True)
class Signed:
    timestamp: int
    nonceStr: str
    signature: str

    def as_json(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "nonceStr": self.nonceStr, "signature": self.signature}


def sign(ticket: str, url: str, timestamp: int, noncestr: str | None = None) -> Signed:
    noncestr = noncestr or secrets.token_urlsafe(12)
    return Signed(timestamp, noncestr, signature(ticket, noncestr, timestamp, url))


async def config_for(wecom: WeComClient, url: str, timestamp: int) -> dict[str, Any]:
    """Both signatures the page registers with, for one URL."""
    corp_ticket = await wecom.get_jsapi_ticket()
    agent_ticket = await wecom.get_agent_ticket()
    return {
        "corpId": wecom.corp_id,
        "agentId": wecom.agent_id,
        "url": url,
        "config": sign(corp_ticket, url, timestamp).as_json(),
        "agentConfig": sign(agent_ticket, url, timestamp).as_json(),
    }
