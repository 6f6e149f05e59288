"""The async WeCom server-API client: one aiohttp session, shared tokens, honest retries.

This is WeCom's protocol and nothing of guidebot's: it imports nothing from guidebot outside
``guidebot.wecom`` but the clock it tells time and sleeps on (guidebot.clock, a stdlib-only
leaf). The credential store is passed in (guidebot.db.credentials implements it over the
database; :class:`~guidebot.wecom.credentials.MemoryCredentialStore` serves one process).

Layout: ``core`` holds the one ``_call`` every API goes through (transport, limits, retries,
token and tickets, kept by ``tokens``); each API area is a subclass of it that only shapes
requests and answers (``directory``, ``contacts``, ``tags``, ``contact_ways``, ``transfers``,
``messages``, ``groupmsg``, ``groups``, ``moments``, ``media``); :class:`WeComClient` is all
of them together.
``errors``, ``results`` and ``policy`` (which calls are unsafe, which go first) are shared by all.

Construction::

    client = WeComClient(session, corp_id=..., secret=..., agent_id=..., credentials=store)

The client uses the aiohttp session it is given and never closes it. An optional
``on_error(api, errcode)`` callback hears of every error a call ends with (WeCom's errcode, or -1
for transport failures), once per call, e.g. to count them in metrics; cooldown and deadline
fast-fails, which never reach WeCom, are not reported.

Errors
------
Every failure is a :class:`WeComError` with ``api`` (the path after ``/cgi-bin/``, e.g.
``"externalcontact/get"``), ``errcode`` and ``errmsg``. Judge by ``errcode`` only.

* WeCom answered with a non-zero errcode: ``WeComError(api, errcode, errmsg)`` as WeCom sent it
  (e.g. 41051 welcome already sent, 84061 no relation, 40001 wrong secret).
* Transport failure (timeout, connection error, HTTP 5xx, unreadable answer) that persisted
  through every retry, or a non-200/non-5xx HTTP status: :class:`WeComTransportError`, a subclass
  with ``errcode == -1`` and an ``errmsg`` saying what happened. Nothing was done, or for safe
  (read / idempotent) APIs it does not matter; the caller may try again later.
* A non-idempotent call whose request may have reached WeCom without an answer:
  :class:`WeComUncertain`, a subclass with ``errcode == -1``. WeCom may or may not have acted;
  the caller must not resend blindly (mark the row ``unknown`` and reconcile). It is *not* a
  subclass of WeComTransportError, so ``except WeComTransportError: retry_later()`` cannot
  double-send by accident.
* 45009 (frequency limit): the API is put in a cooldown (``cooldown``, default 60 s on the
  injected clock); until it ends every call to that API below URGENT fails fast with
  ``WeComError(api, 45009, "... (not sent)")`` without reaching WeCom (see Scheduling).
* A call not made by its ``deadline``: :class:`WeComDeadlineExceeded`, errcode -1, "(not sent)".

Scheduling (guidebot.wecom.scheduler)
-------------------------------------
Every call has a :class:`~guidebot.wecom.scheduler.Priority`: URGENT for send_welcome_msg and
gettoken, BACKGROUND for what nobody waits on (:data:`BACKGROUND_APIS`: profile fetches, tags,
reminders on message/send, reconciliation, directory sync, polling), NORMAL otherwise; the
methods a caller may need to rank differently take ``priority=``. A call may carry a
``deadline`` (an instant on the injected clock, or a tz-aware datetime): it is not made past it,
and a retry whose backoff would end past it is not tried.

* Pacing: one token bucket per API (WeCom's budget is per corp and per API, doc 90454), so no
  60 s window holds more than ``calls_per_minute`` calls to one API and a profile fetch never
  spends a welcome's budget. Waiters are served by priority, then earliest deadline, then
  arrival; one whose deadline passes while it waits leaves without taking a turn.
* In flight: at most ``max_in_flight`` calls (default: the session's connection pool, at most
  100), the last quarter of them kept for URGENT calls, so a welcome never queues behind slow
  reads; waiters are served in the same order.
* After a 45009 on an API, calls below URGENT to it fail fast for the cooldown (and those
  queued for it leave at once); URGENT calls still try it, one at a time, and the first one
  WeCom accepts ends the cooldown (a welcome's 20 s code would not outlive 60 s of waiting).
* 45033 (too many concurrent calls to one API) is retried with backoff by the call that met it.

Retry rules
-----------
Retries use jittered exponential backoff (0.5 s doubling, capped at 8 s, times a random factor in
[0.5, 1)), slept on the injected clock, at most ``max_retries`` times after the first attempt.

Safe APIs (reads and idempotent writes such as mark_tag, remark, update_contact_way) retry on
errcode -1 and 45033, timeouts, connection errors, unreadable answers and HTTP 5xx.

Unsafe APIs are the ones where WeCom acts and a repeat could act twice: ``send_welcome_msg``,
``add_msg_template``, ``message/send``, ``transfer_customer``, ``resigned/transfer_customer``,
plus the creating calls ``add_contact_way``, ``add_corp_tag``,
``groupchat/add_join_way``, ``group_welcome_template/add`` and ``add_moment_task``. They retry
only when WeCom certainly did not act:

* WeCom answered errcode -1 (busy) or 45033 (concurrency limit): it refused, so retry.
* The connection could not be established (``aiohttp.ClientConnectorError`` or a connect
  timeout): the request never left, so retry.
* 40014 / 42001 (token invalid or expired): WeCom refused, so refresh the token and retry once.

Anything after the request may have been sent (a read timeout, the server dropping the
connection, HTTP 5xx, an unreadable answer) raises :class:`WeComUncertain` at once, without a
retry. That includes a pooled keep-alive connection the server had already closed, which
aiohttp cannot tell apart from a drop after sending. ``send_app_message(..., at_least_once=True)``
opts a reminder out of this rule.

Access token and JS-SDK tickets
-------------------------------
They are cached in the credential store under ``access_token:{corp_id}:{agent_id}``,
``jsapi_ticket:{corp_id}:{agent_id}`` and ``agent_ticket:{corp_id}:{agent_id}``, so every
instance shares them. A stored credential's ``expires_at`` is the instant it stops being *used*:
WeCom's ``expires_in`` minus a 300 s margin (half the lifetime when that is shorter than 600 s).
One caller refreshes at a time: an asyncio.Lock inside the client, and the store's refresh lease
across clients and processes. A caller that loses the lease polls the store (50 ms, backing off
to 1 s) until the winner's value appears or the lease is free again, then tries again (and
gives up with WeComTransportError if a lease is not released within twice its length; the
holder renews it while its refresh goes on). On
40014/42001 the token is discarded compare-and-clear (``discard``), refreshed once and the call
retried once. A failed refresh (e.g. 40001 wrong secret, 40013 bad corp id) raises at once and
is remembered for 60 s (5 s for transport failures): callers in that window get the same error
without calling gettoken again, because WeCom blocks an IP that repeats a wrong secret.

The access token (and the secret) travel only in the query string; they are never put in a
body, an error message or a log line.
"""

from __future__ import annotations

from guidebot.wecom.client.contact_ways import ContactWaysApi
from guidebot.wecom.client.contacts import ContactsApi
from guidebot.wecom.client.core import DEFAULT_API_BASE
from guidebot.wecom.client.directory import DirectoryApi
from guidebot.wecom.client.errors import (
    WeComDeadlineExceeded,
    WeComError,
    WeComTransportError,
    WeComUncertain,
)
from guidebot.wecom.client.groupmsg import GroupMsgApi
from guidebot.wecom.client.groups import GroupsApi
from guidebot.wecom.client.media import MediaApi
from guidebot.wecom.client.messages import MessagesApi
from guidebot.wecom.client.moments import MomentJobResult, MomentsApi
from guidebot.wecom.client.policy import BACKGROUND_APIS, UNSAFE_APIS, URGENT_APIS, default_priority
from guidebot.wecom.client.results import (
    AppMessageResult,
    ContactWay,
    Media,
    MsgTemplateResult,
    Page,
)
from guidebot.wecom.client.tags import TagsApi
from guidebot.wecom.client.transfers import TransfersApi
from guidebot.wecom.scheduler import Priority

__all__ = [
    "BACKGROUND_APIS",
    "DEFAULT_API_BASE",
    "UNSAFE_APIS",
    "URGENT_APIS",
    "AppMessageResult",
    "ContactWay",
    "Media",
    "MomentJobResult",
    "MsgTemplateResult",
    "Page",
    "Priority",
    "WeComClient",
    "WeComDeadlineExceeded",
    "WeComError",
    "WeComTransportError",
    "WeComUncertain",
    "default_priority",
]


class WeComClient(
    DirectoryApi,
    ContactsApi,
    TagsApi,
    ContactWaysApi,
    TransfersApi,
    MessagesApi,
    GroupMsgApi,
    GroupsApi,
    MomentsApi,
    MediaApi,
):
    """Async client for WeCom's server API on one shared aiohttp session.

    See the module docstring for the error, retry, at-most-once and token rules.
    """
