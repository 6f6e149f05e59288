"""Structured logs: JSON shape, context ids, redaction of secrets and personal data."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp.test_utils import make_mocked_request

from guidebot.config import ConfigError, Settings, log_format_from_env
from guidebot.logs import JsonFormatter, Redactor, TextFormatter, log_context, make_formatter
from guidebot.web.callback import _request_id
from tests.support import TEST_IDENTITY, make_settings

SECRETS = (TEST_IDENTITY.secret, TEST_IDENTITY.aes_key, "admin-token-for-tests", "k" * 40)


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("guidebot.test", logging.WARNING, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("GET /cgi-bin/user/get?access_token=TOKEN123abc&userid=alice", "TOKEN123abc"),
        ("gettoken?corpid=ww1&corpsecret=S3cr3tValue", "S3cr3tValue"),
        ("url https://x/cgi-bin/foo?secret=abcdef123 failed", "abcdef123"),
        ('{"access_token": "tok-987", "expires_in": 7200}', "tok-987"),
        ("<WelcomeCode><![CDATA[WC-callback-code]]></WelcomeCode>", "WC-callback-code"),
        ("<WelcomeCode>WC-bare-code</WelcomeCode>", "WC-bare-code"),
        ('{"welcome_code": "WC-json-code", "text": {}}', "WC-json-code"),
        ("send_welcome_msg welcome_code=WC-kw-code failed", "WC-kw-code"),
        ("customer mobile 13812345678 saved", "13812345678"),
        ("remark_mobiles=['15900001111']", "15900001111"),
        (f"the secret is {TEST_IDENTITY.secret}!", TEST_IDENTITY.secret),
        (f"aes {TEST_IDENTITY.aes_key}", TEST_IDENTITY.aes_key),
        ("Bearer admin-token-for-tests", "admin-token-for-tests"),
        ("key=" + "k" * 40, "k" * 40),
    ],
)
def test_redaction_removes_secrets_and_personal_data(text, leaked):
    redacted = Redactor(SECRETS)(text)
    assert leaked not in redacted
    assert "[redacted]" in redacted or "[mobile]" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "CreateTime 1700000000 and msgid 1234567890123456789",  # not mobile numbers
        "userid=alice external_userid=wmABC",
        "event 42 (change_external_contact) failed: errcode 84061",
    ],
)
def test_redaction_leaves_ordinary_text_alone(text):
    assert Redactor(SECRETS)(text) == text


def test_short_configured_values_are_not_redacted_everywhere():
    # A 6-letter callback token is redacted; a 2-letter one would eat ordinary words.
    assert Redactor(["ab"])("about abc") == "about abc"
    assert Redactor([TEST_IDENTITY.token])(f"token {TEST_IDENTITY.token}") == "token [redacted]"


def test_json_lines_have_the_documented_shape():
    line = JsonFormatter(Redactor(SECRETS)).format(record("sent to %s", "13900001234"))
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["level"] == "WARNING" and entry["logger"] == "guidebot.test"
    assert entry["message"] == "sent to [mobile]"
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"


def test_json_carries_the_event_and_request_ids_from_the_context():
    formatter = JsonFormatter()
    with log_context(event_id=42):
        with log_context(request_id="req-1"):
            inner = json.loads(formatter.format(record("inner")))
        outer = json.loads(formatter.format(record("outer")))
    after = json.loads(formatter.format(record("after")))
    assert inner["event_id"] == 42 and inner["request_id"] == "req-1"
    assert outer["event_id"] == 42 and "request_id" not in outer
    assert "event_id" not in after and "request_id" not in after


async def test_context_ids_do_not_leak_between_tasks():
    formatter = JsonFormatter()
    seen: dict[int, dict] = {}

    async def work(event_id: int) -> None:
        with log_context(event_id=event_id):
            await asyncio.sleep(0)
            seen[event_id] = json.loads(formatter.format(record("working")))

    await asyncio.gather(work(1), work(2))
    assert seen[1]["event_id"] == 1 and seen[2]["event_id"] == 2


def test_exceptions_are_redacted_too():
    try:
        raise RuntimeError("GET ?access_token=leaky-token failed")
    except RuntimeError as exc:
        line = JsonFormatter().format(record("boom", exc=exc))
    entry = json.loads(line)
    assert "leaky-token" not in line and "RuntimeError" in entry["exception"]


def test_text_format_is_redacted_and_names_the_ids():
    formatter = TextFormatter(Redactor(SECRETS))
    with log_context(event_id=7):
        line = formatter.format(record("corpsecret=%s", TEST_IDENTITY.secret))
    assert TEST_IDENTITY.secret not in line
    assert line.endswith("[event_id=7]") and "WARNING guidebot.test: corpsecret=[redacted]" in line


def test_make_formatter_picks_the_format():
    assert isinstance(make_formatter("json"), JsonFormatter)
    assert isinstance(make_formatter("text"), TextFormatter)


def test_log_format_setting():
    assert log_format_from_env({}) == "text"
    assert log_format_from_env({"GUIDEBOT_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ConfigError, match="GUIDEBOT_LOG_FORMAT"):
        log_format_from_env({"GUIDEBOT_LOG_FORMAT": "xml"})
    settings = make_settings("sqlite+aiosqlite:///x.db", log_format="json")
    assert Settings.from_env(settings.as_env()) == settings
    with pytest.raises(ConfigError, match="GUIDEBOT_LOG_FORMAT"):
        Settings.from_env({**settings.as_env(), "GUIDEBOT_LOG_FORMAT": "yaml"})


def test_a_callbacks_request_id_is_the_balancers_or_a_fresh_one_each():
    given = make_mocked_request("POST", "/wecom/callback", headers={"X-Request-Id": "lb-42"})
    assert _request_id(given) == "lb-42"
    fresh = {_request_id(make_mocked_request("POST", "/wecom/callback")) for _ in range(100)}
    assert len(fresh) == 100
    assert all(len(id_) == 16 and int(id_, 16) >= 0 for id_ in fresh)
