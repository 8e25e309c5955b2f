"""StateRegistry: mutable runtime state by stable key: round-robin cursors, breakers and latency
EWMAs (state/target.py), canary arms, retry budgets, limit and budget counters.

The compiler acquires a handle per key while it builds a graph, so a recompiled but unchanged
node gets the very same state object back (Caddy's UsagePool idea). After a swap, keys that
the new graph no longer uses are dropped.
"""

from __future__ import annotations

import threading
from typing import Callable, Hashable, Iterable, Protocol, TypeVar

T = TypeVar("T")


class Acquirer(Protocol):
    """What plugins get of the registry (hookspecs.PluginContext.state): acquire only."""

    def acquire(self, key: Hashable, factory: Callable[[], T]) -> T: ...


class StateRegistry:
    def __init__(self) -> None:
        self._items: dict[Hashable, object] = {}
        self._lock = threading.Lock()  # compilation runs in a worker thread

    def acquire(self, key: Hashable, factory: Callable[[], T]) -> T:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = self._items[key] = factory()
            return item  # type: ignore[return-value]

    def retain_only(self, keys: Iterable[Hashable]) -> list[object]:
        """Drop what ``keys`` does not name; returns the dropped items (the caller closes
        those that hold resources, once requests still using them are done)."""
        keep = set(keys)
        with self._lock:
            dropped = [k for k in self._items if k not in keep]
            return [self._items.pop(k) for k in dropped]

    async def aclose(self) -> None:
        """At shutdown: close every item that holds a resource (an ``aclose`` method)."""
        for item in list(self._items.values()):
            close = getattr(item, "aclose", None)
            if close is not None:
                await close()

    def of_kind(self, kind: str) -> list[object]:
        """The items whose key is a tuple starting with ``kind``, e.g. ``("usage", path)``."""
        with self._lock:
            return [item for key, item in self._items.items()
                    if isinstance(key, tuple) and key and key[0] == kind]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
