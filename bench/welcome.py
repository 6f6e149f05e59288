"""Every welcome inside its 20 seconds: the add path end to end, at WeCom's own ceiling.

    python -m bench.welcome [--quick] [--database-url URL] [--instances N] [--processes N]

For each rate (10, 25 and 50 adds/s for 20 s, then 166/s for 60 s: WeCom's 10,000
send_welcome_msg calls a minute; --quick: 10 and 50/s for 5 s) a fresh pair of processes, the
simulated WeCom (`guidebot simulator`) and `guidebot serve` on a fresh database (SQLite by
default; the given PostgreSQL database emptied and migrated with --database-url), is seeded
with one store of 50 guides through the simulator's control API; guidebot learns them by its
start-up directory sync. After a short warm-up, customers add guides through the simulator
(`POST /_sim/contact/add` with a WelcomeCode) on a fixed timetable over many keep-alive
connections: an offer that goes out more than 0.1 s behind its slot is counted late. The
simulator delivers each `add_external_contact` to guidebot as WeCom does, and records when it
handed out each WelcomeCode and when send_welcome_msg reached it; the time between the two is
what is measured. A code lives 20 s, so a welcome is either inside it or lost. Per rate: adds,
the share welcomed within 20 s, p50, p99 and max of those welcomed, WeCom's error answers by
code (every API, until guidebot's inbox is drained after the last add), and the server's CPU
time per add (all its threads, until that drain). The simulator keeps WeCom's limits (10,000
calls a minute per API; a call over it is 45009 and bans the API for the minute) except the
per-guide app-message caps, which the add path does not meet.

--instances N (PostgreSQL only) runs N `guidebot serve` on one database behind a round-robin
front (a load balancer in miniature) and counts send_welcome_msg calls per WelcomeCode: a code
called twice is a welcome sent twice, or tried twice, and is reported. --processes N runs each
server as `guidebot serve --processes N` (N processes on one port, no front); its CPU is theirs.

The last line is `welcomed_in_20s=<share at the highest rate> p99=<its p99 in seconds>`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.callbacks import (
    IDENTITY,
    children_of,
    cpu_seconds,
    free_ports,
    inbox_counts,
    postgres_cpu_seconds,
    wait_healthy,
)
from bench.databases import fetch_row, fresh_postgres, is_postgres, on_this_machine
from bench.loadgen import LoadResult, build_post, run_load
from guidebot.db.migrate import upgrade_sync

REPO = Path(__file__).resolve().parents[1]
GUIDES = 50
STORE = 11
WELCOME_TTL = 20.0  # WeCom's: a WelcomeCode works once, within 20 s of the add event
LATE = 0.1  # an offer this far behind its slot is late
RATES = ((10, 20.0), (25, 20.0), (50, 20.0), (166, 60.0))
QUICK_RATES = ((10, 5.0), (50, 5.0))
SMOKE_RATES = ((5, 2.0),)
WARMUP = 10  # adds before the clock starts: a server that has just started is still cold
DRAIN_TIMEOUT = 600.0
PROFILE_DIR = os.environ.get("BENCH_PROFILE_DIR")  # set: py-spy records the server (not timed)


@dataclass(frozen=True, slots=True)
class RateResult:
    rate: float
    adds: int
    late: int
    max_late: float
    welcomed: list[float]  # seconds from each code's issue to its send_welcome_msg
    issued: list[tuple[float, float]]  # (seconds after the first code, latency) of each code
    errors: Counter[int]
    errors_by_api: dict[int, Counter[str]]
    duplicates: int  # WelcomeCodes that send_welcome_msg was called with more than once
    cpu_per_add: float | None  # seconds, all server processes
    sim_cpu_per_add: float | None
    db_cpu_per_add: float | None  # seconds, this machine's PostgreSQL (None on SQLite)
    add_answered: LoadResult  # the add's round trip: the callback delivered and acknowledged
    drained: float | None  # seconds after the last add until guidebot's inbox was empty
    own_count: tuple[float, float] | None  # guidebot's /metrics: welcomes accepted, within 20 s
    load: float

    @property
    def share(self) -> float:
        return len(self.welcomed) / self.adds if self.adds else 0.0

    def percentile(self, p: float) -> float | None:
        if not self.welcomed:
            return None
        ordered = sorted(self.welcomed)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# ---- the simulator's control API -------------------------------------------------------------


def sim_call(port: int, path: str, body: dict | None = None) -> dict:
    """GET, or POST a JSON body to, the simulator's control API."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_sim/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def control_posts(port: int, path: str, bodies: list[dict]) -> list[bytes]:
    return [
        build_post(
            "127.0.0.1", port, f"/_sim/{path}", json.dumps(body).encode(), "application/json"
        )
        for body in bodies
    ]


def guide(i: int) -> str:
    return f"g{i % GUIDES:02d}"


def seed(port: int, customers: list[str]) -> None:
    """One store of GUIDES guides, and the customers who will add them."""
    sim_call(port, "departments", {"id": STORE, "name": "张江店", "parentid": 1})
    for i in range(GUIDES):
        sim_call(port, "users", {"userid": guide(i), "name": f"导购{i:02d}", "department": [STORE]})
    bodies = [{"external_userid": c, "name": f"客户{c[-4:]}"} for c in customers]
    result = asyncio.run(
        run_load("127.0.0.1", port, control_posts(port, "customers", bodies), concurrency=20)
    )
    if result.statuses != {200: len(bodies)}:
        raise SystemExit(f"seeding the simulator's customers failed: {result.statuses}")


def offer(port: int, customers: list[str], rate: float, connections: int) -> LoadResult:
    bodies = [
        {"userid": guide(i), "external_userid": c, "welcome_code": True}
        for i, c in enumerate(customers)
    ]
    return asyncio.run(
        run_load(
            "127.0.0.1",
            port,
            control_posts(port, "contact/add", bodies),
            concurrency=min(len(bodies), connections),
            rate=rate,
            connect_first=True,
        )
    )


def welcomes_of(port: int, customers: set[str]) -> dict[str, dict]:
    return {
        w["external_userid"]: w
        for w in sim_call(port, "welcomes")["welcomes"]
        if w["external_userid"] in customers
    }


def last_call(port: int) -> int:
    calls = sim_call(port, "calls")["calls"]
    return calls[-1]["seq"] if calls else 0


# ---- processes -------------------------------------------------------------------------------


def wait_for(done, timeout: float, processes: list[subprocess.Popen], every: float = 0.25) -> bool:
    """Whether done() came to hold within `timeout`; every process must stay alive meanwhile."""
    deadline = time.monotonic() + timeout
    while not done():
        for process in processes:
            if process.poll() is not None:
                name = " ".join(map(str, process.args[2:4]))
                raise SystemExit(f"{name} exited with {process.returncode}")
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def must(what: str, done, timeout: float, processes: list[subprocess.Popen]) -> None:
    if not wait_for(done, timeout, processes):
        raise SystemExit(f"{what}: not within {timeout:.0f} s")


class Rig:
    """The simulator, an optional round-robin front, and `instances` guidebot servers."""

    def __init__(self, database_url: str, instances: int, logs: Path, processes: int = 1) -> None:
        self.database_url = database_url
        self.instances = instances
        self.processes = processes  # `guidebot serve --processes`: each server's own
        self.logs = logs
        ports = free_ports(1 + instances + (instances > 1))  # all distinct
        self.sim_port, self.ports = ports[0], ports[1 : 1 + instances]
        self.front_port = ports[-1] if instances > 1 else None
        callback_port = self.front_port or self.ports[0]
        self.callback_url = f"http://127.0.0.1:{callback_port}/wecom/callback"
        self.env = {
            **os.environ,
            **IDENTITY,
            "GUIDEBOT_DATABASE_URL": database_url,
            "GUIDEBOT_WECOM_API_BASE": f"http://127.0.0.1:{self.sim_port}",
            "GUIDEBOT_SOP_DIR": str(REPO / "sop"),
        }
        self.simulator: subprocess.Popen | None = None
        self.front: subprocess.Popen | None = None
        self.servers: list[subprocess.Popen] = []
        self.profiler: subprocess.Popen | None = None

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "a") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                [sys.executable, "-m", *args], env=self.env, cwd=REPO, stdout=log, stderr=log
            )

    def start_simulator(self) -> None:
        self.simulator = self._start(
            "simulator",
            "guidebot.cli",
            "simulator",
            "--port",
            str(self.sim_port),
            "--callback-url",
            self.callback_url,
        )
        wait_healthy(self.sim_port, self.simulator, path="/_sim/config")
        # WeCom's per-API limits stay (send_welcome_msg's 10,000 a minute is the ceiling under
        # test); the per-guide app-message caps go, and the call log holds a whole run.
        sim_call(
            self.sim_port,
            "config",
            {
                "member_messages_per_minute": 1_000_000,
                "member_messages_per_hour": 60_000_000,
                "call_log_limit": 1_000_000,
            },
        )

    def start_guidebot(self) -> None:
        if self.front_port is not None:
            upstreams = [f"http://127.0.0.1:{p}" for p in self.ports]
            self.front = self._start(
                "front", "bench.welcome", "--front", str(self.front_port), *upstreams
            )
        for i, port in enumerate(self.ports):
            self.servers.append(
                self._start(
                    f"serve{i}",
                    "guidebot.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    *(["--processes", str(self.processes)] if self.processes > 1 else []),
                )
            )
        for port, server in zip(self.ports, self.servers, strict=True):
            wait_healthy(port, server, timeout=60)
        if PROFILE_DIR:  # py-spy samples the first server; raw stacks, one file per rate
            if shutil.which("py-spy") is None:
                raise SystemExit("BENCH_PROFILE_DIR needs py-spy on PATH (pip install py-spy)")
            out = Path(PROFILE_DIR) / f"{self.logs.name}.txt"
            self.profiler = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(self.servers[0].pid),
                    "--format",
                    os.environ.get("BENCH_PROFILE_FORMAT", "raw"),
                    "--rate",
                    "250",
                    "--nonblocking",
                    "--threads",
                    # only the thread holding the GIL: the Python CPU, not the waits
                    *(["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else []),
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if self.front is not None:
            wait_healthy(self.front_port, self.front)

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in (self.simulator, self.front, *self.servers) if p is not None]

    def server_cpu(self) -> float | None:
        """Every server's CPU, with that of the processes a `--processes` server started."""
        pids = [server.pid for server in self.servers]
        pids += [child for pid in pids for child in children_of(pid)]
        times = [cpu_seconds(pid) for pid in pids]
        return None if None in times else sum(times)

    def stop(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            self.profiler.wait(timeout=60)
        for process in reversed(self.alive()):
            if process.poll() is None:
                process.terminate()
        for process in self.alive():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def fresh_database(database_url: str | None, tmp: Path, label: str) -> str:
    if database_url is None:
        return f"sqlite+aiosqlite:///{tmp / f'welcome-{label}.db'}"
    asyncio.run(fresh_postgres(database_url))
    upgrade_sync(database_url)  # `guidebot serve` migrates only SQLite by itself
    return database_url


def measure(
    rate: float,
    seconds: float,
    database_url: str | None,
    instances: int,
    tmp: Path,
    warmup: int,
    processes: int = 1,
) -> RateResult:
    label = f"{rate:g}"
    url = fresh_database(database_url, tmp, label)
    logs = tmp / f"logs-{label}"
    logs.mkdir()
    rig = Rig(url, instances, logs, processes)
    count = round(rate * seconds)
    warm = [f"wmwarm{i:04d}" for i in range(warmup)]
    customers = [f"wmb{label.replace('.', '_')}n{i:06d}" for i in range(count)]
    try:
        rig.start_simulator()
        seed(rig.sim_port, warm + customers)
        rig.start_guidebot()
        must(
            "guidebot's start-up directory sync",
            lambda: (
                fetch_row(
                    url,
                    f"SELECT count(*) FROM store_memberships WHERE store_id = {STORE} "
                    "AND valid_to IS NULL",
                )[0]
                >= GUIDES
            ),
            60,
            rig.alive(),
        )
        if warm:
            offer(rig.sim_port, warm, 5, 10)
            must(
                "the warm-up's welcomes",
                lambda: len(welcomes_of(rig.sim_port, set(warm))) == len(warm),
                WELCOME_TTL + 5,
                rig.alive(),
            )
            must("the warm-up's events", lambda: not inbox_counts(url)[0], 60, rig.alive())
        since = last_call(rig.sim_port)
        own_before = own_welcome_count(rig.ports)
        load = os.getloadavg()[0]
        database_here = on_this_machine(url)  # its CPU is then read beside the server's
        cpu_before, sim_before = rig.server_cpu(), cpu_seconds(rig.simulator.pid)
        db_before = postgres_cpu_seconds() if database_here else None

        answered = offer(rig.sim_port, customers, rate, int(rate * 10) + 10)
        last_offer = time.monotonic()
        wanted = set(customers)
        # Every code is welcomed or has expired; then guidebot finishes what the adds left.
        # Polled gently: reading thousands of welcomes costs the simulator, and both share the
        # machine with guidebot (a few dozen cost nothing, and the smoke run is then quicker).
        wait_for(
            lambda: len(welcomes_of(rig.sim_port, wanted)) == len(wanted),
            WELCOME_TTL + 1,
            rig.alive(),
            every=1 if count > 100 else 0.25,
        )
        drained: float | None = None
        if wait_for(lambda: not inbox_counts(url)[0], DRAIN_TIMEOUT, rig.alive(), every=0.5):
            drained = time.monotonic() - last_offer
        cpu_after, sim_after = rig.server_cpu(), cpu_seconds(rig.simulator.pid)
        db_after = postgres_cpu_seconds() if database_here else None
        own_after = own_welcome_count(rig.ports)

        welcomes = welcomes_of(rig.sim_port, wanted)
        calls = sim_call(rig.sim_port, f"calls?since={since}")["calls"]
    except BaseException:
        rig.stop()
        for log in sorted(logs.iterdir()):  # the temporary directory goes with the exception
            tail = log.read_text(errors="replace").splitlines()[-20:]
            print(f"--- {log.name}, last lines:", *tail, sep="\n", file=sys.stderr)
        raise
    rig.stop()

    adds = answered.statuses.get(200, 0)
    if adds != count:
        print(f"  {count - adds} of {count} adds were refused: {answered.statuses}")
    latencies = [w["time"] - w["issued_at"] for w in welcomes.values()]
    first = min((w["issued_at"] for w in welcomes.values()), default=0.0)
    issued = sorted((w["issued_at"] - first, w["time"] - w["issued_at"]) for w in welcomes.values())
    errors: Counter[int] = Counter()
    by_api: dict[int, Counter[str]] = {}
    per_code: Counter[str] = Counter()
    for call in calls:
        answer = call.get("answer") or {}
        code = answer.get("errcode", 0)
        if code:
            errors[code] += 1
            by_api.setdefault(code, Counter())[call["api"]] += 1
        if call["api"] == "externalcontact/send_welcome_msg" and isinstance(call["body"], dict):
            per_code[call["body"].get("welcome_code")] += 1
    late = [x for x in answered.lateness if x > LATE]

    def per_add(before: float | None, after: float | None) -> float | None:
        return None if before is None or after is None or not adds else (after - before) / adds

    return RateResult(
        rate=rate,
        adds=adds,
        late=len(late),
        max_late=max(answered.lateness, default=0.0),
        welcomed=[x for x in latencies if x <= WELCOME_TTL],
        issued=issued,
        errors=errors,
        errors_by_api=by_api,
        duplicates=sum(1 for n in per_code.values() if n > 1),
        cpu_per_add=per_add(cpu_before, cpu_after),
        sim_cpu_per_add=per_add(sim_before, sim_after),
        db_cpu_per_add=per_add(db_before, db_after),
        add_answered=answered,
        drained=drained,
        own_count=(own_after[0] - own_before[0], own_after[1] - own_before[1]),
        load=load,
    )


# ---- the round-robin front -------------------------------------------------------------------


def run_front(port: int, upstreams: list[str]) -> None:
    """A load balancer in miniature: each request goes to the next instance in turn."""
    import aiohttp
    from aiohttp import web

    turn = itertools.count()

    async def session_ctx(app: web.Application):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            app["session"] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        upstream = upstreams[next(turn) % len(upstreams)]
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "text/plain")}
        try:
            async with request.app["session"].request(
                request.method, upstream + request.path_qs, data=body, headers=headers
            ) as answer:
                payload = await answer.read()
                kind = answer.headers.get("Content-Type")
                headers = {"Content-Type": kind} if kind else {}
                return web.Response(status=answer.status, body=payload, headers=headers)
        except aiohttp.ClientError:
            return web.Response(status=502)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def own_welcome_count(ports: list[int]) -> tuple[float, float]:
    """What the servers count themselves (`/metrics`, guidebot_welcome_seconds): welcomes
    WeCom accepted, and of them those within 20 s of the add's time (whole seconds)."""
    count = within = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith("guidebot_welcome_seconds_count "):
                count += float(line.split()[1])
            elif line.startswith('guidebot_welcome_seconds_bucket{le="20.0"} '):
                within += float(line.split()[1])
    return count, within


# ---- the report ------------------------------------------------------------------------------


def seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def errors_text(errors: Counter[int]) -> str:
    return ", ".join(f"{code}×{n}" for code, n in sorted(errors.items())) or "none"


HEADER = (
    f"{'adds/s':>6} {'adds':>6} {'late':>5} {'in 20 s':>8} {'p50':>8} {'p99':>8} {'max':>8} "
    f"{'CPU/add':>8} {'load':>5}  errors"
)


def row(result: RateResult) -> str:
    cpu = "-" if result.cpu_per_add is None else f"{result.cpu_per_add * 1000:.1f} ms"
    return (
        f"{result.rate:>6g} {result.adds:>6,} {result.late:>5,} {result.share:>8.1%} "
        f"{seconds_text(result.percentile(50)):>8} {seconds_text(result.percentile(99)):>8} "
        f"{seconds_text(max(result.welcomed, default=None)):>8} {cpu:>8} "
        f"{result.load:>5.2f}  {errors_text(result.errors)}"
    )


def details(result: RateResult, instances: int) -> str:
    answered = result.add_answered
    parts = [
        f"  add answered (callback acknowledged) p50 {answered.percentile(50) * 1000:.0f} ms, "
        f"p99 {answered.percentile(99) * 1000:.0f} ms; offers late by over {LATE:g} s: "
        f"{result.late} (at most {result.max_late:.2f} s)",
    ]
    drained = (
        f"guidebot's inbox empty {result.drained:.1f} s after the last add"
        if result.drained is not None
        else f"guidebot's inbox NOT empty {DRAIN_TIMEOUT:.0f} s after the last add"
    )
    sim = (
        ""
        if result.sim_cpu_per_add is None
        else f"; simulator CPU {result.sim_cpu_per_add * 1000:.1f} ms an add"
    )
    if result.db_cpu_per_add is not None:
        sim += f"; PostgreSQL CPU {result.db_cpu_per_add * 1000:.1f} ms an add"
    parts.append(f"  {drained}{sim}")
    if result.own_count is not None:
        count, within = result.own_count
        parts.append(
            f"  guidebot's own count (/metrics guidebot_welcome_seconds): {count:,.0f} accepted, "
            f"{within:,.0f} within 20 s of the add's time"
        )
    for code, apis in sorted(result.errors_by_api.items()):
        parts.append(f"  errcode {code}: " + ", ".join(f"{a} ×{n}" for a, n in apis.items()))
    if result.issued and result.issued[-1][0] > TIMELINE_STEP:
        parts.append(
            f"  slowest welcome of the codes issued in each {TIMELINE_STEP:g} s: "
            + timeline(result)
        )
    if instances > 1 or result.duplicates:
        parts.append(f"  WelcomeCodes sent to send_welcome_msg more than once: {result.duplicates}")
    return "\n".join(parts)


TIMELINE_STEP = float(os.environ.get("BENCH_TIMELINE_STEP", "10"))


def timeline(result: RateResult) -> str:
    """Whether the welcome falls behind as the burst goes on, or stalls now and then."""
    worst: dict[int, float] = {}
    for at, latency in result.issued:
        window = int(at // TIMELINE_STEP)
        worst[window] = max(worst.get(window, 0.0), latency)
    return " ".join(f"{worst.get(n, 0.0):.2f}" for n in range(max(worst) + 1))


def parse_rate(text: str) -> tuple[float, float]:
    try:
        rate, seconds = (float(x) for x in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--rates: {text!r} is not RATExSECONDS (e.g. 166x20)") from None
    if rate <= 0 or seconds <= 0:
        raise SystemExit(f"--rates: {text!r} needs a positive rate and duration")
    return rate, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 50 adds/s for 5 s each")
    parser.add_argument(
        "--database-url",
        help="an expendable PostgreSQL database (emptied before each rate); default SQLite",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="guidebot servers on one PostgreSQL database, behind a round-robin front",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="each server as `guidebot serve --processes N` (PostgreSQL): N on one port",
    )
    parser.add_argument(
        "--rates",
        help="rates to offer instead, as RATExSECONDS,... (e.g. 166x20,50x10)",
    )
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--front", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.front:
        run_front(int(args.front[0]), args.front[1:])
        return
    if args.database_url is not None and not is_postgres(args.database_url):
        raise SystemExit("--database-url takes a PostgreSQL URL (SQLite is the default)")
    if args.instances < 1:
        raise SystemExit("--instances must be at least 1")
    if args.instances > 1 and args.database_url is None:
        raise SystemExit("--instances above 1 needs PostgreSQL (--database-url)")
    if args.processes > 1 and args.database_url is None:
        raise SystemExit("--processes above 1 needs PostgreSQL (--database-url)")
    rates = SMOKE_RATES if args.smoke else QUICK_RATES if args.quick else RATES
    if args.rates:
        rates = tuple(parse_rate(part) for part in args.rates.split(","))
    warmup = 2 if args.smoke else WARMUP

    database = "PostgreSQL" if args.database_url else "SQLite"
    servers = f"{args.instances} guidebot servers" if args.instances > 1 else "one guidebot server"
    if args.processes > 1:
        servers += f" of {args.processes} processes (`serve --processes {args.processes}`)"
    print(
        f"{servers} on {database}, the simulated WeCom beside it; {GUIDES} guides in one store, "
        "the shipped playbooks; from each WelcomeCode's issue to its send_welcome_msg "
        "(p50/p99/max of those welcomed)"
    )
    print(HEADER, flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate, seconds in rates:
            result = measure(
                rate, seconds, args.database_url, args.instances, Path(tmp), warmup, args.processes
            )
            results.append(result)
            print(row(result))
            print(details(result, args.instances * args.processes), flush=True)
    top = results[-1]
    p99 = top.percentile(99)
    print(f"welcomed_in_20s={top.share:.3f} p99={'inf' if p99 is None else f'{p99:.2f}'}")


if __name__ == "__main__":
    main()
