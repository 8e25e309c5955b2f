"""Promises about streams and shutdown (issue 11, items 17-22; issue 12, item 2), each checked
against upstreams on 127.0.0.1 that fail on purpose: streams through the app in process, the
engines' own promises (disconnects, slow headers, connection cap) with the app in process
served by each engine on a loopback port, and a busy port and SIGTERM against the real
`gateway serve`."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from gateway.server.engines import ENGINES

from .. import loopback
from ..fake_upstream import Behaviour
from ..inprocess_gateway import poll
from .raw_upstream import SSE_CHUNKED, SSE_CLOSE_DELIMITED, RawUpstream, event, http_chunk

RAW_CONFIG = """
version: 1
defaults:
  retry: {{attempts: 1}}
  timeout: {{idle: {idle}}}
providers:
  raw: {{type: openai-compatible, base_url: "{base_url}"}}
routes:
{routes}
"""


def raw_config(upstream: RawUpstream, *models: str, timeout: str = "10s") -> str:
    routes = "\n".join(f"  {m}: {{target: {{provider: raw, model: {m}}}}}" for m in models)
    return RAW_CONFIG.format(base_url=upstream.base_url, routes=routes, idle=timeout)


def stream(gw, model: str) -> list[str]:
    """The data of every SSE event the client receives, parsed as a client would."""
    with gw.stream("POST", "/v1/chat/completions", timeout=15,
                   json={"model": model, "stream": True,
                         "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200
        body = r.read().decode()
    events, data = [], []
    for line in body.replace("\r\n", "\n").split("\n"):
        if not line:
            if data:
                events.append("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
    assert not data, f"the stream ended inside an event: {body!r}"
    return events


def request_logs(gw, model: str | None) -> list[dict]:
    lines = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == "request" and e.get("route") == model]


def final_error(events: list[str]) -> str:
    last = json.loads(events[-1])  # a JSON object a client can read, not a broken line
    return last["error"]["message"]


def test_an_upstream_cut_mid_line_ends_with_a_readable_error_event(gateway_app):
    cut = [SSE_CHUNKED, http_chunk(event("Hel")), http_chunk(b'data: {"id": "chatcmpl-raw", "cho')]
    with RawUpstream({"cut": cut}) as upstream:
        gw = gateway_app(raw_config(upstream, "cut"))
        events = stream(gw, "cut")
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Hel"
    assert final_error(events).startswith("stream interrupted: upstream connection closed "
                                          "mid-stream after ")


def test_a_stream_closed_without_done_or_finish_reason_is_an_error(gateway_app):
    scripts = {
        "nodone": [SSE_CLOSE_DELIMITED, event("Hel"), event("lo")],
        # complete without [DONE]: a finish_reason says the answer is whole
        "finished": [SSE_CLOSE_DELIMITED, event("Hello"), event("", finish="stop")],
    }
    with RawUpstream(scripts) as upstream:
        gw = gateway_app(raw_config(upstream, "nodone", "finished"))
        cut, whole = stream(gw, "nodone"), stream(gw, "finished")
    assert "without [DONE] or a finish_reason" in final_error(cut)
    assert [json.loads(e)["choices"][0]["finish_reason"] for e in whole] == [None, "stop"]
    [failed] = request_logs(gw, "nodone")
    assert failed["status"] == 502 and failed["outcome"] == "interrupted"
    [ok] = request_logs(gw, "finished")
    assert ok["status"] == 200 and ok["error"] is None and "outcome" not in ok


def test_interrupted_streams_are_logged_as_failed_in_the_gateways_words(gateway_app):
    scripts = {
        "cut": [SSE_CHUNKED, http_chunk(event("Hel")), http_chunk(b"data: {")],
        "stalled": [SSE_CLOSE_DELIMITED, event("Hel"), 3.0],
    }
    with RawUpstream(scripts) as upstream:
        gw = gateway_app(raw_config(upstream, "cut", "stalled", timeout="1s"))
        stream(gw, "cut")
        stalled = stream(gw, "stalled")
    assert final_error(stalled) == "stream interrupted: no data from upstream for 1s (timeouts.idle)"
    [cut] = request_logs(gw, "cut")
    assert cut["status"] == 502 and cut["outcome"] == "interrupted"
    assert re.fullmatch(r"stream interrupted: upstream connection closed mid-stream after \d+ bytes",
                        cut["error"])
    assert "TransferEncodingError" not in gw.log() and "ClientPayloadError" not in gw.log()
    [idle] = request_logs(gw, "stalled")
    assert idle["status"] == 502 and "no data from upstream for 1s" in idle["error"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path, engine):
    config = tmp_path / "gateway.yaml"
    config.write_text("version: 1\nproviders: {demo: {type: mock}}\n"
                      "routes: {chat: {target: {provider: demo, model: m}}}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "-c", str(config), "--port", str(port),
             "--engine", engine, "--no-watch"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"gateway: cannot listen on 127.0.0.1:{port}: address in use (another process listens "
        "there; choose another --port)"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_client_that_leaves_a_non_streaming_request_cancels_the_upstream_call(
        gateway_app, engine):
    slow = [10.0, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"]
    with RawUpstream({"slow": slow}) as upstream:
        gw = gateway_app(raw_config(upstream, "slow"))
        url = gw.listen(engine)
        left = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            loopback.post(url + "/v1/chat/completions", timeout=httpx.Timeout(5, read=0.3),
                       json={"model": "slow", "messages": [{"role": "user", "content": "hi"}]})
        deadline = time.monotonic() + 3
        while not upstream.closed_early and time.monotonic() < deadline:
            time.sleep(0.02)
    assert upstream.closed_early, "the upstream call kept running after the client left"
    assert upstream.closed_early[0] - left < 2.0
    [entry] = [e for e in request_logs(gw, None) if e.get("outcome") == "client_disconnected"]
    assert entry["status"] == 499


DRAIN_CONFIG = """
version: 1
server: {{drain_timeout: 2s}}
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{base_url}"}}
routes:
  short: {{target: {{provider: up, model: short}}}}
  long: {{target: {{provider: up, model: long}}}}
"""


class StreamInThread(threading.Thread):
    """A streaming request read in the background: ``started`` once its first bytes are in."""

    def __init__(self, gw, model: str):
        super().__init__(daemon=True)
        self.gw, self.model = gw, model
        self.started = threading.Event()
        self.body = b""

    def run(self) -> None:
        with loopback.stream("POST", self.gw.base_url + "/v1/chat/completions", timeout=20,
                          json={"model": self.model, "stream": True,
                                "messages": [{"role": "user", "content": "hi"}]}) as r:
            for piece in r.iter_raw():
                self.body += piece
                self.started.set()

    def events(self) -> list[str]:
        assert self.body.endswith(b"\n\n"), f"cut mid-event: {self.body[-80:]!r}"
        return [e.removeprefix(b"data: ").decode() for e in self.body.split(b"\n\n") if e]


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_drains_streams_and_ends_the_rest_with_an_error_event(
        gateway_factory, upstream, engine):
    upstream.script("short", Behaviour(chunk_delay=0.3))  # done within the drain time
    upstream.script("long", Behaviour(chunk_delay=3.0))  # still open when it ends
    gw = gateway_factory(DRAIN_CONFIG.format(base_url=upstream.base_url),
                         args=("--engine", engine))
    streams = [StreamInThread(gw, "short"), StreamInThread(gw, "long")]
    for s in streams:
        s.start()
    assert all(s.started.wait(10) for s in streams)
    signalled = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    # the signal arrives while the server runs: a request sent at once may come before it
    ready = poll(lambda: loopback.get(gw.base_url + "/readyz", timeout=2),
                 lambda r: r.status_code != 200, 1.0, "/readyz still 200 after SIGTERM")
    assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
    for s in streams:
        s.join(15)
    assert gw.proc.wait(10) == 0
    assert time.monotonic() - signalled < 2 + 4  # drain_timeout, then a prompt exit
    short, long = (s.events() for s in streams)
    assert short[-1] == "[DONE]" and all("error" not in e for e in short)
    assert len(long) >= 1 and all(json.loads(e) for e in long)  # no broken event
    error = json.loads(long[-1])["error"]
    assert error["code"] == "shutting_down" and "server.drain_timeout (2s)" in error["message"]
    [entry] = request_logs(gw, "long")
    assert entry["status"] == 503 and entry["outcome"] == "shutdown"


LIMITS_CONFIG = """
version: 1
server: {header_timeout: 1s, max_connections: 3}
providers: {demo: {type: mock}}
routes: {chat: {target: {provider: demo, model: m}}}
"""


def seconds_until_closed(sock: socket.socket, dribble: bytes, every: float, limit: float) -> float:
    """Send ``dribble`` every ``every`` seconds until the server closes the connection."""
    started = time.monotonic()
    sock.settimeout(every)
    while time.monotonic() - started < limit:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            pass
        except ConnectionError:
            return time.monotonic() - started
        try:
            sock.sendall(dribble)
        except ConnectionError:
            return time.monotonic() - started
    return float("inf")


@pytest.mark.parametrize("engine", ENGINES)
def test_slow_header_connections_are_closed_after_the_header_timeout(gateway_app, engine):
    gw = gateway_app(LIMITS_CONFIG)
    url = gw.listen(engine)
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        held = seconds_until_closed(sock, b"x-slow: 1\r\n", every=0.2, limit=8)
    assert 0.8 <= held < 4, f"held for {held:.1f}s with server.header_timeout 1s"
    assert loopback.get(url + "/healthz").status_code == 200  # honest clients still served


@pytest.mark.parametrize("engine", ["uvicorn", "hypercorn"])  # granian: from the first byte
def test_connections_that_send_nothing_are_closed_after_the_header_timeout(gateway_app, engine):
    gw = gateway_app(LIMITS_CONFIG)
    gw.listen(engine)
    with socket.create_connection(("127.0.0.1", gw.port)) as silent:  # sends nothing at all
        held = seconds_until_closed(silent, b"", every=0.2, limit=8)
    assert held < 4


def wait_until_served(url: str) -> None:
    deadline = time.monotonic() + 5
    while (status := loopback.get(url + "/healthz", timeout=5).status_code) != 200:
        assert time.monotonic() < deadline, f"still {status} after the connections closed"
        time.sleep(0.05)


def test_connections_beyond_the_cap_get_503_on_uvicorn(gateway_app):
    """uvicorn counts open connections, idle ones included (its limit_concurrency)."""
    gw = gateway_app(LIMITS_CONFIG.replace("1s", "5s"))
    url = gw.listen("uvicorn")
    held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(3)]
    try:
        time.sleep(0.2)  # the server has accepted them
        over = loopback.get(url + "/healthz", timeout=5)
        assert over.status_code == 503
    finally:
        for sock in held:
            sock.close()
    wait_until_served(url)


CAP_CONFIG = """
version: 1
server: {{header_timeout: 5s, max_connections: 3}}
defaults: {{retry: {{attempts: 1}}}}
providers: {{up: {{type: openai-compatible, base_url: "{base_url}"}}}}
routes: {{slow: {{target: {{provider: up, model: slow}}}}}}
"""


def test_requests_beyond_the_cap_get_503_on_hypercorn(gateway_app, upstream):
    """hypercorn has no limit of its own: the gateway's counts connections with a request in
    progress (idle ones are closed by the header timeout) and answers the next with a 503 in
    OpenAI's shape."""
    upstream.script("slow", *[Behaviour(delay=1.5)] * 3)
    gw = gateway_app(CAP_CONFIG.format(base_url=upstream.base_url))
    url = gw.listen("hypercorn")
    body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}
    slow = [threading.Thread(target=loopback.post, args=(url + "/v1/chat/completions",),
                             kwargs={"json": body, "timeout": 10}) for _ in range(3)]
    for thread in slow:
        thread.start()
    deadline = time.monotonic() + 5
    while sum(r.path.endswith("/chat/completions") for r in upstream.requests) < 3:
        assert time.monotonic() < deadline, "the slow requests did not reach the upstream"
        time.sleep(0.02)
    over = loopback.get(url + "/healthz", timeout=5)
    assert over.status_code == 503
    assert over.json()["error"]["code"] == "too_many_connections"
    assert over.headers["retry-after"] == "1"
    for thread in slow:
        thread.join(10)
    assert loopback.get(url + "/healthz", timeout=5).status_code == 200


def test_connections_beyond_the_cap_wait_on_granian(gateway_app):
    """granian's backpressure holds a connection beyond the cap in the listen backlog until
    one of the open ones closes: no 503, and no more than the cap served at once."""
    gw = gateway_app(LIMITS_CONFIG.replace("1s", "5s"))
    url = gw.listen("granian")
    held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(3)]
    try:
        time.sleep(0.2)  # the server has accepted them
        with pytest.raises(httpx.ReadTimeout):
            loopback.get(url + "/healthz", timeout=httpx.Timeout(5, read=0.5))
    finally:
        for sock in held:
            sock.close()
    wait_until_served(url)
