"""The HTTP servers the gateway runs on, behind one seam.

Every engine serves the same ASGI app and keeps the gateway's promises its own way, through its
server's public API only (docs/performance.md has the table of who gives what):

- ``uvicorn`` (default): httptools parses HTTP/1.1 in C; the cheapest per request of the
  engines that keep every behaviour (header timeout, a 503 beyond server.max_connections).
- ``hypercorn``: pure Python (h11, h2): HTTP/2 over cleartext, the previous default.
- ``granian``: a Rust server (hyper), embedded on the gateway's event loop; HTTP/2, the least
  CPU per request, but connections beyond the cap wait instead of getting 503 and connections
  that never send a byte are not timed out (``pip install 'bodhi-gateway[granian]'``).

An engine is built from (host, port, ServerSettings) and offers ``bind`` (what the log says),
``sockets()`` (bound in the parent, before forking workers that share them; raises OSError)
and ``serve(app, sockets, stop)``, which returns once ``stop`` is set and the connections are
closed. The gateway's own signal handlers (serve.py) stay in charge: no engine installs any.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from ...graph.graph import ServerSettings
from .common import EngineError

DEFAULT_ENGINE = "uvicorn"
# name -> module:class, imported when chosen: a gateway loads one server, not three.
ENGINES = {
    "uvicorn": "uvicorn_engine:Uvicorn",
    "hypercorn": "hypercorn_engine:Hypercorn",
    "granian": "granian_engine:Granian",
}

__all__ = ["DEFAULT_ENGINE", "ENGINES", "Engine", "EngineError", "engine"]


class Engine(Protocol):
    name: str
    bind: list[str]

    def sockets(self) -> Any: ...

    async def serve(self, app: Any, sockets: Any, stop: Any) -> None: ...


def engine(name: str, host: str, port: int, settings: ServerSettings = ServerSettings()) -> Engine:
    module, _, cls = ENGINES[name].partition(":")
    found = getattr(importlib.import_module(f".{module}", __name__), cls)
    built: Engine = found(host, port, settings)
    return built
