"""A flush clock a test turns by hand: ``tick`` waits until the test calls ``step()``."""

from __future__ import annotations

import asyncio


class Ticks:
    def __init__(self) -> None:
        self._steps: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        await self._steps.get()

    def step(self) -> None:
        self._steps.put_nowait(None)
