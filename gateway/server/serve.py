"""`gateway serve`: compile the config, refuse unsafe binds, run the engine, reload on SIGHUP."""

from __future__ import annotations

import asyncio
import errno
import gc
import multiprocessing
import os
import signal
import sys


from ..config.compiler import Runtime, compile_file
from ..errors import ConfigErrors
from ..logs import configure, get_logger
from ..store.tasks import spawn
from .app import create_app
from .bind import StartupError, check_bind
from .drain import DRAIN
from .engines import EngineError, engine
from .reload import GraphHolder, Reloader, log_warnings
from ..request_stats import STATS
from .versioning import Inputs, record_startup, startup_graph

log = get_logger("gateway.serve")

# Allocations (minus frees) of container objects between two young collections of Python's
# cycle collector; CPython's default is 700. A proxy's requests allocate and free thousands of
# short-lived objects; at 32 concurrent requests the live ones crossed 700 all the time, so the
# collector ran ~250 times a second and promoted in-flight objects to older generations, whose
# full collections then walked the whole heap (28 ms each). Measured with gc.callbacks under wrk
# at c=32 (11 s, ~35,000 requests): 1.05 s in the collector by default, 0.06 s at 10,000.
# Cyclic garbage is still collected, once 10,000 such objects have piled up.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Collect cycles less often in a serving process (see GC_YOUNG_THRESHOLD); the older
    generations keep their default ratios."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def serve(config_path: str, host: str | None = None, port: int | None = None,
          workers: int | None = None, watch: bool = True, environment: str | None = None,
          engine_name: str | None = None, log_level: str | None = None) -> int:
    configure(log_level or "info", final=False)  # until the config has said server.log_level
    runtime = Runtime(listen_host=host, listen_port=port)  # the command line's, if given
    try:
        graph, loaded = startup_graph(config_path, runtime, environment)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(err, file=sys.stderr)
        print(f"{config_path}: not started: {len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    configure(log_level or graph.settings.log_level)
    host = host or graph.settings.host
    port = port if port is not None else graph.settings.port
    workers = workers or graph.settings.workers
    try:
        check_bind(graph, host)
    except StartupError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    if host in ("0.0.0.0", "::", "") and not graph.settings.allowed_hosts:
        log.warning("allowed_hosts_unset", bind=host,
                    hint="only requests addressed to localhost, 127.0.0.1 or ::1 are answered "
                         "(421 otherwise): list the names clients use in server.allowed_hosts")
    try:
        config = engine(engine_name or graph.settings.engine, host, port, graph.settings)
    except EngineError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    try:
        sockets = config.sockets()  # bound before "serving" is logged, so a busy port is one line
    except OSError as exc:
        print(f"gateway: cannot listen on {config.bind[0]}: {_bind_reason(exc)}", file=sys.stderr)
        return 1
    inputs = Inputs.of(loaded)  # the files to watch: the config and what it includes
    graph = record_startup(graph, loaded)  # only now: a start that cannot listen records none
    if workers == 1:
        _run_worker(config_path, graph, runtime, config, sockets, watch, environment, inputs,
                    host=host)
        return 0
    os.environ["GATEWAY_WORKERS"] = str(workers)  # each worker enforces its share of limits
    STATS.share_across_workers()  # one /metrics scrape counts every worker's requests
    ctx = multiprocessing.get_context("fork")
    children = [
        ctx.Process(target=_run_worker, args=(config_path, graph, Runtime(listen_host=host,
                                              listen_port=port), config, sockets, watch,
                                              environment, inputs), kwargs={"index": i, "host": host})
        for i in range(workers)
    ]
    for child in children:
        child.start()
    _wait_for_children(children)
    return 0


def _run_worker(config_path, graph, runtime, config, sockets, watch, environment=None,
                inputs=None, index: int | None = None, host: str | None = None) -> None:
    if index is not None:  # a forked worker: its own rows in state.db; compile again,
        os.environ["GATEWAY_WORKER_INDEX"] = str(index)  # against its own runtime state
        graph = compile_file(config_path, version=graph.version, runtime=runtime,
                             environment=environment)
    holder = GraphHolder(graph)
    reloader = Reloader(config_path, runtime, holder, environment=environment, inputs=inputs,
                        bind_host=host)
    app = create_app(reloader, watch_config=watch)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        on_signal = _signal_handler(loop, stop, reloader)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, on_signal, signum)
        log_warnings(graph)
        tune_gc()
        log.info("serving", config=config_path, bind=config.bind, engine=config.name,
                 version=graph.version, routes=len(graph.routes), pid=os.getpid())
        await config.serve(app, sockets, stop)
        log.info("stopped", pid=os.getpid())

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def _signal_handler(loop, stop: asyncio.Event, reloader: Reloader):
    """SIGHUP reloads. SIGTERM or SIGINT drains (server.drain_timeout) and then stops the
    engine; a second one stops it at once."""
    draining: list[asyncio.Task] = []

    async def drain_then_stop() -> None:
        try:
            await DRAIN.run(reloader.holder.current.settings.drain_timeout)
        finally:
            stop.set()

    def on_signal(signum: int) -> None:
        if signum == signal.SIGHUP:
            spawn(reloader.reload("signal"), "reload:signal")
        elif draining:
            stop.set()
        else:
            draining.append(loop.create_task(drain_then_stop()))

    return on_signal


def _bind_reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address in use (another process listens there; choose another --port)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; choose another --port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this machine (check --host / server.host)"
    return exc.strerror or str(exc)


def _wait_for_children(children) -> None:
    def forward(signum, _frame):
        for child in children:
            if child.is_alive():
                os.kill(child.pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    for child in children:
        child.join()
        STATS.worker_exited(child.pid)
