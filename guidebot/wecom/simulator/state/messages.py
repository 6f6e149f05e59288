"""App messages to members, and the temporary media they attach."""

from __future__ import annotations

import json
import secrets
from typing import Any

from ..errors import ApiError
from ..records import HOUR, MEDIA_TTL, MINUTE, Media, RateLimit
from .core import StateCore

__all__ = ["MessagesState"]


class MessagesState(StateCore):
    """App messages and media."""

    # ---- media ---------------------------------------------------------------------------

    def add_media(self, kind: str, filename: str, content_type: str, data: bytes) -> Media:
        media = Media(
            "3" + secrets.token_urlsafe(40), kind, filename, content_type, data, self.now()
        )
        self.media[media.media_id] = media
        return media

    def live_media(self, media_id: str, kind: str | None = None) -> Media:
        """A temporary media id is valid for 3 days, and only for its own type."""
        if not media_id:
            raise ApiError(41006)
        media = self.media.get(media_id)
        if media is None or self.now() - media.created_at > MEDIA_TTL:
            raise ApiError(40007)
        if kind is not None and media.type != kind:
            raise ApiError(40007, f"media_id is a {media.type}, not a {kind}")
        return media

    # ---- app messages --------------------------------------------------------------------

    def deliver_app_message(
        self, userid: str, msgtype: str, content: dict[str, Any], duplicate_window: float | None
    ) -> str:
        """Hand one message to one member: "sent", "dropped" (rate) or "duplicate"."""
        now = self.now()
        if duplicate_window is not None:
            key = (userid, json.dumps([msgtype, content], sort_keys=True, ensure_ascii=False))
            last = self.duplicate_keys.get(key)
            if last is not None and now - last < duplicate_window:
                return "duplicate"
            self.duplicate_keys[key] = now
        # Per app and member: 30 a minute, 1000 an hour; WeCom drops the excess silently.
        inbox = self.member_sends.get(userid)
        if inbox is None:
            inbox = self.member_sends[userid] = RateLimit((MINUTE, HOUR), ban=False)
        config = self.config
        limits = (config.member_messages_per_minute, config.member_messages_per_hour)
        if not inbox.admit(now, limits):
            return "dropped"
        self.app_messages.append(
            {"userid": userid, "msgtype": msgtype, msgtype: content, "time": now}
        )
        return "sent"

    def new_msg_id(self) -> int:
        """A 64-bit MsgId, unique here and unlikely to repeat across simulator restarts."""
        while True:
            msg_id = secrets.randbits(62) | (1 << 62)
            if msg_id not in self._msg_ids:
                self._msg_ids.add(msg_id)
                return msg_id
