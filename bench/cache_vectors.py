"""How long the semantic cache's vector search takes: numpy over a group's unit vectors (what
the embedded cache does, state/vector_index.py), by group size and dimensions; and whether
sqlite-vec could be used by this Python at all (it needs sqlite3 extension loading).

    python bench/cache_vectors.py [--sizes 100,1000,10000,100000] [--dims 64,1536]
"""

from __future__ import annotations

import argparse
import importlib.util
import sqlite3
import time

import numpy as np


def numpy_search_us(n: int, dims: int, repeat: int = 200) -> float:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((n, dims), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = matrix[n // 2]
    started = time.perf_counter()
    for _ in range(repeat):
        scores = matrix @ query
        int(np.argmax(scores))
    return (time.perf_counter() - started) / repeat * 1e6


def sqlite_vec_loadable() -> str:
    conn = sqlite3.connect(":memory:")
    if not hasattr(conn, "enable_load_extension"):
        return "no: this Python's sqlite3 is built without extension loading"
    if importlib.util.find_spec("sqlite_vec") is None:
        return "not installed (pip install sqlite-vec)"
    return "loadable"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--dims", default="64,1536")
    args = parser.parse_args()
    print(f"sqlite-vec: {sqlite_vec_loadable()}")
    print(f"{'vectors':>9} {'dims':>6} {'numpy top-1 (µs)':>18}")
    for dims in map(int, args.dims.split(",")):
        for n in map(int, args.sizes.split(",")):
            repeat = 200 if n * dims <= 10_000_000 else 20
            print(f"{n:>9} {dims:>6} {numpy_search_us(n, dims, repeat):>18.1f}")


if __name__ == "__main__":
    main()
