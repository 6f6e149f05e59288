"""One frozen Settings object, read once from GUIDEBOT_* environment variables.

A bad or missing value raises ConfigError naming the variable; the CLI prints that one line and
exits, so a misconfigured server never half-starts.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///guidebot.db"
# `guidebot demo`'s own file (in the current directory), which the offline tools fall back on
# when GUIDEBOT_DATABASE_URL is not set and guidebot.db does not exist.
DEMO_DATABASE_URL = "sqlite+aiosqlite:///guidebot-demo.db"
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
DEFAULT_PUBLIC_URL = "http://localhost:8080"
DEFAULT_ATTRIBUTION_DAYS = 7
DEFAULT_CLAIM_LEASE_SECONDS = 120
MAX_CLAIM_LEASE_SECONDS = 86_400
DEFAULT_BODY_TIMEOUT_SECONDS = 30
MAX_BODY_TIMEOUT_SECONDS = 600
DEFAULT_DORMANT_DAYS = 60
_AES_KEY = re.compile(r"[A-Za-z0-9+/]{43}")
_DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
# What .env.example holds where a real value belongs: refused, so a half-filled copy never
# starts (a WeCom secret left as the placeholder would otherwise fail only at the first call).
PLACEHOLDER = "change-me"


# How long each kind of record is kept (guidebot.privacy.retention; README "Data and privacy").
# Days; 0 keeps it forever. The floors keep what the figures still need.
RETENTION_DEFAULTS = {
    "INBOX_DAYS": 30,  # a processed callback's plaintext; then only its dedupe key and kind
    "TASKS_DAYS": 400,  # settled SOP tasks
    "BOT_REPLIES_DAYS": 400,  # the bot's answered messages
    "OPENS_DAYS": 400,  # each open of a tracked link (the unique-visitor rows stay)
    "FORWARDS_DAYS": 400,  # repeat forwards (each item's first to a customer stays)
    "ALERTS_DAYS": 400,  # lost-customer alerts (a name and a last message each), once sent
    "AUDIT_DAYS": 3650,  # the audit trail, erasure records included
}
RETENTION_FLOORS = {"OPENS_DAYS": 91, "FORWARDS_DAYS": 91, "AUDIT_DAYS": 365}
DEFAULT_RETENTION_BATCH = 500
MAX_RETENTION_DAYS = 36_500


class ConfigError(ValueError):
    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class WeComIdentity:
    """What both guidebot and the simulated WeCom must agree on to talk to each other."""

    corp_id: str
    agent_id: int
    secret: str
    token: str
    aes_key: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WeComIdentity:
        env = os.environ if environ is None else environ
        return cls(
            corp_id=_required(env, "GUIDEBOT_CORP_ID"),
            agent_id=_agent_id(_required(env, "GUIDEBOT_AGENT_ID")),
            secret=_required(env, "GUIDEBOT_SECRET"),
            token=_callback_token(_required(env, "GUIDEBOT_TOKEN")),
            aes_key=_aes_key(_required(env, "GUIDEBOT_AES_KEY")),
        )


@dataclass(frozen=True, slots=True)
class Retention:
    """GUIDEBOT_RETENTION_*: days each kind of record is kept (0: forever), rows per batch."""

    inbox_days: int = RETENTION_DEFAULTS["INBOX_DAYS"]
    tasks_days: int = RETENTION_DEFAULTS["TASKS_DAYS"]
    bot_replies_days: int = RETENTION_DEFAULTS["BOT_REPLIES_DAYS"]
    opens_days: int = RETENTION_DEFAULTS["OPENS_DAYS"]
    forwards_days: int = RETENTION_DEFAULTS["FORWARDS_DAYS"]
    alerts_days: int = RETENTION_DEFAULTS["ALERTS_DAYS"]
    audit_days: int = RETENTION_DEFAULTS["AUDIT_DAYS"]
    batch: int = DEFAULT_RETENTION_BATCH

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Retention:
        values: dict[str, int] = {}
        for key, default in RETENTION_DEFAULTS.items():
            name = f"GUIDEBOT_RETENTION_{key}"
            raw = env.get(name, "").strip() or str(default)
            floor = RETENTION_FLOORS.get(key, 1)
            if not (raw.isascii() and raw.isdigit()) or not (
                int(raw) == 0 or floor <= int(raw) <= MAX_RETENTION_DAYS
            ):
                raise ConfigError(
                    name,
                    f"must be 0 (keep forever) or {floor}-{MAX_RETENTION_DAYS} days, got {raw!r}",
                )
            values[key.lower()] = int(raw)
        raw = env.get("GUIDEBOT_RETENTION_BATCH", "").strip() or str(DEFAULT_RETENTION_BATCH)
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 10_000:
            raise ConfigError("GUIDEBOT_RETENTION_BATCH", f"must be 1-10000 rows, got {raw!r}")
        return cls(**values, batch=int(raw))

    def as_env(self) -> dict[str, str]:
        env = {f"GUIDEBOT_RETENTION_{k}": str(getattr(self, k.lower())) for k in RETENTION_DEFAULTS}
        return env | {"GUIDEBOT_RETENTION_BATCH": str(self.batch)}


@dataclass(frozen=True, slots=True)
class Settings:
    corp_id: str
    agent_id: int
    secret: str
    token: str
    aes_key: str
    admin_token: str
    secret_key: str
    database_url: str = DEFAULT_DATABASE_URL
    wecom_api_base: str = DEFAULT_API_BASE
    public_url: str = DEFAULT_PUBLIC_URL
    timezone: str = "Asia/Shanghai"
    sop_dir: str = "sop"
    # Orders count for the guide whose content reached the customer last within this many days.
    attribution_days: int = DEFAULT_ATTRIBUTION_DAYS
    # Userids who get the weekly store report (WeCom's simulator exposes no department leaders).
    store_managers: tuple[str, ...] = ()
    # Log lines as plain text or one JSON object per line (guidebot.logs).
    log_format: str = "text"
    # How long an instance holds claimed inbox events and SOP tasks before another instance
    # may take them back (what a killed instance held comes back after this).
    claim_lease_seconds: int = DEFAULT_CLAIM_LEASE_SECONDS
    # Load balancers and reverse proxies (addresses or networks) whose X-Forwarded-For is
    # believed: behind one, every request's peer is the proxy, not the person signing in.
    trusted_proxies: tuple[str, ...] = ()
    # How long a request's body may take to arrive (guidebot.web.limits): a 408 after that.
    body_timeout_seconds: int = DEFAULT_BODY_TIMEOUT_SECONDS
    # A customer with no open, reply or order for this many days is dormant (lifecycle stages).
    dormant_days: int = DEFAULT_DORMANT_DAYS
    # A folder of WeCom's domain-verification files (WW_verify_*.txt, downloaded where the
    # app's 可信域名 is set): guidebot serves each at its web root (guidebot.web.domain_verify).
    wecom_verify_dir: str = ""
    # What is kept how long (GUIDEBOT_RETENTION_*; guidebot.privacy.retention).
    retention: Retention = Retention()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def wecom(self) -> WeComIdentity:
        return WeComIdentity(self.corp_id, self.agent_id, self.secret, self.token, self.aes_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        wecom = WeComIdentity.from_env(env)

        def required(name: str) -> str:
            return _required(env, name)

        def optional(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        return cls(
            corp_id=wecom.corp_id,
            agent_id=wecom.agent_id,
            secret=wecom.secret,
            token=wecom.token,
            aes_key=wecom.aes_key,
            admin_token=_long_secret("GUIDEBOT_ADMIN_TOKEN", required("GUIDEBOT_ADMIN_TOKEN"), 16),
            secret_key=_long_secret("GUIDEBOT_SECRET_KEY", required("GUIDEBOT_SECRET_KEY"), 32),
            database_url=database_url_from_env(env),
            wecom_api_base=_http_url(
                "GUIDEBOT_WECOM_API_BASE", optional("GUIDEBOT_WECOM_API_BASE", DEFAULT_API_BASE)
            ),
            public_url=_http_url(
                "GUIDEBOT_PUBLIC_URL", optional("GUIDEBOT_PUBLIC_URL", DEFAULT_PUBLIC_URL)
            ),
            timezone=_timezone(optional("GUIDEBOT_TIMEZONE", "Asia/Shanghai")),
            sop_dir=optional("GUIDEBOT_SOP_DIR", "sop"),
            attribution_days=_attribution_days(
                optional("GUIDEBOT_ATTRIBUTION_DAYS", str(DEFAULT_ATTRIBUTION_DAYS))
            ),
            store_managers=_userids(
                "GUIDEBOT_STORE_MANAGERS", env.get("GUIDEBOT_STORE_MANAGERS", "")
            ),
            log_format=log_format_from_env(env),
            claim_lease_seconds=_claim_lease_seconds(
                optional("GUIDEBOT_CLAIM_LEASE_SECONDS", str(DEFAULT_CLAIM_LEASE_SECONDS))
            ),
            trusted_proxies=_networks(
                "GUIDEBOT_TRUSTED_PROXIES", env.get("GUIDEBOT_TRUSTED_PROXIES", "")
            ),
            body_timeout_seconds=_seconds(
                "GUIDEBOT_BODY_TIMEOUT_SECONDS",
                optional("GUIDEBOT_BODY_TIMEOUT_SECONDS", str(DEFAULT_BODY_TIMEOUT_SECONDS)),
                MAX_BODY_TIMEOUT_SECONDS,
            ),
            dormant_days=_dormant_days(
                optional("GUIDEBOT_DORMANT_DAYS", str(DEFAULT_DORMANT_DAYS))
            ),
            wecom_verify_dir=env.get("GUIDEBOT_WECOM_VERIFY_DIR", "").strip(),
            retention=Retention.from_env(env),
        )

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings (for child processes and the demo)."""
        return {
            "GUIDEBOT_CORP_ID": self.corp_id,
            "GUIDEBOT_AGENT_ID": str(self.agent_id),
            "GUIDEBOT_SECRET": self.secret,
            "GUIDEBOT_TOKEN": self.token,
            "GUIDEBOT_AES_KEY": self.aes_key,
            "GUIDEBOT_ADMIN_TOKEN": self.admin_token,
            "GUIDEBOT_SECRET_KEY": self.secret_key,
            "GUIDEBOT_DATABASE_URL": self.database_url,
            "GUIDEBOT_WECOM_API_BASE": self.wecom_api_base,
            "GUIDEBOT_PUBLIC_URL": self.public_url,
            "GUIDEBOT_TIMEZONE": self.timezone,
            "GUIDEBOT_SOP_DIR": self.sop_dir,
            "GUIDEBOT_ATTRIBUTION_DAYS": str(self.attribution_days),
            "GUIDEBOT_STORE_MANAGERS": ",".join(self.store_managers),
            "GUIDEBOT_LOG_FORMAT": self.log_format,
            "GUIDEBOT_CLAIM_LEASE_SECONDS": str(self.claim_lease_seconds),
            "GUIDEBOT_TRUSTED_PROXIES": ",".join(self.trusted_proxies),
            "GUIDEBOT_BODY_TIMEOUT_SECONDS": str(self.body_timeout_seconds),
            "GUIDEBOT_DORMANT_DAYS": str(self.dormant_days),
            "GUIDEBOT_WECOM_VERIFY_DIR": self.wecom_verify_dir,
            **self.retention.as_env(),
        }


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return _database_url(env.get("GUIDEBOT_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL)


def demo_database(
    explicit: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """`guidebot demo`'s database, and a note when a GUIDEBOT_DATABASE_URL left in the
    environment is set aside: the demo fills its database with a made-up corp, so it writes
    only where --database-url says, else into its own guidebot-demo.db."""
    if explicit:
        return explicit, None
    env = os.environ if environ is None else environ
    left = env.get("GUIDEBOT_DATABASE_URL", "").strip()
    if not left or left == DEMO_DATABASE_URL:
        return DEMO_DATABASE_URL, None
    parts = urlsplit(left)
    shown = left
    if parts.password is not None:  # never echo a password
        shown = left.replace(f":{parts.password}@", ":***@", 1)
    return DEMO_DATABASE_URL, (
        f"演示不使用 GUIDEBOT_DATABASE_URL（{shown}），而使用自己的数据库 guidebot-demo.db；"
        "要用别的数据库请加 --database-url。\n"
        f"The demo leaves GUIDEBOT_DATABASE_URL ({shown}) alone and uses its own database, "
        "guidebot-demo.db; pass --database-url to choose another."
    )


def log_format_from_env(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    value = env.get("GUIDEBOT_LOG_FORMAT", "").strip().lower() or "text"
    if value not in ("text", "json"):
        raise ConfigError("GUIDEBOT_LOG_FORMAT", f"must be text or json, got {value!r}")
    return value


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(name, "is not set")
    if value.lower() == PLACEHOLDER:
        raise ConfigError(name, f"is still the placeholder {PLACEHOLDER!r} from .env.example")
    return value


def _agent_id(value: str) -> int:
    if not value.isdigit():
        raise ConfigError("GUIDEBOT_AGENT_ID", f"must be a positive integer, got {value!r}")
    return int(value)


def _callback_token(value: str) -> str:
    # WeCom generates callback tokens of letters and digits, at most 32 characters.
    if not re.fullmatch(r"[A-Za-z0-9]{1,32}", value):
        raise ConfigError("GUIDEBOT_TOKEN", "must be 1-32 letters or digits, as WeCom issues it")
    return value


def _aes_key(value: str) -> str:
    if not _AES_KEY.fullmatch(value):
        raise ConfigError(
            "GUIDEBOT_AES_KEY",
            f"EncodingAESKey must be 43 base64 characters (got {len(value)} characters"
            + (")" if len(value) != 43 else " with characters outside A-Z a-z 0-9 + /)"),
        )
    return value


def _long_secret(name: str, value: str, minimum: int) -> str:
    if len(value) < minimum:
        raise ConfigError(name, f"must be at least {minimum} characters")
    return value


def _database_url(value: str) -> str:
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in _DATABASE_SCHEMES:
        raise ConfigError(
            "GUIDEBOT_DATABASE_URL",
            f"must start with one of {', '.join(s + '://' for s in _DATABASE_SCHEMES)}",
        )
    if urlsplit(value).password == PLACEHOLDER:
        raise ConfigError(
            "GUIDEBOT_DATABASE_URL",
            f"its password is still the placeholder {PLACEHOLDER!r} from .env.example",
        )
    return value


def _http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(name, f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _networks(name: str, value: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks, normalised ("10.0.0.7" is 10.0.0.7/32)."""
    networks = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(name, f"{part!r} is not an IP address or network") from None
    return tuple(networks)


def _dormant_days(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 3650:
        raise ConfigError(
            "GUIDEBOT_DORMANT_DAYS", f"must be a whole number of days 1-3650, got {value!r}"
        )
    return int(value)


def _attribution_days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 90:
        raise ConfigError(
            "GUIDEBOT_ATTRIBUTION_DAYS", f"must be a whole number of days 1-90, got {value!r}"
        )
    return int(value)


def _claim_lease_seconds(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_CLAIM_LEASE_SECONDS:
        raise ConfigError(
            "GUIDEBOT_CLAIM_LEASE_SECONDS",
            f"must be a whole number of seconds 1-{MAX_CLAIM_LEASE_SECONDS}, got {value!r}",
        )
    return int(value)


def _seconds(name: str, value: str, maximum: int) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= maximum:
        raise ConfigError(name, f"must be a whole number of seconds 1-{maximum}, got {value!r}")
    return int(value)


def _userids(name: str, value: str) -> tuple[str, ...]:
    userids = tuple(u.strip() for u in value.split(",") if u.strip())
    if any(not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", u) for u in userids):
        raise ConfigError(name, "must be WeCom userids separated by commas")
    return userids


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("GUIDEBOT_TIMEZONE", f"unknown IANA time zone {value!r}") from None
    return value
