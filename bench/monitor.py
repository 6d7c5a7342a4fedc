"""`ancla monitor` mirroring a local service: records/s and the monitor's memory over time.

    .venv/bin/python bench/monitor.py [--records 1000000] [--batch-size 10000]
        [--database sqlite|postgresql] [--mirror sqlite|postgresql] [--recheck]
        [--repeat 1] [--against REV]

A Hardhat node is started and an AnchorRegistry deployed; a fresh service database
is filled with --records realistic purchase orders in batches of --batch-size whose
roots are really anchored on that node (bench/lookup.py's fill: direct inserts, real
Merkle trees); `ancla serve` serves it (one process, no anchor worker). Then
`ancla monitor --once --recheck 0` catches up into a fresh mirror (a SQLite file by
default) as a subprocess, the way anyone would run it, while this script samples its
resident memory (/proc) and the CPU of the monitor, the service and PostgreSQL.
--recheck then runs a second pass that fetches every batch again and compares it
with the mirror.

Printed: the catch-up's wall time and records/s (whole run, and from the first
commit of mirrored records to the last), CPU by process, and the monitor's resident memory as
the mirror grows. Goal: >= 20,000 records/s with memory flat. Figures only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PYTHON,
    ROOT,
    code_version,
    cpu_seconds,
    fresh_database,
    pids_named,
    revision_worktree,
    run_server,
    tree,
)
from lookup import fill  # noqa: E402


def _rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Watcher(threading.Thread):
    """Reads the monitor's JSON log lines (stderr) as they come: when each batch was done."""

    def __init__(self, process: subprocess.Popen[bytes], pid: int) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.pid = pid
        self.batches: list[tuple[float, int, float | None]] = []  # (time, records, rss MiB)
        self.other: list[str] = []

    def run(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            text = raw.decode("utf-8", "replace").strip()
            try:
                entry = json.loads(text)
            except ValueError:
                self.other.append(text)
                continue
            message = str(entry.get("message", ""))
            if entry.get("logger") == "ancla.monitor" and message.startswith("batch "):
                mirrored = int(message.split(", ")[1].split()[0])
                self.batches.append((time.monotonic(), mirrored, _rss_mib(self.pid)))
            elif entry.get("level") in ("warning", "error"):
                self.other.append(message)


def run_monitor(
    args: list[str], service_pids: Any, label: str, code: Path = ROOT
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run ``ancla monitor --once`` from the code at ``code`` (its own imports first)."""
    argv = [PYTHON, "-m", "app.cli", "monitor", *args, "--once", "--json"]
    started = time.monotonic()
    service_cpu = cpu_seconds(service_pids())
    postgres_cpu = cpu_seconds(pids_named("postgres"))
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        argv,
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watcher = Watcher(process, process.pid)
    watcher.start()
    peak = 0.0
    monitor_cpu = 0.0
    samples: list[tuple[float, float]] = []
    while process.poll() is None:
        rss = _rss_mib(process.pid)
        cpu = cpu_seconds([process.pid])
        if rss is not None:
            peak = max(peak, rss)
            samples.append((time.monotonic() - started, rss))
        monitor_cpu = max(monitor_cpu, cpu)
        time.sleep(0.25)
    out = process.stdout.read() if process.stdout else b""
    watcher.join(timeout=10)
    wall = time.monotonic() - started
    report: dict[str, Any] = json.loads(out) if out.strip() else {"error": "no report"}
    if process.returncode != 0:
        print(f"  {label}: exit {process.returncode}; {report.get('error')}")
        for line in watcher.other[-10:]:
            print(f"    {line}")
    figures = {
        "wall": wall,
        "monitor_cpu": monitor_cpu,
        "service_cpu": cpu_seconds(service_pids()) - service_cpu,
        "postgres_cpu": cpu_seconds(pids_named("postgres")) - postgres_cpu,
        "peak_rss": peak,
    }
    batches = watcher.batches
    # From the first commit to the last: a group of batches committed together is
    # logged at one moment (within milliseconds), so the first group's records are
    # the ones before the span, not in it.
    first, last = (batches[0][0], batches[-1][0]) if batches else (0.0, 0.0)
    if last - first > 0.05:
        records = sum(n for t, n, _ in batches if t - first > 0.05)
        figures["steady_seconds"] = last - first
        figures["steady_rate"] = records / (last - first)
    rss_by_progress = []
    for fraction in (0.1, 0.25, 0.5, 0.75, 1.0):
        index = max(0, min(len(batches) - 1, round(fraction * len(batches)) - 1))
        if batches:
            done = sum(n for _, n, _ in batches[: index + 1])
            rss_by_progress.append((done, batches[index][2]))
    figures["rss_by_progress"] = rss_by_progress  # type: ignore[assignment]
    return report, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--mirror", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--recheck", action="store_true", help="then a pass that fetches every batch again"
    )
    parser.add_argument("--repeat", type=int, default=1, help="catch-ups per code measured")
    parser.add_argument("--against", help="an earlier revision to run beside the working tree")
    args = parser.parse_args()
    print(
        f"ancla monitor mirroring {args.records:,} records in batches of {args.batch_size:,} "
        f"(service on {args.database}, mirror on {args.mirror}); code: {code_version()}",
        flush=True,
    )
    from app.devchain import DEV_KEY_0, start_node
    from ledger.chain import ChainClient, load_signer

    with (
        tempfile.TemporaryDirectory(prefix="ancla-monitor-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        codes: dict[str, Path] = {"now": ROOT}
        if args.against:
            then = stack.enter_context(revision_worktree(args.against, work / "then"))
            codes[f"then ({args.against})"] = then
        node = start_node(work / "hardhat")
        try:
            client = ChainClient(node.url)
            contract, _ = client.deploy_registry(load_signer(key=DEV_KEY_0))
            chain = (node.url, contract, client.genesis_hash())
            with fresh_database(args.database, work / "service") as service_url:
                print("  filling the service's database (roots anchored on the node) ...")
                _, timings = fill(service_url, args.records, args.batch_size, chain, set())
                print(f"  filled in {timings['total']:.0f} s", flush=True)
                with run_server(
                    database_url=service_url,
                    log_dir=work / "logs",
                    run_worker=False,
                    rpc_url=node.url,
                    contract=contract,
                ) as server:
                    rates = _rounds(args, codes, work, server, node.url, contract)
        finally:
            node.stop()
    if args.repeat > 1 or args.against:
        print(f"catch-up of {args.records:,} records, {args.repeat} round(s), records/s:")
        for name, runs in rates.items():
            print(
                f"  {name:20s} whole run: median {statistics.median(r for r, _ in runs):9,.0f} "
                f"(runs: {', '.join(f'{r:,.0f}' for r, _ in runs)});  first commit to last: "
                f"median {statistics.median(s for _, s in runs):9,.0f} "
                f"(runs: {', '.join(f'{s:,.0f}' for _, s in runs)})"
            )


def _rounds(
    args: Any, codes: dict[str, Path], work: Path, server: Any, rpc_url: str, contract: str
) -> dict[str, list[tuple[float, float]]]:
    """Each round: every code's catch-up into a mirror of its own, alternating who goes first."""
    rates: dict[str, list[tuple[float, float]]] = {}
    runs = 0
    for round_ in range(args.repeat):
        order = list(codes.items())
        if round_ % 2:
            order.reverse()
        for name, code in order:
            runs += 1
            with fresh_mirror(args.mirror, work / f"mirror-{runs}") as mirror_url:
                monitor_args = [
                    "--api",
                    server.url,
                    "--rpc",
                    rpc_url,
                    "--contract",
                    contract,
                    "--mirror",
                    mirror_url,
                ]
                passes = [("catch-up", [*monitor_args, "--recheck", "0"])]
                if args.recheck:
                    passes.append(("re-check", [*monitor_args, "--recheck", "1000000"]))
                for label, argv in passes:
                    report, figures = run_monitor(
                        argv, lambda: tree(server.process.pid), label, code
                    )
                    _print(
                        f"round {round_ + 1}, {name}, {label}", args.records, report, figures, args
                    )
                    if label == "catch-up":
                        rates.setdefault(name, []).append(
                            (args.records / figures["wall"], figures.get("steady_rate", 0.0))
                        )
    return rates


@contextlib.contextmanager
def fresh_mirror(backend: str, directory: Path) -> Iterator[str]:
    """A mirror for one catch-up: a SQLite file path the monitor creates and migrates (as
    anyone's first run does, and whatever revision runs), or an empty PostgreSQL schema."""
    if backend == "sqlite":
        directory.mkdir(parents=True)
        yield str(directory / "mirror.db")
        return
    with fresh_database(backend, directory) as url:
        yield url


def _print(
    label: str, records: int, report: dict[str, Any], figures: dict[str, Any], args: Any
) -> None:
    wall = figures["wall"]
    print(f"{label}:")
    print(
        f"  report: clean={report.get('clean')} checked={report.get('batches_checked')} "
        f"verified={report.get('batches_verified')} rechecked={report.get('batches_rechecked')} "
        f"mirrored={report.get('records_mirrored')} findings={len(report.get('findings', []))}"
    )
    print(f"  whole run (process start to exit) {wall:7.1f} s   {records / wall:9,.0f} records/s")
    if "steady_rate" in figures:
        print(
            f"  first commit to last         {figures['steady_seconds']:7.1f} s   "
            f"{figures['steady_rate']:9,.0f} records/s"
        )
    print(
        f"  CPU: monitor {figures['monitor_cpu']:.1f} s, service {figures['service_cpu']:.1f} s"
        + (
            f", postgres {figures['postgres_cpu']:.1f} s"
            if "postgresql" in (args.database, args.mirror)
            else ""
        )
    )
    rss = ", ".join(
        f"{done:,} records: {mib:.0f} MiB" for done, mib in figures["rss_by_progress"] if mib
    )
    print(f"  monitor resident memory: {rss}; peak {figures['peak_rss']:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
