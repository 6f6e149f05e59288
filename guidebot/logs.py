"""Log output: plain text or one JSON object per line, with secrets and personal data redacted.

``GUIDEBOT_LOG_FORMAT=json`` gives one object per line::

    {"time": "2026-11-22T09:20:54.123Z", "level": "INFO", "logger": "guidebot.intake.worker",
     "message": "...", "event_id": 42, "request_id": "9f1c..."}

``event_id`` (the inbox row being processed) and ``request_id`` (the callback request) appear when
set through :func:`log_context`; the inbox worker and the callback handler set them. Both formats
redact access_token / secret / corpsecret values, WelcomeCode values, mobile numbers and the
configured secrets wherever they appear, exception text included.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from guidebot.config import log_format_from_env

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
# The configured values that must never reach a log line.
SECRET_VARIABLES = (
    "GUIDEBOT_SECRET",
    "GUIDEBOT_TOKEN",
    "GUIDEBOT_AES_KEY",
    "GUIDEBOT_ADMIN_TOKEN",
    "GUIDEBOT_SECRET_KEY",
)
# A shorter configured value would redact ordinary words; WeCom's own values are all longer.
_MIN_SECRET_LENGTH = 6

_event_id: contextvars.ContextVar[object | None] = contextvars.ContextVar("event_id", default=None)
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Query strings and form values: access_token=..., corpsecret=..., secret=...
    (re.compile(r"\b(access_token|corpsecret|secret)=[^&\s\"'<>]+", re.I), rf"\1={REDACTED}"),
    # JSON: "access_token": "...", "welcome_code": "..."
    (
        re.compile(r"(\"(?:access_token|corpsecret|secret|welcome_code)\"\s*:\s*\")[^\"]*", re.I),
        rf"\1{REDACTED}",
    ),
    # WeCom's XML: <WelcomeCode><![CDATA[...]]></WelcomeCode> or <WelcomeCode>...</WelcomeCode>
    (
        re.compile(r"(<WelcomeCode>\s*(?:<!\[CDATA\[)?)[^\]<]*", re.I),
        rf"\1{REDACTED}",
    ),
    # welcome_code=..., WelcomeCode: ... in prose and reprs
    (
        re.compile(r"\b(welcome_?code['\"]?\s*[=:]\s*['\"]?)[^\s'\",&<>)}\]]+", re.I),
        rf"\1{REDACTED}",
    ),
    # Mainland mobile numbers: 11 digits starting with 1, not part of a longer number.
    (re.compile(r"(?<![0-9])1[0-9]{10}(?![0-9])"), "[mobile]"),
)


class log_context:  # lower case: callers use it like the function it used to be
    """Within the block (and tasks started in it), log records carry these ids.

    A class rather than a @contextmanager generator: it is entered once per callback, and this
    costs a third as much.
    """

    __slots__ = ("_event_id", "_request_id", "_tokens")

    def __init__(self, *, event_id: object | None = None, request_id: str | None = None) -> None:
        self._event_id = event_id
        self._request_id = request_id
        self._tokens: list[tuple[contextvars.ContextVar[Any], contextvars.Token[Any]]] = []

    def __enter__(self) -> None:
        if self._event_id is not None:
            self._tokens.append((_event_id, _event_id.set(self._event_id)))
        if self._request_id is not None:
            self._tokens.append((_request_id, _request_id.set(self._request_id)))

    def __exit__(self, *exc_info: object) -> None:
        for var, token in reversed(self._tokens):
            var.reset(token)
        self._tokens.clear()


def current_ids() -> dict[str, object]:
    ids: dict[str, object] = {}
    if (event_id := _event_id.get()) is not None:
        ids["event_id"] = event_id
    if (request_id := _request_id.get()) is not None:
        ids["request_id"] = request_id
    return ids


class Redactor:
    """Removes secrets and personal data from a string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted(
            {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True
        )
        self._secrets = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class TextFormatter(logging.Formatter):
    """The classic one-line format, redacted, with the context ids appended when set."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__(TEXT_FORMAT)
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = current_ids()
        if ids:
            line += " [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]"
        return self.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 UTC), level, logger, message, context ids."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        instant = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, object] = {
            "time": instant.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        entry.update(current_ids())
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_formatter(fmt: str, secrets: Iterable[str] = ()) -> logging.Formatter:
    redactor = Redactor(secrets)
    return JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor)


def setup_logging(environ: Mapping[str, str], level: int = logging.INFO) -> None:
    """Configure the root logger from GUIDEBOT_LOG_FORMAT; ConfigError on a bad value."""
    fmt = log_format_from_env(environ)
    root = logging.getLogger()
    if root.handlers:  # like logging.basicConfig: someone (a test runner) configured it already
        return
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(fmt, (environ.get(v, "") for v in SECRET_VARIABLES)))
    root.addHandler(handler)
    root.setLevel(level)
