"""The gateway's own cost per request, measured in one process, for A/B comparisons of the hot path.

`make bench` measures whole servers under wrk, which on a shared 2-core machine moves with the
load of everything else running. This driver takes the HTTP server and the client out: it builds
the app as `gateway serve` does (create_app over a compiled config, its lifespan running), calls it
through ASGI directly (a POST is a scope, one body message and the send callback), in front of
bench/fake_upstream.py in its own process, and reports the CPU time of this process per request.
Under callgrind it counts the instructions per request instead, which do not depend on what else
the machine is doing:

    python bench/hotpath.py --config prod --requests 2000            # CPU µs/request
    python bench/hotpath.py --config prod --profile > prod.txt       # cProfile of those requests
    python bench/hotpath.py --config prod --profile --profile-out prod.prof  # the raw stats too
    python bench/hotpath.py --config prod --requests 500 --callgrind # instructions/request

With ``--callgrind`` the driver runs itself under ``valgrind --tool=callgrind`` with instrumentation
off until the measured requests start and off again after them (a two-function C shim, built with
cc against valgrind's callgrind.h, makes the client requests), so start-up and warm-up cost nothing.

``--serve`` measures a real ``gateway serve`` process instead (the HTTP server, start-up imports
and resident memory included): this process is its client, and the server's CPU time per request
comes from /proc, or its instructions per request from callgrind (``--serve --callgrind``, counting
switched on with callgrind_control after the warm-up).

The configs are bench/systems.py's plain and production-shaped ones (`--config plain|prod`), written
here whole so that the same text runs against older commits too.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import contextlib
import ctypes
import hashlib
import io
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROD_KEY = "sk-bench-prod-0123456789abcdef"

PLAIN = """\
version: 1
providers:
  up: {{type: openai-compatible, base_url: "{url}", max_connections: 64}}
routes:
  bench-model: {{target: {{provider: up, model: fake-model}}}}
observability: {{request_log: false}}
"""

PROD = """\
version: 1
server: {{state: memory}}
providers:
  primary: {{type: openai-compatible, base_url: "{url}", max_connections: 64}}
  secondary: {{type: openai-compatible, base_url: "{url}", max_connections: 64}}
  other: {{type: openai-compatible, base_url: "{url}", max_connections: 64}}
routes:
  bench-model:
    conditional:
      rules:
        - when: {{metadata.tier: premium}}
          then:
            fallback:
              targets:
                - target: {{provider: primary, model: fake-model}}
                - target: {{provider: secondary, model: fake-model}}
      default: {{target: {{provider: other, model: fake-model}}}}
keys:
  bench:
    key_sha256: {key_sha256}
    routes: ["*"]
    metadata: {{team: bench}}
    limits: {{requests_per_minute: 10000000, tokens_per_minute: 100000000000}}
    budget: {{usd: 1000000000, period: monthly}}
pricing:
  primary/fake-model: {{input: 0.15, output: 0.6}}
  secondary/fake-model: {{input: 0.15, output: 0.6}}
plugins:
  - name: pii-redact
    config: {{mode: log}}
  - name: output-guard
    config: {{deny: ["(?i)bench-deny-rule-that-never-matches"], on_fail: flag}}
observability: {{request_log: true, metrics: true}}
"""

BODY = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "Say hello."}],
                   "max_tokens": 16}).encode()


def config_text(args: argparse.Namespace, url: str) -> str:
    """The config measured; --request-log on|off overrides its observability.request_log."""
    text = (PROD if args.config == "prod" else PLAIN).format(
        url=url, key_sha256=hashlib.sha256(PROD_KEY.encode()).hexdigest())
    if args.request_log is not None:
        value = "true" if args.request_log == "on" else "false"
        text = text.replace("request_log: false", f"request_log: {value}").replace(
            "request_log: true", f"request_log: {value}")
    return text


SHIM = """\
#include <valgrind/callgrind.h>
void hotpath_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void hotpath_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


def build_shim(directory: Path) -> Path:
    """The C shim whose two functions switch callgrind's counting on and off."""
    source, library = directory / "shim.c", directory / "shim.so"
    source.write_text(SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)], check=True)
    return library


def under_callgrind(argv: list[str]) -> None:
    """Run this script again under callgrind with the shim; print its result with the
    instructions per measured request added."""
    with tempfile.TemporaryDirectory() as directory:
        shim = build_shim(Path(directory))
        out = Path(directory) / "callgrind.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             sys.executable, __file__, *argv, "--shim", str(shim)],
            capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        # The dump written at exit holds what was counted since the zeroing: the measured requests.
        totals = next(line for line in out.read_text().splitlines() if line.startswith("totals:"))
        result["instructions_per_request"] = int(totals.split()[1]) // max(result["requests"], 1)
        print(json.dumps(result))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_upstream(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(BENCH_DIR / "fake_upstream.py"), "--port", str(port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the fake upstream did not start within 30 s")


class Lifespan:
    """The ASGI lifespan protocol, driven by hand: what hypercorn does at start-up and shutdown."""

    def __init__(self, app: Any):
        self.app = app
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def _expect(self, kind: str) -> None:
        message = await asyncio.wait_for(self.outbox.get(), 30)
        if message["type"] != kind:
            raise SystemExit(f"lifespan: {message}")

    async def __aenter__(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        await self._expect("lifespan.startup.complete")

    async def __aexit__(self, *exc: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self._expect("lifespan.shutdown.complete")


async def post(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
        "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "state": {},
    }
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # the client stays connected
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status, parts = 0, []

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(parts)


async def run(args: argparse.Namespace, url: str, workdir: Path) -> dict:
    from gateway.config.compiler import Runtime, compile_bytes
    from gateway.logs import configure
    from gateway.server.app import create_app
    from gateway.server.reload import GraphHolder, Reloader

    # Logs as `gateway serve` under the bench writes them: JSON lines to a file.
    sys.stderr = open(workdir / "gateway.log", "w")  # noqa: SIM115  (closed with the directory)
    configure("info", json=True)

    text = config_text(args, url)
    path = workdir / "gateway.yaml"
    path.write_text(text)
    runtime = Runtime()
    graph = compile_bytes(text.encode(), str(path), version=1, runtime=runtime)
    app = create_app(Reloader(str(path), runtime, GraphHolder(graph)), watch_config=False)
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(BODY)).encode())]
    if args.config == "prod":
        headers += [(b"authorization", f"Bearer {PROD_KEY}".encode()),
                    (b"x-gateway-metadata", b'{"tier": "premium"}')]
    body = BODY if not args.stream else BODY[:-1] + b', "stream": true}'

    async def batch(n: int) -> None:
        async def worker(count: int) -> None:
            for _ in range(count):
                status, answer = await post(app, headers, body)
                if status != 200:
                    raise SystemExit(f"the gateway answered {status}: {answer[:300]!r}")

        share, rest = divmod(n, args.concurrency)
        await asyncio.gather(*(worker(share + (i < rest)) for i in range(args.concurrency)))

    async with Lifespan(app):
        await batch(args.warmup)
        profiler = cProfile.Profile() if args.profile else None
        shim = ctypes.CDLL(args.shim) if args.shim else None
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        if shim:
            shim.hotpath_start()
        await batch(args.requests)
        if shim:
            shim.hotpath_stop()
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - started
    await runtime.clients.close()
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.lines)
        if args.profile_out:
            profiler.dump_stats(args.profile_out)
        print(out.getvalue())
    n = max(args.requests, 1)
    return {"config": args.config, "stream": args.stream, "requests": args.requests,
            "cpu_us_per_request": round(cpu / n * 1e6, 1), "wall_us_per_request": round(wall / n * 1e6, 1)}


async def drive(port: int, args: argparse.Namespace, n: int) -> None:
    """``n`` requests from this process to a server on ``port``, over ``args.concurrency``
    keep-alive connections."""
    import aiohttp

    headers = {"Content-Type": "application/json"}
    if args.config == "prod":
        headers |= {"Authorization": f"Bearer {PROD_KEY}", "x-gateway-metadata": '{"tier": "premium"}'}
    body = BODY if not args.stream else BODY[:-1] + b', "stream": true}'
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def worker(count: int) -> None:
            for _ in range(count):
                async with session.post(url, data=body, headers=headers) as r:
                    answer = await r.read()
                    if r.status != 200:
                        raise SystemExit(f"the gateway answered {r.status}: {answer[:300]!r}")

        share, rest = divmod(n, args.concurrency)
        await asyncio.gather(*(worker(share + (i < rest)) for i in range(args.concurrency)))


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=600)


def serve(args: argparse.Namespace, url: str, workdir: Path) -> dict:
    """The real `gateway serve` on a free port, measured from outside."""
    port = free_port()
    text = config_text(args, url)
    # The config in a folder of its own, the log outside it (as bench/run.py does): the server
    # watches its config's folder, and a log line per request written there wakes the watcher
    # per request (40-85 us of CPU per request with the request log on, which turns that line on).
    own = workdir / "gateway"
    own.mkdir()
    path = own / "gateway.yaml"
    path.write_text(text)
    argv = [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())",
            "serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    out = workdir / "callgrind.out"
    if args.callgrind:
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *argv]
    with open(workdir / "gateway.log", "w") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=log, cwd=own)
    try:
        deadline = time.monotonic() + 600  # minutes under valgrind
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gateway serve did not start:\n" + (workdir / "gateway.log").read_text()[-3000:])
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        asyncio.run(drive(port, args, args.warmup))
        if args.callgrind:
            callgrind_control("--instr=on", str(server.pid))
            callgrind_control("--zero", str(server.pid))
        cpu = proc_cpu_s(server.pid)
        asyncio.run(drive(port, args, args.requests))
        cpu = proc_cpu_s(server.pid) - cpu
        result = {"config": args.config, "stream": args.stream, "requests": args.requests, "serve": True,
                  "cpu_us_per_request": round(cpu / max(args.requests, 1) * 1e6, 1),
                  "rss_mib": proc_rss_mib(server.pid)}
        if args.callgrind:
            callgrind_control("--dump", str(server.pid))
            dumps = sorted(workdir.glob("callgrind.out.*"), key=lambda f: f.stat().st_mtime)
            totals = next(line for line in dumps[-1].read_text().splitlines() if line.startswith("totals:"))
            result["instructions_per_request"] = int(totals.split()[1]) // max(args.requests, 1)
        return result
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=("plain", "prod"), default="plain")
    parser.add_argument("--stream", action="store_true", help="streamed answers (5 chunks)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--request-log", choices=("on", "off"),
                        help="override the config's observability.request_log (A/B of its cost)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the measured requests")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--profile-out", help="with --profile: also write the raw stats here "
                        "(pstats; for comparing two configs function by function)")
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions per request under valgrind's callgrind")
    parser.add_argument("--shim", help=argparse.SUPPRESS)  # set by --callgrind for the run under valgrind
    parser.add_argument("--serve", action="store_true",
                        help="measure a real `gateway serve` process from outside")
    args = parser.parse_args()
    if args.serve:
        port = free_port()
        upstream = start_upstream(port)
        try:
            with tempfile.TemporaryDirectory() as workdir:
                print(json.dumps(serve(args, f"http://127.0.0.1:{port}/v1", Path(workdir))))
        finally:
            upstream.terminate()
            upstream.wait(10)
        return
    if args.callgrind:
        under_callgrind([a for a in sys.argv[1:] if a != "--callgrind"])
        return
    port = free_port()
    upstream = start_upstream(port)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            try:
                import uvloop
                loop_factory = uvloop.new_event_loop
            except ImportError:
                loop_factory = None
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                result = runner.run(run(args, f"http://127.0.0.1:{port}/v1", Path(workdir)))
    finally:
        upstream.terminate()
        upstream.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
