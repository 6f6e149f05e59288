"""SimulatorConfig: who the fake WeCom is, where it delivers callbacks, and its limits."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from guidebot.config import WeComIdentity


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Every time-dependent rule reads `clock`, so tests move time by faking it."""

    identity: WeComIdentity
    callback_url: str | None = None
    clock: Callable[[], float] = time.time
    token_ttl: int = 7200
    welcome_code_ttl: float = 20.0
    # doc 90454 访问频率限制: each API per corp, and app messages per member.
    api_limit_per_minute: int = 10_000
    api_limit_per_hour: int = 150_000
    member_messages_per_minute: int = 30
    member_messages_per_hour: int = 1000
    callback_timeout: float = 5.0
    callback_tries: int = 3
    # Not a WeCom rule: bounds the call log so a long benchmark does not grow without limit.
    call_log_limit: int = 100_000
    # Not a WeCom number either (doc 95094 only says the job is asynchronous): how long a
    # Moments creation job runs before get_moment_task_result reports it finished.
    moment_job_seconds: float = 5.0
    # The app as the admin console set it up. customer_contact: it is among 客户联系 → API →
    # 可调用接口的应用 (else every externalcontact/* API answers 48002; doc 92109 客户联系
    # 概述, 90313 全局错误码). trusted_ips: its 企业可信IP (None: unrestricted, as for apps
    # made before 2022-06-20; else calls from other addresses answer 60020, gettoken aside).
    # trusted_domain: its verified 可信域名, agent/get's redirect_domain (doc 90227).
    customer_contact: bool = True
    trusted_ips: tuple[str, ...] | None = None
    trusted_domain: str = ""

    def __post_init__(self) -> None:
        if self.callback_url is not None:
            parts = urlsplit(self.callback_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"callback_url must be an http(s) URL, got {self.callback_url!r}")
        for name in (
            "token_ttl",
            "api_limit_per_minute",
            "api_limit_per_hour",
            "member_messages_per_minute",
            "member_messages_per_hour",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("callback_tries", "call_log_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self._check_app()
        for name in ("welcome_code_ttl", "callback_timeout", "moment_job_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    def _check_app(self) -> None:
        if not isinstance(self.customer_contact, bool):
            raise ValueError(
                f"customer_contact must be true or false, got {self.customer_contact!r}"
            )
        if self.trusted_ips is not None:
            if not isinstance(self.trusted_ips, tuple | list):
                raise ValueError("trusted_ips must be a list of IP addresses or null")
            for ip in self.trusted_ips:
                try:
                    ipaddress.ip_address(ip)
                except (TypeError, ValueError):
                    raise ValueError(f"trusted_ips: {ip!r} is not an IP address") from None
            object.__setattr__(self, "trusted_ips", tuple(self.trusted_ips))
        if not isinstance(self.trusted_domain, str):
            raise ValueError("trusted_domain must be a domain name (or empty)")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, callback_url: str | None = None
    ) -> SimulatorConfig:
        """The same GUIDEBOT_* identity the server reads, so both ends agree on the crypto."""
        return cls(identity=WeComIdentity.from_env(environ), callback_url=callback_url)
