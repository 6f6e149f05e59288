"""Temporary media: upload and download (media/upload, media/get)."""

from __future__ import annotations

from typing import Any

from ..errors import ApiError
from ..state import SimState
from .call import ApiCall, Binary, param_str

MEDIA_LIMITS = {"image": 10 << 20, "voice": 2 << 20, "video": 10 << 20, "file": 20 << 20}


def media_upload(state: SimState, call: ApiCall) -> dict[str, Any]:
    kind = call.query.get("type", "")
    if kind not in MEDIA_LIMITS:
        raise ApiError(40005, "type must be image, voice, video or file")
    upload = call.upload
    if upload is None or not upload.data:
        raise ApiError(44001, "multipart field 'media' is missing or empty")
    if len(upload.data) < 5:
        raise ApiError(40006, "a media file has at least 5 bytes")
    if len(upload.data) > MEDIA_LIMITS[kind]:
        raise ApiError(45001)
    if kind == "image" and not upload.data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        raise ApiError(40004, "an image must be JPG or PNG")
    media = state.add_media(kind, upload.filename, upload.content_type, upload.data)
    return {"type": kind, "media_id": media.media_id, "created_at": str(int(media.created_at))}


def media_get(state: SimState, call: ApiCall) -> dict[str, Any] | Binary:
    media = state.live_media(param_str(call.query, "media_id", missing=41006))
    return Binary(media.content_type, media.filename, media.data)
