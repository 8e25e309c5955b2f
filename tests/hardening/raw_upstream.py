"""An upstream that writes raw bytes, for faults an HTTP framework will not produce: a chunked
body cut off in the middle of an SSE line, a close-delimited body that just stops. Each model
name picks a script: a list of byte strings (or float pauses) written after the request."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time

SSE_CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
SSE_CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(content: str, finish: str | None = None) -> bytes:
    payload = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1,
               "model": "raw", "choices": [{"index": 0, "delta": {"content": content},
                                            "finish_reason": finish}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class RawUpstream:
    def __init__(self, scripts: dict[str, list[bytes | float]]):
        self.scripts = scripts
        self.closed_early: list[float] = []  # when a client closed before the script ended
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._handle(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "RawUpstream":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += sock.recv(65536)
        for step in self.scripts[json.loads(body)["model"]]:
            if isinstance(step, float):
                if self._closed_within(sock, step):
                    self.closed_early.append(time.monotonic())
                    return
            else:
                sock.sendall(step)
        sock.shutdown(socket.SHUT_WR)

    @staticmethod
    def _closed_within(sock: socket.socket, seconds: float) -> bool:
        """Pause, noticing at once if the client closes the connection meanwhile."""
        sock.settimeout(seconds)
        try:
            return sock.recv(1) == b""
        except socket.timeout:
            return False
        finally:
            sock.settimeout(10)
