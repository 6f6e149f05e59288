"""Temporary media (media/upload): images and files messages attach."""

from __future__ import annotations

from typing import Literal

from guidebot.wecom.client.core import ClientCore, Multipart
from guidebot.wecom.client.results import Media

__all__ = ["MediaApi"]


class MediaApi(ClientCore):
    """The media calls of a WeCom client."""

    async def upload_media(
        self,
        kind: Literal["image", "voice", "video", "file"],
        filename: str,
        data: bytes,
        content_type: str = "application/octet-stream",
    ) -> Media:
        """``media/upload`` (multipart): a temporary media_id, valid 3 days."""
        if kind not in ("image", "voice", "video", "file"):
            raise ValueError(f"unknown media kind {kind!r}")
        answer = await self._call(
            "POST",
            "media/upload",
            params={"type": kind},
            multipart=Multipart("media", filename, bytes(data), content_type),
        )
        return Media(
            type=str(answer.get("type", kind)),
            media_id=str(answer.get("media_id", "")),
            created_at=int(answer.get("created_at", 0) or 0),
        )
