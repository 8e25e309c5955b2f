"""A request body must keep arriving (server.body_timeout, on the default engine): a client
that sends a request head and then stops sending its body is closed, not waited for; an
honest slow body, a long streamed answer and the next client are not affected. A client
that leaves halfway through its body is logged as such, not as a gateway failure."""

from __future__ import annotations

import json
import socket
import time

from .. import loopback
from .test_streams_shutdown import seconds_until_closed

CONFIG = """
version: 1
server: {body_timeout: 1s, header_timeout: 5s}
providers: {demo: {type: mock}}
routes: {chat: {target: {provider: demo, model: m}}}
"""

BODY = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}).encode()


def head(length: int) -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(length).encode()
            + b"\r\n\r\n")


def request_events(gw) -> list[dict]:
    events = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == "request"]


def test_a_body_that_stops_arriving_is_closed_after_the_body_timeout(gateway_app):
    gw = gateway_app(CONFIG)
    url = gw.listen("uvicorn")
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(head(len(BODY)) + BODY[:10])  # and nothing more
        held = seconds_until_closed(sock, b"", every=0.2, limit=8)
    assert 0.8 <= held < 4, f"held for {held:.1f}s with server.body_timeout 1s"
    assert loopback.post(url + "/v1/chat/completions", json=json.loads(BODY)).status_code == 200
    poll_until = time.monotonic() + 5
    while not any(e.get("status") == 408 for e in request_events(gw)):
        assert time.monotonic() < poll_until, request_events(gw)
        time.sleep(0.05)
    [timed_out] = [e for e in request_events(gw) if e.get("status") == 408]
    assert "body_timeout" in timed_out["error"]
    assert '"level":"error"' not in gw.log() and "Traceback" not in gw.log()


def test_a_slow_body_that_keeps_coming_is_served(gateway_app):
    """The timeout is between two pieces of the body, not for the whole of it."""
    gw = gateway_app(CONFIG)
    gw.listen("uvicorn")
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(head(len(BODY)))
        for i in range(0, len(BODY), 10):  # ~2.4 s in all, 0.4 s apart
            time.sleep(0.4)
            sock.sendall(BODY[i:i + 10])
        sock.settimeout(5)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_a_client_leaving_mid_body_is_not_a_gateway_error(gateway_app):
    gw = gateway_app(CONFIG.replace("1s", "30s"))
    gw.listen("uvicorn")
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(head(len(BODY)) + BODY[:10])
        time.sleep(0.2)
    poll_until = time.monotonic() + 5
    while not request_events(gw):
        assert time.monotonic() < poll_until, gw.log()[-2000:]
        time.sleep(0.05)
    [left] = request_events(gw)
    assert left["status"] == 499, left
    assert '"level":"error"' not in gw.log() and "Traceback" not in gw.log()


def test_an_upload_that_stops_arriving_is_closed_and_keeps_nothing(gateway_app, tmp_path):
    """The same on a route Starlette serves (/v1/files): 408 in the log, no partial file."""
    gw = gateway_app(CONFIG.replace("version: 1\n", "version: 1\nfiles: {}\n")
                     .replace("server: {", f'server: {{data_dir: "{tmp_path / "data"}", '))
    gw.listen("uvicorn")
    boundary = b"b0undary"
    part = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            b"user_data\r\n--" + boundary + b"\r\nContent-Disposition: form-data; name=\"file\"; "
            b"filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 1000)
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     b"multipart/form-data; boundary=" + boundary + b"\r\nContent-Length: 100000"
                     b"\r\n\r\n" + part)
        held = seconds_until_closed(sock, b"", every=0.2, limit=8)
    assert 0.8 <= held < 4, held
    poll_until = time.monotonic() + 5
    while not any(e.get("status") == 408 for e in request_events(gw)):
        assert time.monotonic() < poll_until, gw.log()[-2000:]
        time.sleep(0.05)
    assert '"level":"error"' not in gw.log() and "Traceback" not in gw.log()
    files = tmp_path / "data" / "files"
    assert not files.exists() or list(files.iterdir()) == []
