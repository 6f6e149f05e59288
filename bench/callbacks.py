"""Acknowledged callbacks per second and ack latency, against a bare aiohttp handler.

    python -m bench.callbacks [--quick] [--database-url URL] [--event unhandled|deleted]

The servers run as separate processes on this machine and get the same load from one generator:
distinct encrypted callbacks over 200 keep-alive connections. guidebot verifies, decrypts,
parses, commits each one to its inbox (SQLite by default: WAL, synchronous=FULL; an emptied
PostgreSQL database with --database-url, the durable server then on a scratch database beside
it) and only then answers. Between the two, a third server (bench.durable_server) is the bare
handler plus only the durable acknowledgement: guidebot's inbox writer commits each body before
the 200. They take turns for three rounds (guidebot's worker finishing each round's events
before the next), and the best round of each counts: the machine is shared, and a neighbour's
burst only ever slows a round down. A last run paces guidebot at 1,000 callbacks/s to read its
latency at that rate. Each burst also prints the server's CPU time per request (all its
threads; Linux), which minds the machine's noise less than the rate does. The last line is
`ratio=` guidebot's best rate over the bare handler's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.databases import fetch_row, fresh_postgres, is_postgres, sibling_database
from bench.loadgen import LoadResult, build_post, run_load
from guidebot.db.migrate import upgrade_sync
from guidebot.wecom.crypto import CallbackCrypto

ROUNDS = 3  # the machine is shared and noisy: the best round of each is the fairer figure

IDENTITY = {
    "GUIDEBOT_CORP_ID": "wwbenchcorp0001",
    "GUIDEBOT_AGENT_ID": "1000002",
    "GUIDEBOT_SECRET": "bench-secret",
    "GUIDEBOT_TOKEN": "benchtoken",
    "GUIDEBOT_AES_KEY": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    "GUIDEBOT_ADMIN_TOKEN": "bench-admin-token-0001",
    "GUIDEBOT_SECRET_KEY": "b" * 40,
}


# Below Linux's ephemeral range (32768-60999), where bind(0) and outgoing connections take
# their ports, and below the tests' own servers (tests/ports.py, 20000-32000).
PORTS_FROM, PORTS_TO = 10_000, 20_000


def free_ports(count: int) -> list[int]:
    """`count` distinct ports, free now, for servers this benchmark starts in a moment.

    Drawn at random below the ephemeral range: a port from bind(0), once let go, may go to the
    next bind(0) or outgoing connection anywhere on the machine before our server binds it, and
    the tests' workers start servers on bind(0) all the time (with three workers, bench.welcome's
    first request to its simulator was once reset, most likely by another test's server on that
    port). Two draws in one call never give one port twice."""
    chosen: list[int] = []
    for _ in range(100 * count):
        if len(chosen) == count:
            break
        port = random.randrange(PORTS_FROM, PORTS_TO)
        if port not in chosen and bindable(port):
            chosen.append(port)
    if len(chosen) < count:
        raise RuntimeError(f"no {count} free ports in {PORTS_FROM}-{PORTS_TO}")
    return chosen


def bindable(port: int) -> bool:
    """Nothing on this machine holds `port` on 127.0.0.1 now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_healthy(
    port: int, process: subprocess.Popen, timeout: float = 30, path: str = "/healthz"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not become healthy")


# What each callback says; neither needs a WeCom call behind it (a group change would: its
# handler reads groupchat/get first, and the worker's figure would be that call's).
EVENTS = {
    # A customer agreeing to message archiving: stored and acknowledged, handled by no
    # domain. The worker's own cost per event: claim, parse, route, mark done, commit.
    "unhandled": (
        "<ChangeType><![CDATA[msg_audit_approved]]></ChangeType>"
        "<UserID><![CDATA[gbench{g:02d}]]></UserID>"
        "<ExternalUserID><![CDATA[wmbench{i:08d}]]></ExternalUserID>"
    ),
    # A customer deleting their guide: contacts records the first-seen pair as ended with its
    # log line, and the domains that hear it do their part (about 9 statements; the count is
    # held to FIRST_SEEN_END_STATEMENTS in tests/sop_engine/test_add_statements.py).
    "deleted": (
        "<ChangeType><![CDATA[del_follow_user]]></ChangeType>"
        "<UserID><![CDATA[gbench{g:02d}]]></UserID>"
        "<ExternalUserID><![CDATA[wmbench{i:08d}]]></ExternalUserID>"
    ),
}


def callbacks(port: int, count: int, offset: int, kind: str = "unhandled") -> list[bytes]:
    crypto = CallbackCrypto(
        IDENTITY["GUIDEBOT_TOKEN"], IDENTITY["GUIDEBOT_AES_KEY"], IDENTITY["GUIDEBOT_CORP_ID"]
    )
    requests = []
    for i in range(offset, offset + count):
        plaintext = (
            f"<xml><ToUserName><![CDATA[{crypto.receive_id}]]></ToUserName>"
            "<FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1700000000</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[change_external_contact]]></Event>"
            + EVENTS[kind].format(g=i % 50, i=i)
            + "</xml>"
        )
        message = crypto.encrypt(plaintext, timestamp="1700000000", nonce=str(i))
        body = (
            f"<xml><ToUserName><![CDATA[{crypto.receive_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{message.encrypt}]]></Encrypt>"
            "<AgentID><![CDATA[1000002]]></AgentID></xml>"
        ).encode()
        path = f"/wecom/callback?msg_signature={message.signature}&timestamp=1700000000&nonce={i}"
        requests.append(build_post("127.0.0.1", port, path, body))
    return requests


def inbox_counts(database_url: str) -> tuple[int, int]:
    """(events still waiting for the worker, all stored events)."""
    return fetch_row(
        database_url,
        "SELECT count(*) FILTER (WHERE status IN ('pending', 'processing')), count(*) "
        "FROM inbox_events",
    )


def wait_processed(database_url: str, timeout: float = 600) -> tuple[float, int]:
    """(seconds until the worker has no inbox event left to process, events waiting when
    asked): with the callbacks over, those it works through alone."""
    started = time.monotonic()
    waiting_at_start = None
    while time.monotonic() - started < timeout:
        waiting, _ = inbox_counts(database_url)
        if waiting_at_start is None:
            waiting_at_start = waiting
        if not waiting:
            return time.monotonic() - started, waiting_at_start
        time.sleep(0.05)
    raise SystemExit(f"the worker did not process the inbox within {timeout:.0f} s")


def _stat(process: Path) -> tuple[str, list[str]] | None:
    """A process's name and the fields after it in /proc/PID/stat (Linux); None once gone."""
    try:
        stat = (process / "stat").read_text()
    except OSError:
        return None
    return stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process and all its threads (Linux), else None."""
    found = _stat(Path(f"/proc/{pid}"))
    if found is None:
        return None
    fields = found[1]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """The processes `pid` started and still has (Linux), e.g. a `serve --processes` parent's."""
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def postgres_cpu_seconds() -> float | None:
    """User plus system CPU time of this machine's PostgreSQL, every process of it (Linux), or
    None when none runs here. A backend that exits hands its time to the postmaster's
    children's count, which is summed too, so what connections came and went is kept."""
    total, found = 0, False
    for entry in Path("/proc").iterdir():
        stat = _stat(entry) if entry.name.isdigit() else None  # None too once gone meanwhile
        if stat is None:
            continue
        name, fields = stat
        if name == "postgres" or name.startswith("postgres:"):
            found = True
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK") if found else None


@contextlib.contextmanager
def databases(database_url: str | None, tmp: str):
    """(guidebot's database, the durable server's): two SQLite files, or the given PostgreSQL
    database emptied and a scratch one beside it."""
    if database_url is None:
        yield f"sqlite+aiosqlite:///{tmp}/bench.db", f"sqlite+aiosqlite:///{tmp}/durable.db"
        return
    if not is_postgres(database_url):
        raise SystemExit("--database-url takes a PostgreSQL URL (SQLite is the default)")
    asyncio.run(fresh_postgres(database_url))
    upgrade_sync(database_url)  # `guidebot serve` migrates only SQLite by itself
    with sibling_database(database_url, "durable") as durable_url:
        yield database_url, durable_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument(
        "--event",
        choices=sorted(EVENTS),
        default="unhandled",
        help="what the callbacks say (default: an event no domain handles)",
    )
    parser.add_argument(
        "--database-url",
        help="an expendable PostgreSQL database for guidebot (emptied first); default SQLite",
    )
    args = parser.parse_args()
    count = 3_000 if args.quick else 20_000
    paced = 2_000 if args.quick else 10_000
    concurrency = 200

    with (
        tempfile.TemporaryDirectory() as tmp,
        databases(args.database_url, tmp) as (database_url, durable_url),
    ):
        bare_port, bot_port, wecom_port, durable_port = free_ports(4)
        env = {
            **os.environ,
            **IDENTITY,
            "GUIDEBOT_DATABASE_URL": database_url,
            "GUIDEBOT_WECOM_API_BASE": f"http://127.0.0.1:{wecom_port}",
        }
        # The simulator stands in for WeCom, as in production: the token and the address book
        # come from it once at start-up; the benchmark's events need no WeCom call.
        wecom = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "guidebot.cli",
                "simulator",
                "--port",
                str(wecom_port),
                "--callback-url",
                f"http://127.0.0.1:{bot_port}/wecom/callback",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        wait_healthy(wecom_port, wecom, path="/cgi-bin/gettoken")
        bare = subprocess.Popen([sys.executable, "-m", "bench.bare_server", str(bare_port)])
        durable = subprocess.Popen(
            [sys.executable, "-m", "bench.durable_server", str(durable_port), durable_url]
        )
        bot = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "guidebot.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(bot_port),
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_healthy(bare_port, bare)
            wait_healthy(durable_port, durable)
            wait_healthy(bot_port, bot)
            print(
                f"{ROUNDS} rounds of {count} distinct encrypted callbacks, {concurrency} "
                "concurrent senders; bare, durable and guidebot take turns, and guidebot's worker "
                "finishes each round's events before the next"
            )

            def burst(port: int, server: subprocess.Popen, offset: int, label: str) -> LoadResult:
                requests = callbacks(port, count, offset, args.event)
                before = cpu_seconds(server.pid)
                result = asyncio.run(run_load("127.0.0.1", port, requests, concurrency=concurrency))
                after = cpu_seconds(server.pid)
                cpu = ""
                if before is not None and after is not None:
                    cpu = f", server CPU {(after - before) / count * 1e6:.0f} us"
                print(result.summary(label) + cpu)
                return result

            bare_rounds, durable_rounds, bot_rounds = [], [], []
            worker_rates: list[float] = []
            for round_ in range(ROUNDS):
                bare_rounds.append(burst(bare_port, bare, round_ * count, "bare aiohttp handler"))
                durable_rounds.append(
                    burst(durable_port, durable, round_ * count, "bare + durable ack  ")
                )
                bot_rounds.append(burst(bot_port, bot, round_ * count, "guidebot intake     "))
                drained, left = wait_processed(database_url)
                worked = bot_rounds[-1].seconds + drained
                alone = f"{left / drained:,.0f}/s" if left and drained else "-"
                print(
                    f"  its worker had processed them {drained:.1f} s later: "
                    f"{count / worked:,.0f} events/s from the first callback; "
                    f"the {left} left after the burst at {alone} (the worker alone)"
                )
                worker_rates.append(left / drained if left and drained else 0.0)
            baseline = max(bare_rounds, key=lambda result: result.rate)
            committed = max(durable_rounds, key=lambda result: result.rate)
            intake = max(bot_rounds, key=lambda result: result.rate)
            print(
                f"best of {ROUNDS}: bare {baseline.rate:,.0f}/s, bare + durable ack "
                f"{committed.rate:,.0f}/s ({committed.rate / baseline.rate:.2f} of bare), "
                f"guidebot {intake.rate:,.0f}/s; its worker alone {max(worker_rates):,.0f} events/s"
            )
            steady = asyncio.run(
                run_load(
                    "127.0.0.1",
                    bot_port,
                    callbacks(bot_port, paced, ROUNDS * count, args.event),
                    concurrency=concurrency,
                    rate=1_000,
                )
            )
            print(steady.summary("guidebot at 1,000/s "))
            _, stored = inbox_counts(database_url)
            acked = sum(r.statuses.get(200, 0) for r in bot_rounds) + steady.statuses.get(200, 0)
            print(f"acknowledged {acked}, stored in the inbox {stored}")
            if stored < acked:
                raise SystemExit("an acknowledged callback is missing from the inbox")
        finally:
            for process in (bare, durable, bot, wecom):
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    print(f"ratio={intake.rate / baseline.rate:.3f}")


if __name__ == "__main__":
    main()
