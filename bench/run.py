"""Benchmark driver: how much does the gateway cost on top of its upstream, beside its peers?

Starts the fake upstream and every system under test on 127.0.0.1, checks that each answers a correct
chat completion (plain and streamed), warms them up, then measures with wrk in interleaved rounds
(every scenario runs each system in turn, the order rotating per round) and reports medians. Per
run it also records the system's CPU time per request and its RSS afterwards, from /proc. Then,
one system at a time: time to first byte of streamed replies (one connection), whether chunks sent
50 ms apart arrive 50 ms apart (no buffering), and 1,000 concurrent slow streams (a chunk every
100 ms for 10 s) with the RSS they take. Every process it starts is stopped by its process group,
on errors and Ctrl-C too.

    python bench/run.py [--quick] [--peers] [--systems direct,gateway,...] [--connections 1,32,128] ...

`--peers` also installs (once, under bench/.peers/) and measures LiteLLM's proxy and Portkey's
gateway in the same run; a peer that cannot be installed or started is reported and left out.

Results: the tables on stdout, and bench/results/bench-DATE.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script, `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import peers, probe, procs, report, streams, systems, wrk  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
STREAM_CONNECTIONS = 32
TTFB_REQUESTS = 200
READY_TIMEOUT_S = 90  # LiteLLM's proxy takes several seconds to import and start


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass(frozen=True)
class Scenario:
    name: str
    connections: int
    stream: bool


@dataclass
class Running:
    """A started system: where it listens, what clients send it, the process whose group we measure."""

    system: systems.System
    port: int
    proc: procs.Proc
    headers: dict[str, str] = field(default_factory=dict)


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a client coroutine on uvloop when installed (its clients must not be the bottleneck)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def start_upstream(workdir: Path, stack: contextlib.ExitStack, chunks: int = 5, chunk_delay_ms: float = 0) -> Running:
    port = procs.free_port()
    argv = [
        sys.executable, str(BENCH_DIR / "fake_upstream.py"), "--port", str(port),
        "--chunks", str(chunks), "--chunk-delay-ms", str(chunk_delay_ms),
    ]
    proc = procs.Proc("upstream", argv, workdir / "upstream.log", cwd=workdir)
    stack.callback(proc.stop)
    running = Running(systems.SYSTEMS["direct"], port, proc)
    wait_ready(running)
    return running


def start_system(
    system: systems.System, upstream: Running, workdir: Path, stack: contextlib.ExitStack, gateway_config: Path | None
) -> Running:
    """Start one system in front of the upstream (direct is the upstream itself) and wait until ready."""
    upstream_url = f"http://127.0.0.1:{upstream.port}/v1"
    if system.argv is None:
        return Running(system, upstream.port, upstream.proc)
    own_dir = workdir / system.name
    own_dir.mkdir()
    setup = systems.Setup(procs.free_port(), upstream_url, own_dir, gateway_config)
    env = {**os.environ, **system.env, "BENCH_UPSTREAM_URL": upstream_url}
    proc = procs.Proc(system.name, system.argv(setup), workdir / f"{system.name}.log", cwd=own_dir, env=env)
    stack.callback(proc.stop)
    running = Running(system, setup.port, proc, system.headers(setup))
    try:
        wait_ready(running)
    except BaseException:
        proc.stop()
        raise
    return running


def wait_ready(running: Running) -> None:
    try:
        asyncio.run(
            probe.wait_ready(running.port, running.system.ready_path, READY_TIMEOUT_S, lambda: not running.proc.exited())
        )
    except probe.ProbeError as exc:
        raise BenchError(f"{running.proc.name} not ready: {exc}\n--- its log:\n{running.proc.log_tail()}") from None


def check(running: Running, model: str) -> None:
    """Fail unless the system answers a proper chat completion, plain and streamed."""
    try:
        asyncio.run(probe.check_chat(running.port, model, running.headers, running.system.expect))
    except (probe.ProbeError, OSError, asyncio.IncompleteReadError) as exc:
        raise BenchError(f"{running.system.name} answers wrongly: {exc}\n--- its log:\n{running.proc.log_tail()}") from None


def measure(running: Running, scenario: Scenario, model: str, duration_s: float, round_: int) -> report.Measurement:
    url = f"http://127.0.0.1:{running.port}/v1/chat/completions"
    body = probe.chat_body(model, scenario.stream).decode()
    pgid = running.proc.pid
    cpu_before = procs.cpu_seconds(pgid)
    result = wrk.run(url, body, scenario.connections, duration_s, running.headers)
    cpu = procs.cpu_seconds(pgid) - cpu_before
    rss = procs.rss_by_pid(pgid).values()
    return report.Measurement(
        system=running.system.name,
        scenario=scenario.name,
        round=round_,
        requests=result.requests,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        cpu_us_per_request=cpu / result.requests * 1e6 if result.requests else None,
        rss_mib=sum(rss) / 2**20,
        rss_worker_mib=max(rss, default=0) / 2**20,
    )


def warm_up(running: Running, model: str, connections: int, seconds: float) -> None:
    url = f"http://127.0.0.1:{running.port}/v1/chat/completions"
    for stream in (False, True):
        wrk.run(url, probe.chat_body(model, stream).decode(), connections, seconds, running.headers)


def scenarios(connections: list[int]) -> list[Scenario]:
    plain = [Scenario(f"chat c={c}", c, False) for c in connections]
    return [*plain, Scenario(f"stream c={STREAM_CONNECTIONS}", STREAM_CONNECTIONS, True)]


def _connections(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("connection counts must be positive")
    return values


def _systems(text: str) -> list[systems.System]:
    names = [systems.ALIASES.get(part.strip(), part.strip()) for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in systems.SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown systems {unknown}; known: {', '.join(systems.SYSTEMS)}")
    return [systems.SYSTEMS[n] for n in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 round, short warm-up, no soak (a smoke run)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10; 2 with --quick)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, medians reported (default 2; 1 with --quick)")
    parser.add_argument("--connections", type=_connections, default=[1, 32, 128], help="default 1,32,128")
    parser.add_argument(
        "--systems", type=_systems,
        help=f"comma-separated, from {','.join(systems.SYSTEMS)} (default: {','.join(systems.DEFAULT)})",
    )
    parser.add_argument(
        "--peers", action="store_true",
        help=f"also install (once, under bench/.peers/) and measure the peers: {', '.join(systems.PEERS)}",
    )
    parser.add_argument(
        "--gateway-config", type=Path,
        help="bench this gateway.yaml as the `gateway` and `gateway-2w` systems instead of the generated one; "
        "point its provider at ${BENCH_UPSTREAM_URL} and give it the route named by --model (and the routes "
        f"{systems.GAP_MODEL}, {systems.SOAK_MODEL} for the streaming checks)",
    )
    parser.add_argument("--model", default=systems.MODEL, help=f"model (route) clients send (default {systems.MODEL})")
    parser.add_argument("--chunks", type=int, default=5, help="SSE chunks per streamed reply (default 5)")
    parser.add_argument("--chunk-delay-ms", type=float, default=0, help="upstream pause between SSE chunks (default 0)")
    parser.add_argument(
        "--soak-streams", type=int,
        help="concurrent slow streams of the memory soak, per system (default 1000; 0 with --quick; 0 skips it)",
    )
    args = parser.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 10)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.warmup_s = 1 if args.quick else 3
    if args.soak_streams is None:
        args.soak_streams = 0 if args.quick else 1000
    if args.systems is None:
        args.systems = [systems.SYSTEMS[n] for n in systems.DEFAULT]
    if args.peers:
        args.systems += [systems.SYSTEMS[n] for n in systems.PEERS if systems.SYSTEMS[n] not in args.systems]
    if args.gateway_config is not None and not args.gateway_config.is_file():
        parser.error(f"--gateway-config: no such file: {args.gateway_config}")
    if args.chunks < 1:
        parser.error("--chunks must be at least 1")
    if args.soak_streams < 0:
        parser.error("--soak-streams must be 0 or more")
    return args


def metadata(args: argparse.Namespace, selected: list[systems.System]) -> dict:
    wrk_version = " ".join(subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[:3])
    commit = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "status", "--porcelain", "--", "gateway"], capture_output=True, text=True
    ).stdout.strip()
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{os.cpu_count()} CPUs, {cpu_model}, load average at start {os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "wrk": f"{wrk_version or '?'}, {wrk.THREADS} thread, timeout {wrk.TIMEOUT}",
        "commit": (commit or "none") + (" + uncommitted changes under gateway/" if dirty else ""),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "systems": ", ".join(f"{s.name} ({s.description})" for s in selected),
        "gateway_config": str(args.gateway_config or "generated (bench/systems.py)"),
        "upstream": f"{args.chunks} SSE chunks, {args.chunk_delay_ms:g} ms apart",
        "soak": (f"{args.soak_streams} concurrent streams of {systems.SOAK_CHUNKS} chunks "
                 f"{systems.SOAK_DELAY_MS} ms apart" if args.soak_streams else "skipped"),
    }
    versions = peers.versions() if any(s.kind == "peer" for s in selected) else {}
    if versions:
        meta["peers"] = ", ".join(f"{name} {version}" for name, version in versions.items())
    return meta


@dataclass
class Results:
    measurements: list[report.Measurement] = field(default_factory=list)
    ttfb: dict[str, probe.Ttfb] = field(default_factory=dict)
    gaps: dict[str, streams.Gaps] = field(default_factory=dict)
    soaks: dict[str, streams.Soak] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was left out, and why


def bench(args: argparse.Namespace, say: Callable[[str], None], results: Results) -> None:
    def drop(r: Running, why: str, running: list[Running]) -> None:
        """A peer that failed mid-run is left out of the rest; anything else stops the benchmark."""
        if r.system.kind != "peer":
            raise BenchError(f"{r.system.name}: {why}")
        results.notes.append(f"{r.system.name} left out after a failure: {why.splitlines()[0]}")
        say(f"bench: {results.notes[-1]}")
        running.remove(r)
        r.proc.stop()

    with tempfile.TemporaryDirectory(prefix="bodhi-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        procs.raise_open_files(max(8192, 3 * args.soak_streams + 1024))
        upstream = start_upstream(workdir, stack, args.chunks, args.chunk_delay_ms)
        running: list[Running] = []
        for system in args.systems:
            say(f"starting {system.name}")
            try:
                running.append(start_system(system, upstream, workdir, stack, args.gateway_config))
                check(running[-1], args.model)
            except (BenchError, OSError) as exc:
                if system.kind != "peer":
                    raise
                if running and running[-1].system is system:
                    running.pop().proc.stop()
                results.notes.append(f"{system.name} left out: {str(exc).splitlines()[0]}")
                say(f"bench: {results.notes[-1]}\n{exc}")
        if not running:
            raise BenchError("no system left to measure")
        say(f"warming up ({args.warmup_s} s each)")
        for r in list(running):
            try:
                warm_up(r, args.model, max(args.connections), args.warmup_s)
            except wrk.WrkError as exc:
                drop(r, str(exc), running)
        for round_ in range(args.rounds):
            for scenario in scenarios(args.connections):
                if not running:
                    raise BenchError("no system left to measure")
                shift = round_ % len(running)
                for r in running[shift:] + running[:shift]:
                    try:
                        m = measure(r, scenario, args.model, args.duration, round_)
                    except wrk.WrkError as exc:
                        drop(r, str(exc), running)
                        continue
                    say(f"round {round_ + 1}/{args.rounds}  {scenario.name:<12} {r.system.name:<14} "
                        f"{m.rps:>9,.0f} req/s  p50 {m.p50_ms:.2f} ms  errors {m.errors}")
                    results.measurements.append(m)
        for r in running:
            try:
                results.ttfb[r.system.name] = run_async(
                    probe.measure_ttfb(r.port, args.model, TTFB_REQUESTS, headers=r.headers))
                say(f"TTFB {r.system.name:<14} p50 {results.ttfb[r.system.name].p50_ms:.3f} ms")
            except (probe.ProbeError, OSError, asyncio.IncompleteReadError) as exc:
                results.notes.append(f"{r.system.name}: TTFB not measured: {exc!r}")
                say(f"bench: {results.notes[-1]}")
        for r in running:
            gaps = run_async(streams.measure_gaps(
                r.port, systems.GAP_MODEL, systems.GAP_DELAY_MS, systems.GAP_CHUNKS, r.headers))
            results.gaps[r.system.name] = gaps
            say(f"chunk gaps {r.system.name:<14} p50 {gaps.p50_ms or 0:.1f} ms  min {gaps.min_ms or 0:.1f} ms  "
                f"{'ok' if gaps.ok else 'NOT OK'} {'; '.join(gaps.errors)}")
        if args.soak_streams:
            for r in running:
                say(f"soak {r.system.name}: {args.soak_streams} streams of {systems.SOAK_CHUNKS} chunks "
                    f"{systems.SOAK_DELAY_MS} ms apart")
                soak = run_async(streams.soak(
                    r.port, systems.SOAK_MODEL, systems.SOAK_CHUNKS, r.proc.pid, r.headers, args.soak_streams))
                results.soaks[r.system.name] = soak
                say(f"soak {r.system.name:<14} ok {soak.ok}/{soak.streams}  errors {dict(soak.errors) or 0}  "
                    f"RSS {soak.rss_before_mib:.0f} -> peak {soak.rss_peak_mib:.0f} MiB "
                    f"(+{soak.growth_mib:.0f})  {soak.wall_s:.1f} s")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop our processes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if not wrk.available():
        say("bench: wrk is not installed; install it with: apt-get install -y wrk")
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even when started in the background
    results = Results()
    try:
        if args.peers:
            failed = peers.install([s.name for s in args.systems if s.kind == "peer"], say)
            results.notes += [f"{name} left out: install failed: {why.splitlines()[0]}" for name, why in failed.items()]
        selected = []
        for system in args.systems:
            why = system.unavailable()
            if why is None:
                selected.append(system)
            elif not any(note.startswith(f"{system.name} left out") for note in results.notes):
                results.notes.append(f"{system.name} left out: {why}")
                say(f"bench: {results.notes[-1]}")
        args.systems = selected
        meta = metadata(args, selected)
        bench(args, say, results)
    except (BenchError, probe.ProbeError, wrk.WrkError, OSError, asyncio.IncompleteReadError) as exc:
        say(f"bench: error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("bench: interrupted")
        return 130
    document = report.build(meta, results.measurements, results.ttfb, results.gaps, results.soaks, results.notes)
    print(report.text(document))
    paths = report.write(RESULTS_DIR, time.strftime("bench-%Y%m%d-%H%M%S"), document)
    print("\nwritten: " + ", ".join(str(p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
