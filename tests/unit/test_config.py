"""Settings from the environment: one clear line naming the variable for every bad value."""

from __future__ import annotations

import pytest

from guidebot.config import ConfigError, Settings

GOOD = {
    "GUIDEBOT_CORP_ID": "ww1234567890",
    "GUIDEBOT_AGENT_ID": "1000002",
    "GUIDEBOT_SECRET": "app-secret",
    "GUIDEBOT_TOKEN": "QDG6eK",
    "GUIDEBOT_AES_KEY": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    "GUIDEBOT_ADMIN_TOKEN": "a" * 20,
    "GUIDEBOT_SECRET_KEY": "s" * 40,
}


def test_defaults_from_design():
    settings = Settings.from_env(GOOD)
    assert settings.database_url == "sqlite+aiosqlite:///guidebot.db"
    assert settings.wecom_api_base == "https://qyapi.weixin.qq.com"
    assert settings.timezone == "Asia/Shanghai"
    assert settings.sop_dir == "sop"
    assert settings.agent_id == 1000002


def test_settings_are_frozen():
    settings = Settings.from_env(GOOD)
    with pytest.raises(AttributeError):
        settings.corp_id = "other"  # type: ignore[misc]


def test_as_env_round_trips():
    settings = Settings.from_env(GOOD)
    assert Settings.from_env(settings.as_env()) == settings
    behind = Settings.from_env({**GOOD, "GUIDEBOT_TRUSTED_PROXIES": "10.0.0.7, 172.16.0.0/12"})
    assert Settings.from_env(behind.as_env()) == behind


def test_trusted_proxies_are_normalised_networks():
    assert Settings.from_env(GOOD).trusted_proxies == ()
    given = {**GOOD, "GUIDEBOT_TRUSTED_PROXIES": " 10.0.0.7 ,172.16.5.0/12,, fd00::/8 "}
    assert Settings.from_env(given).trusted_proxies == ("10.0.0.7/32", "172.16.0.0/12", "fd00::/8")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GUIDEBOT_CORP_ID", "", "GUIDEBOT_CORP_ID: is not set"),
        ("GUIDEBOT_AGENT_ID", "abc", "GUIDEBOT_AGENT_ID: must be a positive integer"),
        ("GUIDEBOT_AES_KEY", "tooshort", "GUIDEBOT_AES_KEY: EncodingAESKey must be 43 base64"),
        ("GUIDEBOT_AES_KEY", "!" * 43, "characters outside"),
        ("GUIDEBOT_TOKEN", "has space", "GUIDEBOT_TOKEN: must be 1-32 letters or digits"),
        ("GUIDEBOT_WECOM_API_BASE", "ftp://x", "GUIDEBOT_WECOM_API_BASE: must be an http(s) URL"),
        ("GUIDEBOT_PUBLIC_URL", "not a url", "GUIDEBOT_PUBLIC_URL: must be an http(s) URL"),
        ("GUIDEBOT_TIMEZONE", "Mars/Olympus", "GUIDEBOT_TIMEZONE: unknown IANA time zone"),
        ("GUIDEBOT_DATABASE_URL", "mysql://x", "GUIDEBOT_DATABASE_URL: must start with"),
        ("GUIDEBOT_ADMIN_TOKEN", "short", "GUIDEBOT_ADMIN_TOKEN: must be at least 16"),
        ("GUIDEBOT_SECRET_KEY", "short", "GUIDEBOT_SECRET_KEY: must be at least 32"),
        ("GUIDEBOT_CLAIM_LEASE_SECONDS", "0", "GUIDEBOT_CLAIM_LEASE_SECONDS: must be a whole"),
        ("GUIDEBOT_CLAIM_LEASE_SECONDS", "-5", "GUIDEBOT_CLAIM_LEASE_SECONDS: must be a whole"),
        ("GUIDEBOT_CLAIM_LEASE_SECONDS", "2.5", "GUIDEBOT_CLAIM_LEASE_SECONDS: must be a whole"),
        ("GUIDEBOT_CLAIM_LEASE_SECONDS", "1m", "GUIDEBOT_CLAIM_LEASE_SECONDS: must be a whole"),
        ("GUIDEBOT_CLAIM_LEASE_SECONDS", "²", "GUIDEBOT_CLAIM_LEASE_SECONDS: must be a whole"),
        ("GUIDEBOT_CLAIM_LEASE_SECONDS", "86401", "seconds 1-86400, got '86401'"),
        ("GUIDEBOT_TRUSTED_PROXIES", "10.0.0.1,lb", "GUIDEBOT_TRUSTED_PROXIES: 'lb' is not an IP"),
        # .env.example's placeholders, even where the value would otherwise pass.
        ("GUIDEBOT_CORP_ID", "change-me", "GUIDEBOT_CORP_ID: is still the placeholder"),
        ("GUIDEBOT_SECRET", "Change-Me", "GUIDEBOT_SECRET: is still the placeholder"),
        (
            "GUIDEBOT_DATABASE_URL",
            "postgresql+asyncpg://guidebot:change-me@postgres:5432/guidebot",
            "GUIDEBOT_DATABASE_URL: its password is still the placeholder",
        ),
    ],
)
def test_bad_value_names_the_variable(variable, value, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**GOOD, variable: value})
    assert caught.value.variable == variable
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_claim_lease_sets_the_inbox_worker_and_sop_engine_leases():
    from datetime import timedelta
    from types import SimpleNamespace

    from guidebot.app import make_worker
    from guidebot.sop.context import SopRuntime
    from guidebot.sop.queue import CLAIM_LEASE

    default = Settings.from_env(GOOD)
    assert default.claim_lease_seconds == 120
    assert timedelta(seconds=default.claim_lease_seconds) == CLAIM_LEASE
    short = Settings.from_env({**GOOD, "GUIDEBOT_CLAIM_LEASE_SECONDS": " 3 "})
    assert short.claim_lease_seconds == 3
    assert Settings.from_env(short.as_env()) == short
    for settings, lease in ((default, timedelta(minutes=2)), (short, timedelta(seconds=3))):
        wecom = SimpleNamespace(get_access_token=None)
        built = SimpleNamespace(
            sessions=None, wecom=wecom, clock=None, settings=settings, telemetry=None
        )
        worker = make_worker(built)  # type: ignore[arg-type]
        assert worker.policy.lease == lease
        runtime = SopRuntime(None, wecom, None, settings, registry=object())  # type: ignore[arg-type]
        assert runtime.claim_lease == lease
