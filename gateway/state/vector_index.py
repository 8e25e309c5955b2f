"""Nearest stored prompt by cosine similarity, per namespace and group (cache_semantic.py).

Each group's vectors are held in memory as one float32 matrix of unit rows (numpy), loaded
from ``cache.db`` on first use and again when older than ``REFRESH`` seconds (so workers see
each other's entries), and appended to at once when this process stores one. A search is one
matrix-vector product on the event loop: microseconds for the hundreds of vectors a group
usually holds, milliseconds at 10,000 vectors of 1,536 dimensions (bench/cache_vectors.py;
docs/caching.md has the measurements).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np

REFRESH = 5.0  # seconds before a group's vectors are read again from the file


def unit(vector: Iterable[float]) -> np.ndarray:
    v = np.asarray(list(vector), dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


class Group:
    __slots__ = ("keys", "matrix", "loaded")

    def __init__(self, rows: list[tuple[str, bytes]], loaded: float):
        self.keys = [key for key, _ in rows]
        dims = {len(blob) for _, blob in rows}
        if len(dims) == 1:
            self.matrix = np.frombuffer(b"".join(blob for _, blob in rows),
                                        dtype=np.float32).reshape(len(rows), -1)
        else:  # none, or a change of embedding model: keep the latest dimension only
            last = len(rows[-1][1]) if rows else 0
            kept = [(k, b) for k, b in rows if len(b) == last]
            self.keys = [k for k, _ in kept]
            self.matrix = (np.frombuffer(b"".join(b for _, b in kept), dtype=np.float32)
                           .reshape(len(kept), -1) if kept else np.zeros((0, 0), np.float32))
        self.loaded = loaded

    def add(self, key: str, vector: np.ndarray) -> None:
        if self.matrix.shape[0] and self.matrix.shape[1] != vector.shape[0]:
            self.keys, self.matrix = [], np.zeros((0, vector.shape[0]), np.float32)
        if not self.matrix.shape[0]:
            self.matrix = np.zeros((0, vector.shape[0]), np.float32)
        self.keys.append(key)
        self.matrix = np.vstack([self.matrix, vector[None, :]])

    def nearest(self, vector: np.ndarray) -> tuple[str, float] | None:
        if not self.keys or self.matrix.shape[1] != vector.shape[0]:
            return None
        scores = self.matrix @ vector
        best = int(np.argmax(scores))
        return self.keys[best], float(scores[best])


class VectorIndex:
    def __init__(self, load: Callable[[str, str], list[tuple[str, bytes]]],
                 clock: Callable[[], float] = time.monotonic):
        """``load(namespace, group)`` reads a group's (key, float32 bytes) rows, oldest first."""
        self.load = load
        self.clock = clock
        self.groups: dict[tuple[str, str], Group] = {}

    def _group(self, namespace: str, group: str) -> Group:
        found = self.groups.get((namespace, group))
        now = self.clock()
        if found is None or now - found.loaded > REFRESH:
            found = self.groups[(namespace, group)] = Group(self.load(namespace, group), now)
        return found

    def nearest(self, namespace: str, group: str, vector: np.ndarray) -> tuple[str, float] | None:
        return self._group(namespace, group).nearest(vector)

    def add(self, namespace: str, group: str, key: str, vector: np.ndarray) -> None:
        self._group(namespace, group).add(key, vector)

    def forget(self, namespace: str | None = None) -> None:
        if namespace is None:
            self.groups.clear()
        else:
            for at in [at for at in self.groups if at[0] == namespace]:
                del self.groups[at]
