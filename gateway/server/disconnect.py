"""Stop working for a client that has gone away.

While a handler awaits the upstream (a non-streaming answer, or a stream's first byte), nobody
reads the client's socket: without a watch, a client that disconnects leaves the upstream call
running to its end, holding a connection and spending tokens for nobody. Once the request body
has been read, a watcher waits for the next ASGI message; `http.disconnect` cancels the handler
task, and with it the upstream call it is awaiting (aiohttp closes that connection).
"""

from __future__ import annotations

import asyncio


class DisconnectWatch:
    """The ``receive`` a handler reads its body through; ``stop()`` before the response is sent
    (a streaming response listens for the disconnect itself)."""

    __slots__ = ("_receive", "_handler", "_watcher", "disconnected")

    def __init__(self, receive):
        self._receive = receive
        self._handler = asyncio.current_task()
        self._watcher: asyncio.Task | None = None
        self.disconnected = False

    async def __call__(self) -> dict:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.disconnected = True
        elif not message.get("more_body", False) and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return message

    async def _watch(self) -> None:
        message = await self._receive()
        if message["type"] == "http.disconnect" and self._handler is not None:
            self.disconnected = True
            self._handler.cancel("the client disconnected")

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
