"""Benchmark driver: how much does the gateway cost on top of its upstream?

Starts the fake upstream and every system under test on 127.0.0.1, checks that each answers a correct
chat completion (plain and streamed), warms them up, then measures with wrk in interleaved rounds
(every scenario runs each system in turn, the order rotating per round) and reports medians. Per
run it also records the system's CPU time per request and its RSS afterwards, from /proc. Last, a
one-connection probe measures time to first byte of streamed replies. Every process it starts is
stopped by its process group, on errors and Ctrl-C too.

    python bench/run.py [--quick] [--systems direct,bare,gateway] [--connections 1,32,128] ...

Results: one table on stdout, and bench/results/bench-DATE.{json,md}.
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
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script, `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import probe, procs, report, systems, wrk  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
STREAM_CONNECTIONS = 32
TTFB_REQUESTS = 200
READY_TIMEOUT_S = 60


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass(frozen=True)
class Scenario:
    name: str
    connections: int
    stream: bool


@dataclass
class Running:
    """A started system: where it listens and the process whose group we measure."""

    system: systems.System
    port: int
    proc: procs.Proc


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
    if system.argv is None:
        return Running(system, upstream.port, upstream.proc)
    upstream_url = f"http://127.0.0.1:{upstream.port}/v1"
    own_dir = workdir / system.name
    own_dir.mkdir()
    setup = systems.Setup(procs.free_port(), upstream_url, own_dir, gateway_config)
    env = {**os.environ, "BENCH_UPSTREAM_URL": upstream_url}
    proc = procs.Proc(system.name, system.argv(setup), workdir / f"{system.name}.log", cwd=own_dir, env=env)
    stack.callback(proc.stop)
    running = Running(system, setup.port, proc)
    wait_ready(running)
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
        asyncio.run(probe.check_chat(running.port, model))
    except (probe.ProbeError, OSError, asyncio.IncompleteReadError) as exc:
        raise BenchError(f"{running.system.name} answers wrongly: {exc}\n--- its log:\n{running.proc.log_tail()}") from None


def measure(running: Running, scenario: Scenario, model: str, duration_s: float, round_: int) -> report.Measurement:
    url = f"http://127.0.0.1:{running.port}/v1/chat/completions"
    body = probe.chat_body(model, scenario.stream).decode()
    pgid = running.proc.pid
    cpu_before = procs.cpu_seconds(pgid)
    result = wrk.run(url, body, scenario.connections, duration_s)
    cpu = procs.cpu_seconds(pgid) - cpu_before
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
        rss_mib=procs.rss_bytes(pgid) / 2**20,
    )


def warm_up(running: Running, model: str, connections: int, seconds: float) -> None:
    url = f"http://127.0.0.1:{running.port}/v1/chat/completions"
    for stream in (False, True):
        wrk.run(url, probe.chat_body(model, stream).decode(), connections, seconds)


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
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in systems.SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown systems {unknown}; known: {', '.join(systems.SYSTEMS)}")
    return [systems.SYSTEMS[n] for n in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 round, short warm-up (a smoke run)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 10; 2 with --quick)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, medians reported (default 2; 1 with --quick)")
    parser.add_argument("--connections", type=_connections, default=[1, 32, 128], help="default 1,32,128")
    parser.add_argument(
        "--systems", type=_systems, default=list(systems.SYSTEMS.values()),
        help=f"comma-separated, from {','.join(systems.SYSTEMS)} (default: all)",
    )
    parser.add_argument(
        "--gateway-config", type=Path,
        help="bench this gateway.yaml instead of a generated pass-through; point its provider at "
        "${BENCH_UPSTREAM_URL} and give it the route named by --model",
    )
    parser.add_argument("--model", default=systems.MODEL, help=f"model (route) clients send (default {systems.MODEL})")
    parser.add_argument("--chunks", type=int, default=5, help="SSE chunks per streamed reply (default 5)")
    parser.add_argument("--chunk-delay-ms", type=float, default=0, help="upstream pause between SSE chunks (default 0)")
    args = parser.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 10)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.warmup_s = 1 if args.quick else 3
    if args.gateway_config is not None and not args.gateway_config.is_file():
        parser.error(f"--gateway-config: no such file: {args.gateway_config}")
    if args.chunks < 1:
        parser.error("--chunks must be at least 1")
    return args


def metadata(args: argparse.Namespace) -> dict:
    wrk_version = " ".join(subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[:3])
    commit = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{os.cpu_count()} CPUs, {cpu_model}",
        "python": platform.python_version(),
        "wrk": f"{wrk_version or '?'}, {wrk.THREADS} thread, timeout {wrk.TIMEOUT}",
        "commit": commit or "none",
        "duration_s": args.duration,
        "rounds": args.rounds,
        "systems": ", ".join(f"{s.name} ({s.description})" for s in args.systems),
        "gateway_config": str(args.gateway_config or "generated pass-through"),
        "upstream": f"{args.chunks} SSE chunks, {args.chunk_delay_ms:g} ms apart",
    }


def bench(args: argparse.Namespace) -> tuple[list[report.Measurement], dict[str, probe.Ttfb]]:
    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bodhi-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        upstream = start_upstream(workdir, stack, args.chunks, args.chunk_delay_ms)
        running = []
        for system in args.systems:
            say(f"starting {system.name}")
            running.append(start_system(system, upstream, workdir, stack, args.gateway_config))
            check(running[-1], args.model)
        say(f"warming up ({args.warmup_s} s each)")
        for r in running:
            warm_up(r, args.model, max(args.connections), args.warmup_s)
        measurements = []
        for round_ in range(args.rounds):
            shift = round_ % len(running)
            order = running[shift:] + running[:shift]
            for scenario in scenarios(args.connections):
                for r in order:
                    m = measure(r, scenario, args.model, args.duration, round_)
                    say(f"round {round_ + 1}/{args.rounds}  {scenario.name:<12} {r.system.name:<10} "
                        f"{m.rps:>9,.0f} req/s  p50 {m.p50_ms:.2f} ms  errors {m.errors}")
                    measurements.append(m)
        ttfb = {}
        for r in running:
            ttfb[r.system.name] = asyncio.run(probe.measure_ttfb(r.port, args.model, TTFB_REQUESTS))
            say(f"TTFB {r.system.name:<10} p50 {ttfb[r.system.name].p50_ms:.3f} ms")
    return measurements, ttfb


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop our processes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not wrk.available():
        print("bench: wrk is not installed; install it with: apt-get install -y wrk", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    meta = metadata(args)
    try:
        measurements, ttfb = bench(args)
    except (BenchError, probe.ProbeError, wrk.WrkError, OSError, asyncio.IncompleteReadError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    rows = report.summarise(measurements, ttfb)
    print(report.text_table(rows))
    paths = report.write(RESULTS_DIR, time.strftime("bench-%Y%m%d-%H%M%S"), rows, measurements, meta)
    print("\nwritten: " + ", ".join(str(p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
