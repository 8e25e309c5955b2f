"""The gateway as `gateway serve` builds it, in this process: the config file loaded and its
startup version recorded, the app's lifespan running (config watcher, health checks, usage
writer) on its own event loop, and requests sent through Starlette's TestClient (no sockets)
to http://127.0.0.1. Its responses are httpx2's (httpx's interface; the official openai
client uses httpx2 too). The default for server tests; tests/gateway_process.py starts a real
`gateway serve` where the process itself (signals, workers, sockets) is the point."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx
import httpx2
import openai
import structlog
from starlette.testclient import TestClient

from gateway.config.compiler import Runtime
from gateway.logs import configure
from gateway.server.app import create_app
from gateway.server.engines import engine
from gateway.request_stats import STATS
from gateway.server.reload import GraphHolder, Reloader
from gateway.server.versioning import Inputs, record_startup, startup_graph

from . import loopback
from .background_app import free_port
from .gateway_process import RequestMethods


class LogFile:
    """The gateway's structlog output (JSON lines, secrets scrubbed, as `gateway serve` writes
    them) sent to a file for the length of a test; the previous set-up is restored after."""

    def __init__(self, path: Path):
        self.path = path
        self._saved: dict[str, Any] | None = None
        self._file = None

    def open(self, level: str) -> None:
        if self._saved is None:
            self._saved = structlog.get_config()
            self._file = open(self.path, "ab")
        configure(level, json=True, final=False)
        structlog.configure(logger_factory=structlog.BytesLoggerFactory(self._file))

    def text(self) -> str:
        return self.path.read_text(errors="replace") if self.path.exists() else ""

    def close(self) -> None:
        if self._saved is not None:
            structlog.configure(**self._saved)
            self._file.close()
            self._saved = None


class InProcessGateway(RequestMethods):
    """One gateway on ``config_path``; the request methods are httpx.Client's (paths relative
    to http://127.0.0.1), without ``timeout`` (the app answers in this process)."""

    base_url = "http://127.0.0.1"

    def __init__(self, config_path: Path, logs: LogFile, *, environment: str | None = None,
                 watch: bool = True):
        self.config_path = config_path
        self.environment = environment
        self.watch = watch
        self.logs = logs
        self.reloader: Reloader | None = None
        self.client: TestClient | None = None
        self.app = None
        self._listening: tuple | None = None  # (stop event, serving future)
        self.port: int | None = None  # once listening

    def start(self) -> "InProcessGateway":
        """Compile and record the startup version, then run the app's start-up, as serve does."""
        runtime = Runtime()
        path = str(self.config_path)
        graph, loaded = startup_graph(path, runtime, self.environment)
        self.logs.open(graph.settings.log_level)
        graph = record_startup(graph, loaded)
        STATS._build()  # /metrics counts start at 0, as in a new process (STATS is global)
        self.reloader = Reloader(path, runtime, GraphHolder(graph), environment=self.environment,
                                 inputs=Inputs.of(loaded), bind_host=graph.settings.host)
        self.app = app = create_app(self.reloader, watch_config=self.watch)
        self.client = TestClient(app, base_url=self.base_url, client=("127.0.0.1", 50000),
                                 raise_server_exceptions=False)
        self.client.__enter__()
        return self

    def listen(self, engine_name: str | None = None) -> str:
        """Serve the app on a free loopback port too, for what needs a socket (`gateway
        history --url`, an engine's own limits): the engine (the configured one by default)
        as serve runs it, on the app's event loop. The lifespan stays the TestClient's.
        Returns the base URL; ``port`` is set."""
        assert self.client is not None and self._listening is None
        settings = self.reloader.holder.current.settings
        self.port = port = free_port()
        server = engine(engine_name or settings.engine, "127.0.0.1", port, settings)
        portal = self.client.portal
        stop = portal.call(_event)
        serving = portal.start_task_soon(server.serve, _without_lifespan(self.app),
                                         server.sockets(), stop)
        self._listening = (stop, serving)
        url = f"http://127.0.0.1:{port}"
        poll(lambda: _answers(url), bool, 5, f"{url} not listening")
        return url

    def stop(self) -> None:
        """The app's shutdown: usage and counters flushed, upstream sessions closed."""
        if self._listening is not None:
            (stop, serving), self._listening = self._listening, None
            self.client.portal.call(stop.set)
            serving.result(10)
        if self.client is not None:
            client, self.client = self.client, None
            client.__exit__(None, None, None)

    def log(self) -> str:
        return self.logs.text()

    def request(self, method: str, path: str, **kwargs) -> httpx2.Response:
        kwargs.pop("timeout", None)
        assert self.client is not None, "the gateway is not running"
        return self.client.request(method, path, **kwargs)

    def stream(self, method: str, path: str, **kwargs):
        kwargs.pop("timeout", None)
        assert self.client is not None, "the gateway is not running"
        return self.client.stream(method, path, **kwargs)

    def openai(self, api_key: str = "unused") -> openai.OpenAI:
        """The official client, sending through this gateway's transport. Its own httpx
        client: closing it (``with client:``) leaves the gateway's open."""
        assert self.client is not None, "the gateway is not running"
        http = httpx2.Client(transport=self.client._transport, base_url=self.base_url)
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=api_key, max_retries=0,
                             http_client=http)

    def wait_for_version(self, version: int, timeout: float = 5.0) -> dict:
        return poll(lambda: self.get("/admin/config").json(),
                    lambda info: info["version"] >= version, timeout,
                    f"config version {version} not applied")


async def _event() -> asyncio.Event:
    return asyncio.Event()  # made on the app's event loop


def _without_lifespan(app):
    """``app`` for a second server: lifespan events are acknowledged, not run again."""
    async def serve(scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)
        while True:
            message = await receive()
            kind = message["type"].rpartition(".")[2]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return

    return serve


def _answers(url: str) -> bool:
    try:
        return loopback.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def poll(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 5.0,
         what: str = "condition not met", every: float = 0.02) -> Any:
    """``read()`` until ``done(value)``, at most ``timeout`` seconds; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} within {timeout}s: {value!r}")
        time.sleep(every)


def while_sending(send: Callable[[], None], threads: int, action: Callable[[], None],
                  limit: float = 60.0) -> None:
    """Run ``action`` while ``threads`` threads call ``send()`` over and over (traffic during
    a reload, say); they stop when it returns, or after ``limit`` seconds. An exception in
    ``action`` or any ``send`` is raised here."""
    stop = threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + limit
        while not stop.is_set() and time.monotonic() < deadline:
            send()

    with ThreadPoolExecutor(threads) as pool:
        loops = [pool.submit(loop) for _ in range(threads)]
        try:
            action()
        finally:
            stop.set()
        for done in loops:
            done.result()
