"""Ingest throughput of the real service over HTTP: single POSTs and bulk POSTs.

    .venv/bin/python bench/ingest.py [--database sqlite|postgresql|both] [--seconds 10]
        [--clients 32] [--bulk-size 1000] [--bulk-clients 4] [--workers 1,2,3]
        [--load-generator wrk|httpx] [--no-bulk | --no-single] [--events | --mixed]
        [--no-anchor-worker]
        [--profile DIR [--profile-only] [--profile-test single|bulk] [--py-spy PATH]]

For each database and each uvicorn worker count: a fresh migrated database (a
SQLite file in a temp dir, or a fresh PostgreSQL schema dropped at the end), a
fresh AnchorRegistry on a Hardhat node started here, an agency key, then the
service by `ancla serve --workers W` (uvicorn app.main:app_from_environment
--factory; several workers listen on a socket each, app/serving.py) in a
subprocess, WITH the anchor worker running inside it (ANCLA_RUN_WORKER=1, the
real configuration: it seals batches of ANCLA_BATCH_MAX_SIZE records, 10,000
unless set, and anchors them while the load runs; --no-anchor-worker measures
the API alone).
The per-key rate limit is switched off (ANCLA_RATE_LIMIT_PER_SECOND=0): one
load generator is one agency, and the limit is policy, not capacity.

(a) POST /v1/purchase-orders: --clients concurrent keep-alive connections for
    --seconds, every request a distinct valid order (unique order number and
    amounts), after a 2 s warm-up. Load from wrk (C, one thread, a Lua script
    that formats each body) when installed, else Python threads with httpx
    (which costs the server CPU on a 2-core machine).
(b) POST /v1/purchase-orders/bulk: --bulk-clients concurrent httpx clients,
    bodies of --bulk-size distinct orders (built before the clock starts), for
    --seconds; records/s counts items the service answered
    "created"; latency is per bulk request.
(c) with --events, POST /v1/events/bulk: as many orders as the run could reach
    are recorded first (not measured), then --bulk-clients clients append one
    "accepted" event to each, --bulk-size events per body, for --seconds.
(d) with --mixed, orders and events at once: as (c), but half the clients
    append the events while the other half POST new orders as (b); records/s
    counts both (issue 19: >= 20,000 records/s mixed half and half).

Also printed: the cores each process group used during the run (the service,
the Hardhat node, PostgreSQL, the load generator, and the whole machine, so
other work on it shows), since on a 2-core machine they all compete. Goals:
>= 1,000 single POSTs/s and >= 20,000 records/s in bulk, on SQLite and
PostgreSQL. --profile DIR samples the service (1 worker) with py-spy during a
separate run (GIL holder = CPU view, and all busy threads = wall view) and
prints the share of each request layer and the top functions.
Figures only; nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CpuMeter,
    Server,
    add_bench_agency,
    backends_from,
    code_version,
    fresh_database,
    percentile,
    pids_named,
    print_table,
    run_server,
    tree,
    which,
)

from app.devchain import DEV_KEY_0, HardhatNode, start_node  # noqa: E402
from ledger.chain import ChainClient, load_signer  # noqa: E402

AGENCY_RUC = "20600027426"
AGENCY_NAME = "MINISTERIO PÚBLICO-GERENCIA ADMINISTRATIVA DE SAN MARTÍN"
SINGLE_PATH = "/v1/purchase-orders"
# Bulk bodies built before a run: enough for this many records/s.
PREBUILT_RATE = 40_000
BULK_PATH = "/v1/purchase-orders/bulk"
WARMUP_SECONDS = 2

# -- request bodies ---------------------------------------------------------------

_SENTINELS = {"order_number": "@@ON@@", "subtotal": "@@SUB@@", "tax": "@@TAX@@", "total": "@@TOT@@"}


def _order_template() -> list[str]:
    """The JSON of a valid order, split around its order number and amounts.

    Alternating literal text and placeholder names, so both the Lua script and
    Python format a distinct valid order with a few string joins.
    """
    try:
        from tests.support.orders import order

        data = order(0)
    except Exception:  # noqa: BLE001 - the tests' helper is a convenience only
        from app.records.purchase_order import PURCHASE_ORDER_EXAMPLE

        data = {k: v for k, v in PURCHASE_ORDER_EXAMPLE.items() if k != "items"}
    data = {**data, **_SENTINELS}
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return re.split(r"@@(ON|SUB|TAX|TOT)@@", text)


TEMPLATE = _order_template()


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def order_json(number: str, n: int) -> str:
    cents = 100_000 + n % 10_000_000
    tax = cents * 18 // 100
    values = {"ON": number, "SUB": _money(cents), "TAX": _money(tax), "TOT": _money(cents + tax)}
    return "".join(values[p] if i % 2 else p for i, p in enumerate(TEMPLATE))


def bulk_body(prefix: str, start: int, size: int) -> bytes:
    orders = ",".join(order_json(f"{prefix}-{n}", n) for n in range(start, start + size))
    return ('{"purchase_orders":[' + orders + "]}").encode()


def _lua_string(text: str) -> str:
    level = "=" * 3
    assert f"]{level}]" not in text  # noqa: S101
    return f"[{level}[{text}]{level}]"


def wrk_script(api_key: str, prefix: str) -> str:
    pieces = []
    for i, part in enumerate(TEMPLATE):
        if i % 2 == 0:
            pieces.append(_lua_string(part))
        else:
            pieces.append(
                {
                    "ON": "number",
                    "SUB": "money(cents)",
                    "TAX": "money(tax)",
                    "TOT": "money(cents + tax)",
                }[part]
            )
    body_expr = " .. ".join(pieces)
    return f"""
local thread_count = 0
local threads = {{}}
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
  table.insert(threads, thread)
end

local counter = 0
statuses = {{}}
local headers = {{["Content-Type"] = "application/json",
                 ["Authorization"] = "Bearer {api_key}"}}

local function money(c)
  return string.format("%d.%02d", math.floor(c / 100), c % 100)
end

function request()
  counter = counter + 1
  local n = counter
  local number = "{prefix}-" .. thread_id .. "-" .. n
  local cents = 100000 + n
  local tax = math.floor(cents * 18 / 100)
  local body = {body_expr}
  return wrk.format("POST", "{SINGLE_PATH}", headers, body)
end

function response(status, hdrs, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {{}}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {{}}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status_errors":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,' ..
    '"mean":%f,"statuses":{{%s}}}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, table.concat(parts, ",")))
end
"""


# -- measurements -----------------------------------------------------------------


@dataclass
class Result:
    label: str
    requests: int = 0
    records: int = 0
    seconds: float = 0.0
    errors: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    cores: dict[str, float] = field(default_factory=dict)
    loadgen_cpu: float = 0.0
    sealed: int = 0  # bulk: records the anchor worker sealed during the run
    queued_at_end: int = 0  # bulk: records not yet in a batch when it ended
    drained_after: float | None = None  # bulk: seconds until every record was sealed
    # bulk: (seconds into the run, records queued for sealing), sampled every 2 s
    queue: list[tuple[float, int]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def record_rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def run_wrk(
    server: Server, api_key: str, *, clients: int, seconds: float, prefix: str, work_dir: Path
) -> Result:
    script = work_dir / f"wrk-{prefix}.lua"
    script.write_text(wrk_script(api_key, prefix), encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(  # noqa: S603
        [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            server.url,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(line.removeprefix("WRK_RESULT "))
    statuses = Counter({k: int(v) for k, v in data["statuses"].items()})
    ok = sum(v for k, v in statuses.items() if k in ("200", "202"))
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    result = Result(
        label="single",
        requests=data["requests"],
        records=statuses.get("202", 0),
        seconds=data["duration_us"] / 1e6,
        errors=data["requests"] - ok + socket_errors,
        statuses=statuses,
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
    )
    result.loadgen_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return result


def run_httpx_singles(
    server: Server, api_key: str, *, clients: int, seconds: float, prefix: str
) -> Result:
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    statuses: list[Counter[str]] = [Counter() for _ in range(clients)]
    failures = [0] * clients
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def client(index: int) -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            n = 0
            while time.monotonic() < deadline:
                n += 1
                body = order_json(f"{prefix}-{index}-{n}", n).encode()
                start = time.perf_counter()
                try:
                    response = http.post(SINGLE_PATH, content=body)
                except httpx.HTTPError:
                    failures[index] += 1
                    continue
                latencies[index].append(time.perf_counter() - start)
                statuses[index][str(response.status_code)] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    merged: Counter[str] = sum(statuses, Counter())
    values = sorted(x * 1000 for lat in latencies for x in lat)
    ok = merged.get("200", 0) + merged.get("202", 0)
    return Result(
        label="single",
        requests=sum(merged.values()),
        records=merged.get("202", 0),
        seconds=elapsed,
        errors=sum(merged.values()) - ok + sum(failures),
        statuses=merged,
        p50_ms=percentile(values, 50),
        p90_ms=percentile(values, 90),
        p99_ms=percentile(values, 99),
        max_ms=values[-1] if values else float("nan"),
    )


def run_singles(
    server: Server,
    api_key: str,
    args: argparse.Namespace,
    seconds: float,
    prefix: str,
    work_dir: Path,
) -> Result:
    """Single POSTs from the chosen load generator for ``seconds``."""
    if args.load_generator == "wrk":
        return run_wrk(
            server, api_key, clients=args.clients, seconds=seconds, prefix=prefix, work_dir=work_dir
        )
    return run_httpx_singles(server, api_key, clients=args.clients, seconds=seconds, prefix=prefix)


def run_bulk(
    server: Server,
    api_key: str,
    *,
    clients: int,
    seconds: float,
    size: int,
    prefix: str,
    keep_alive: bool = False,
    on_start: Callable[[], None] | None = None,
    path: str = BULK_PATH,
    prebuilt: list[list[bytes]] | None = None,
    label: str = "bulk",
    mixed: list[list[bytes]] | None = None,
) -> Result:
    """Each client POSTs bodies built before the clock starts, then builds more
    if the service outruns them.

    The load generator shares the service's 2 cores: building each body in the
    run (1 ms per 1,000 orders) and reading each answer with the json module
    cost the client 15 us per record, an eighth of the machine at 17,000
    records/s, measured. orjson reads the answers now.
    """
    import httpx
    import orjson

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    created = [0] * clients
    not_created = [0] * clients
    failures = [0] * clients
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    # Enough for PREBUILT_RATE records/s; a faster service gets bodies built on the fly.
    per_client = int(seconds * PREBUILT_RATE / size / clients) + 2
    # Events name the orders they follow: those bodies are all built before (a
    # client stops when its orders run out). ``mixed``: the odd clients POST
    # these events to EVENTS_PATH while the even ones POST orders.
    bodies = prebuilt or [
        [bulk_body(f"{prefix}-{index}", n * size, size) for n in range(per_client)]
        for index in range(clients)
    ]
    paths = [path] * clients
    fixed = [prebuilt is not None] * clients
    if mixed is not None:
        for index in range(1, clients, 2):
            bodies[index], paths[index], fixed[index] = mixed[index // 2], EVENTS_PATH, True
    if on_start is not None:
        on_start()  # the CPU meter: the bodies built above are not the run's
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        # keep_alive False: a new connection per bulk. The kernel hashes each
        # connection to one worker's socket, so a few long-lived connections
        # can leave a worker idle for the whole run; agencies' systems posting
        # a bulk now and then each come on a connection of their own.
        limits = httpx.Limits(max_keepalive_connections=0 if not keep_alive else None)
        with httpx.Client(base_url=server.url, headers=headers, timeout=300, limits=limits) as http:
            ready = bodies[index]
            n = len(ready)
            while time.monotonic() < deadline:
                if ready:
                    body = ready.pop(0)
                elif fixed[index]:
                    break
                else:
                    body = bulk_body(f"{prefix}-{index}", n * size, size)
                    n += 1
                start = time.perf_counter()
                try:
                    response = http.post(paths[index], content=body)
                except httpx.HTTPError:
                    failures[index] += 1
                    continue
                took = time.perf_counter() - start
                with lock:
                    latencies.append(took)
                    statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    summary = orjson.loads(response.content)["summary"]
                    created[index] += summary.get("created", 0)
                    not_created[index] += sum(v for k, v in summary.items() if k != "created")

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    values = sorted(x * 1000 for x in latencies)
    requests = sum(statuses.values())
    return Result(
        label=label,
        requests=requests,
        records=sum(created),
        seconds=elapsed,
        # Failed requests, plus items of answered requests that were not "created".
        errors=requests - statuses.get("200", 0) + sum(failures) + sum(not_created),
        statuses=statuses,
        p50_ms=percentile(values, 50),
        p90_ms=percentile(values, 90),
        p99_ms=percentile(values, 99),
        max_ms=values[-1] if values else float("nan"),
    )


EVENTS_PATH = "/v1/events/bulk"
# Orders recorded before an events run, per second of it: more than it appends.
EVENT_ORDERS_RATE = 30_000


def create_orders(server: Server, api_key: str, count: int, prefix: str) -> list[tuple[str, str]]:
    """Record ``count`` orders (set-up, not measured): their (order number, hash)."""
    import httpx
    import orjson

    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    made: list[tuple[str, str]] = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=300) as http:
        for start in range(0, count, 1000):
            answer = http.post(
                BULK_PATH, content=bulk_body(prefix, start, min(1000, count - start))
            )
            answer.raise_for_status()
            made += [
                (r["order_number"], r["hash"])
                for r in orjson.loads(answer.content)["results"]
                if r["outcome"] == "created"
            ]
    return made


def event_bodies(orders: list[tuple[str, str]], *, clients: int, size: int) -> list[list[bytes]]:
    """Bodies of ``size`` "accepted" events each, one per order, split over the clients."""
    import orjson

    def event(number: str, head: str) -> dict[str, str]:
        return {
            "buyer_ruc": AGENCY_RUC,
            "order_number": number,
            "prev": head,
            "type": "accepted",
            "occurred_at": "2026-02-01T10:00:00-05:00",
        }

    bodies: list[list[bytes]] = [[] for _ in range(clients)]
    for n, start in enumerate(range(0, len(orders), size)):
        events = [event(number, head) for number, head in orders[start : start + size]]
        bodies[n % clients].append(orjson.dumps({"events": events}))
    return bodies


def db_state(database_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from app.db import make_engine
    from app.models import Batch, PendingRecord, Record

    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            records = conn.scalar(select(func.count()).select_from(Record)) or 0
            pending = conn.scalar(select(func.count()).select_from(PendingRecord)) or 0
            batches = dict(
                conn.execute(select(Batch.status, func.count()).group_by(Batch.status)).all()
            )
    finally:
        engine.dispose()
    return {
        "records": records,
        "unbatched": pending,
        **{f"batches {k}": v for k, v in batches.items()},
    }


class QueueSampler:
    """The pending queue's length every ``every`` seconds while a run lasts."""

    def __init__(self, database_url: str, every: float = 2.0) -> None:
        self.url, self.every = database_url, every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QueueSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            queued = db_state(self.url)["unbatched"]
            self.samples.append((time.monotonic() - self._started, queued))


# -- one configuration ---------------------------------------------------------------


def measure(
    backend: str,
    workers: int,
    args: argparse.Namespace,
    node: HardhatNode,
    work_dir: Path,
) -> tuple[Result | None, Result | None, dict[str, int], dict[str, int]]:
    chain = ChainClient(node.url)
    contract, _ = chain.deploy_registry(load_signer(key=DEV_KEY_0))
    with fresh_database(backend, work_dir) as url:
        api_key = add_bench_agency(url, AGENCY_RUC, AGENCY_NAME)
        with run_server(
            database_url=url,
            log_dir=work_dir,
            workers=workers,
            run_worker=not args.no_anchor_worker,
            rpc_url=node.url,
            contract=contract,
        ) as server:
            groups: dict[str, Any] = {
                "service": lambda: tree(server.process.pid),
                "hardhat": lambda: tree(node.process.pid),
            }
            # Each serving process on its own too: a few keep-alive connections
            # are not always spread evenly over the workers.
            for number, pid in enumerate(server.worker_pids(), start=1):
                groups[f"worker {number}"] = lambda pid=pid: [pid]
            if backend == "postgresql":
                groups["postgres"] = lambda: pids_named("postgres")
            run = secrets.token_hex(3)
            meter = CpuMeter(groups)
            single: Result | None = None
            after_single: dict[str, int] = {}
            if not args.no_single:
                run_singles(server, api_key, args, WARMUP_SECONDS, f"W{run}", work_dir)
                meter.start()
                single = run_singles(server, api_key, args, args.seconds, f"S{run}", work_dir)
                single.cores = meter.stop()
                if args.load_generator == "wrk":
                    single.cores["wrk"] = single.loadgen_cpu / single.seconds
                after_single = db_state(url)
            bulk: Result | None = None
            after_bulk: dict[str, int] = {}
            if not args.no_bulk:
                before_bulk = db_state(url)
                with QueueSampler(url) as sampler:
                    bulk = run_bulk(
                        server,
                        api_key,
                        clients=args.bulk_clients,
                        seconds=args.seconds,
                        size=args.bulk_size,
                        prefix=f"B{run}",
                        keep_alive=args.bulk_keep_alive,
                        on_start=meter.start,
                    )
                bulk.queue = sampler.samples
                bulk.cores = meter.stop()
                after_bulk = db_state(url)
                # The anchor worker seals while the load runs: what it kept up with.
                bulk.sealed = _batched(after_bulk) - _batched(before_bulk)
                bulk.queued_at_end = after_bulk["unbatched"]
                bulk.drained_after = _wait_until_sealed(url)
            events: Result | None = None
            if args.events or args.mixed:
                # The same number of orders the bulk run could reach, recorded
                # first (not measured); then one event for each, in bulk.
                # --mixed: half the clients append those events, half POST new
                # orders (bulk_body's numbers, another prefix), at once.
                event_clients = args.bulk_clients // 2 if args.mixed else args.bulk_clients
                wanted = int(args.seconds * EVENT_ORDERS_RATE * event_clients / args.bulk_clients)
                orders = create_orders(server, api_key, wanted, f"E{run}")
                _wait_until_sealed(url)
                bodies = event_bodies(orders, clients=event_clients, size=args.bulk_size)
                before = db_state(url)
                events = run_bulk(
                    server,
                    api_key,
                    clients=args.bulk_clients,
                    seconds=args.seconds,
                    size=args.bulk_size,
                    prefix=f"V{run}",
                    keep_alive=args.bulk_keep_alive,
                    on_start=meter.start,
                    path=BULK_PATH if args.mixed else EVENTS_PATH,
                    prebuilt=None if args.mixed else bodies,
                    label="mixed" if args.mixed else "events",
                    mixed=bodies if args.mixed else None,
                )
                events.cores = meter.stop()
                after = db_state(url)
                events.sealed = _batched(after) - _batched(before)
                events.queued_at_end = after["unbatched"]
                events.drained_after = _wait_until_sealed(url)
    return single, bulk, events, after_single, after_bulk


def profile(
    backend: str, args: argparse.Namespace, node: HardhatNode, work_dir: Path, out_dir: Path
) -> None:
    """py-spy on the service (one worker) during a single or bulk run; top frames."""
    py_spy = args.py_spy or which("py-spy")
    if not py_spy:
        print("  (py-spy not found: pass --py-spy PATH)")
        return
    chain = ChainClient(node.url)
    contract, _ = chain.deploy_registry(load_signer(key=DEV_KEY_0))
    out_dir.mkdir(parents=True, exist_ok=True)
    with fresh_database(backend, work_dir) as url:
        api_key = add_bench_agency(url, AGENCY_RUC, AGENCY_NAME)
        with run_server(
            database_url=url,
            log_dir=work_dir,
            workers=1,
            run_worker=not args.no_anchor_worker,
            rpc_url=node.url,
            contract=contract,
        ) as server:
            run = secrets.token_hex(3)
            run_wrk(
                server,
                api_key,
                clients=args.clients,
                seconds=WARMUP_SECONDS,
                prefix=f"W{run}",
                work_dir=work_dir,
            )
            spies: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
            for mode, extra in (("gil", ["--gil"]), ("threads", ["--threads"])):
                raw = out_dir / f"ingest-{args.profile_test}-{backend}-{mode}.txt"
                argv = [py_spy, "record", "--pid", str(server.process.pid), "--format", "raw"]
                argv += ["--rate", "200", "--duration", str(max(1, round(args.seconds)))]
                argv += ["--nonblocking", *extra, "--output", str(raw)]
                spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                spies.append((mode, raw, spy))
            time.sleep(0.5)
            if args.profile_test == "bulk":
                result = run_bulk(
                    server,
                    api_key,
                    clients=args.bulk_clients,
                    seconds=args.seconds,
                    size=args.bulk_size,
                    prefix=f"P{run}",
                )
                figure = f"{result.record_rate:,.0f} records/s in bulk"
            else:
                result = run_wrk(
                    server,
                    api_key,
                    clients=args.clients,
                    seconds=args.seconds,
                    prefix=f"P{run}",
                    work_dir=work_dir,
                )
                figure = f"{result.rate:,.0f} single POSTs/s"
            for _, _, spy in spies:
                spy.wait(timeout=120)
    print(f"  profiled run ({backend}, 1 worker, under py-spy): {figure}")
    for mode, raw, _ in spies:
        what = (
            "samples of the thread holding the GIL (where CPU goes in Python)"
            if mode == "gil"
            else "samples of every thread not idle in a syscall (wall view)"
        )
        print(f"  py-spy {mode}: {what}")
        summarise_profile(raw)


# Layers of a request: a sample goes to the first layer whose markers ALL occur
# in its stack (so the order matters: specific first, glue last).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("anchor worker thread (seal, anchor, gauges)", ("AnchorWorker.run",)),
    ("ingest: COMMIT (group commit thread)", ("GroupCommitter._run", "do_commit")),
    ("ingest: INSERT ... ON CONFLICT DO NOTHING", ("_insert_new",)),
    ("ingest: lookups of what was not new", ("_lookup",)),
    ("ingest: canonical form + keccak", ("canonical_bytes",)),
    ("ingest: other (group commit thread)", ("GroupCommitter._run",)),
    ("ingest: other", ("prepare_items",)),
    ("bulk: PurchaseOrder validation (parse_items)", ("parse_items",)),
    ("bulk: per-item results", ("record_bulk",)),
    ("route: exists/status lookup, response", ("record_one",)),
    ("auth: API key lookup (authenticate)", ("authenticate",)),
    ("receipt: get_receipt (DB + Receipt)", ("get_receipt",)),
    ("session open (get_session)", ("get_session",)),
    ("strict JSON pre-parse (StrictJSONMiddleware)", ("parse_json_strict",)),
    ("FastAPI body parse + validation", ("request_body_to_args",)),
    ("FastAPI body parse + validation", ("Request.json",)),
    ("FastAPI body parse + validation", ("Request.body",)),
    ("session close + threadpool hand-offs", ("run_sync_in_worker_thread",)),
    ("session close + threadpool hand-offs", ("WorkerThread.run",)),
    ("logging (access log, formatter, handler)", ("Logger.handle",)),
    ("dependency resolution (FastAPI)", ("solve_dependencies",)),
    ("response serialisation + send", ("RequestResponseCycle.send",)),
    ("response serialisation + send", ("serialize_response",)),
    ("uvicorn / asyncio / middleware glue", ()),
]


def layer_of(stack: str) -> str:
    for name, markers in LAYERS:
        if all(m in stack for m in markers):
            return name
    return "other"


def summarise_profile(raw: Path, top: int = 30) -> None:
    """Collapsed stacks -> share of samples by request layer, and by function."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[0].startswith(("thread", "process")):
            frames = frames[1:]
        frames = [_short(f) for f in frames]
        total += count
        layers[layer_of(stack)] += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        print("  (no samples)")
        return
    print(f"  {total:,} samples; raw stacks in {raw}")
    print_table(
        ["share", "layer"],
        [[f"{100 * c / total:5.1f}%", n] for n, c in layers.most_common()],
        title="  by layer:",
    )
    print_table(
        ["inclusive", "function"],
        [[f"{100 * c / total:5.1f}%", n] for n, c in inclusive.most_common(top)],
        title="  by function, inclusive:",
    )
    print_table(
        ["self", "function"],
        [[f"{100 * c / total:5.1f}%", n] for n, c in own.most_common(top)],
        title="  by function, self:",
    )


def _short(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    match = re.match(r"(.*) \((.*?):(\d+)\)$", frame)
    if not match:
        return frame
    name, path, _ = match.groups()
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--bulk-size", type=int, default=1000)
    parser.add_argument("--bulk-clients", type=int, default=4)
    parser.add_argument(
        "--bulk-keep-alive",
        action="store_true",
        help="each bulk client keeps one connection (default: a new connection per bulk)",
    )
    parser.add_argument("--workers", default="1,2,3", help="uvicorn worker counts to try")
    parser.add_argument(
        "--load-generator", choices=["wrk", "httpx"], default="wrk" if which("wrk") else "httpx"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also profile single POSTs with py-spy; raw stacks go here",
    )
    parser.add_argument("--profile-only", action="store_true")
    parser.add_argument(
        "--no-anchor-worker",
        action="store_true",
        help="ANCLA_RUN_WORKER=0: measure the API alone (not the real configuration)",
    )
    parser.add_argument("--no-bulk", action="store_true", help="single POSTs only")
    parser.add_argument("--no-single", action="store_true", help="bulk POSTs only")
    parser.add_argument(
        "--events",
        action="store_true",
        help="also bulk events (POST /v1/events/bulk): one 'accepted' per order recorded first",
    )
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="also orders and events at once: half the bulk clients POST orders, half "
        "append one 'accepted' event to each of the orders recorded first (issue 19)",
    )
    parser.add_argument("--profile-test", choices=["single", "bulk"], default="single")
    parser.add_argument("--py-spy", default=None, help="path of the py-spy binary")
    args = parser.parse_args()
    if args.load_generator == "wrk" and not which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk), use --load-generator httpx")
    worker_counts = [int(w) for w in args.workers.split(",")]

    print(
        f"Ingest over HTTP: {os.cpu_count()} cores; service = ancla serve, "
        + (
            "anchor worker OFF (ANCLA_RUN_WORKER=0)"
            if args.no_anchor_worker
            else "anchor worker running inside (ANCLA_RUN_WORKER=1)"
        )
    )
    print(f"  code: {code_version()}; per-key rate limit off (ANCLA_RATE_LIMIT_PER_SECOND=0)")
    print(
        f"  single: {args.clients} connections x {args.seconds:g} s, load from "
        f"{'wrk (1 thread, Lua bodies)' if args.load_generator == 'wrk' else 'httpx threads'}; "
        f"bulk: {args.bulk_clients} httpx clients x {args.seconds:g} s, "
        f"{args.bulk_size:,} orders per body"
    )
    sys.stdout.flush()
    rows: list[list[Any]] = []
    cpu_rows: list[list[Any]] = []
    queues: list[tuple[str, list[tuple[float, int]]]] = []
    with tempfile.TemporaryDirectory(prefix="ancla-bench-") as tmp:
        work_dir = Path(tmp)
        node = start_node(work_dir / "hardhat")
        try:
            for backend in backends_from(args.database):
                if not args.profile_only:
                    for workers in worker_counts:
                        single, bulk, events, s1, s2 = measure(
                            backend, workers, args, node, work_dir
                        )
                        if single is not None:
                            rows.append(
                                [
                                    backend,
                                    workers,
                                    "single",
                                    f"{single.rate:,.0f} req/s",
                                    "",
                                    "",
                                    single.errors,
                                    single.p50_ms,
                                    single.p99_ms,
                                    single.max_ms,
                                    _statuses(single),
                                ]
                            )
                        for name, r in (
                            (f"bulk x{args.bulk_size}", bulk),
                            (f"{'mixed' if args.mixed else 'events'} x{args.bulk_size}", events),
                        ):
                            if r is None:
                                continue
                            rows.append(
                                [
                                    backend,
                                    workers,
                                    name,
                                    f"{r.record_rate:,.0f} rec/s",
                                    f"{r.sealed / r.seconds:,.0f} rec/s",
                                    f"{r.queued_at_end:,}"
                                    + (
                                        f" (sealed {r.drained_after:.0f} s later)"
                                        if r.drained_after is not None
                                        else " (not sealed within 180 s)"
                                    ),
                                    r.errors,
                                    r.p50_ms,
                                    r.p99_ms,
                                    r.max_ms,
                                    f"{r.requests} req {_statuses(r)}",
                                ]
                            )
                        if bulk is not None:
                            queues.append((f"{backend}, {workers} workers", bulk.queue))
                        for r in (single, bulk, events):
                            if r is None:
                                continue
                            per_worker = " + ".join(
                                f"{r.cores[k]:.2f}"
                                for k in sorted(r.cores)
                                if k.startswith("worker ")
                            )
                            cpu_rows.append(
                                [
                                    backend,
                                    workers,
                                    r.label,
                                    *(
                                        f"{r.cores.get(k, 0):.2f}"
                                        for k in (
                                            "service",
                                            "hardhat",
                                            "postgres",
                                            "wrk",
                                            "bench (this process)",
                                            "machine",
                                        )
                                    ),
                                    per_worker,
                                ]
                            )
                        print(
                            f"  {backend} workers={workers}: "
                            + (
                                f"single {single.rate:,.0f} req/s (p50 {single.p50_ms:.1f} ms, "
                                f"p99 {single.p99_ms:.1f} ms, {single.errors} errors); "
                                if single is not None
                                else ""
                            )
                            + (f"bulk {bulk.record_rate:,.0f} rec/s; " if bulk else "")
                            + f"db after single {s1}; after bulk {s2}"
                        )
                        sys.stdout.flush()
                if args.profile:
                    profile(backend, args, node, work_dir, args.profile)
        finally:
            node.stop()
    if rows:
        print()
        print_table(
            [
                "database",
                "workers",
                "test",
                "rate",
                "sealed",
                "queued at end",
                "errors",
                "p50 ms",
                "p99 ms",
                "max ms",
                "statuses",
            ],
            rows,
            title="Ingest (goals: single >= 1,000 req/s, bulk >= 20,000 rec/s); 'sealed' is the "
            "anchor worker's pace during the bulk run, 'queued at end' the records it had "
            "not sealed yet",
        )
        print()
        print_table(
            [
                "database",
                "workers",
                "test",
                "service",
                "hardhat",
                "postgres",
                "wrk",
                "bench.py",
                "machine",
                "per worker",
            ],
            cpu_rows,
            title="Cores used during each run (CPU s per wall s; the machine has 2; 'machine' "
            "is everything busy on it, other sessions' work included)",
        )
    if queues:
        print()
        print("Records queued for sealing during each bulk run (seconds into it: records)")
        for label, samples in queues:
            print(f"  {label}: " + "  ".join(f"{at:.0f}s:{n:,}" for at, n in samples))


def _wait_until_sealed(database_url: str, limit: float = 180.0) -> float | None:
    """Seconds from the end of the load until the anchor worker has sealed every
    record (None: not within ``limit``)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if db_state(database_url)["unbatched"] == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def _batched(state: dict[str, int]) -> int:
    return state["records"] - state["unbatched"]


def _statuses(result: Result) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(result.statuses.items()))


if __name__ == "__main__":
    main()
