"""What content's domain functions raise; the faces turn each into an answer (400, 404, ...).

`reason` is English (the API's JSON); `translated(lang)` is the page's language, with the
field named by its word (标题, not `title`); `field` says which form field to mark.
"""

from __future__ import annotations

from guidebot import i18n

N_ = i18n.N_

# A field as a page names it.
FIELD_WORDS = {
    "key": N_("Key"),
    "kind": N_("Kind"),
    "title": N_("Title"),
    "summary": N_("Summary"),
    "cover_url": N_("Cover URL"),
    "body": N_("Text"),
    "url": N_("Link"),
    "tags": N_("Tags"),
    "stores": N_("Stores"),
    "valid_from": N_("Valid from"),
    "valid_to": N_("Valid until"),
    "media": N_("Media file"),
    "media.filename": N_("Media file"),
    "media.content_type": N_("Media file"),
    "miniprogram.appid": N_("Mini-program AppID"),
    "miniprogram.page": N_("Mini-program page"),
}


class ContentError(Exception):
    def __init__(self, reason: str, field: str | None = None, **values: object) -> None:
        self.msgid, self.values = reason, values
        self.reason = reason % values if values else reason
        self.field = field
        super().__init__(self.reason)

    def translated(self, lang: str) -> str:
        values = dict(self.values)
        name = values.get("name")
        if isinstance(name, str) and name in FIELD_WORDS:
            values["name"] = i18n.gettext(FIELD_WORDS[name], lang)
        if lang != i18n.EN and isinstance(values.get("kind"), str):
            values["kind"] = i18n.label("content_kind", values["kind"], lang)  # 图片
        return i18n.gettext(self.msgid, lang, **values)


class NotFound(ContentError):
    pass


class Invalid(ContentError):
    pass


__all__ = ["FIELD_WORDS", "ContentError", "Invalid", "NotFound"]
