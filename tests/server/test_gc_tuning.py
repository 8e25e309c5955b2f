"""A serving process runs Python's cycle collector less often (gateway/server/serve.py)."""

import gc

from gateway.server.serve import GC_YOUNG_THRESHOLD, tune_gc


def test_tune_gc_raises_only_the_young_threshold():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(700, 5, 7)
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 5, 7)
    finally:
        gc.set_threshold(*before)


def test_cycles_are_still_collected_at_the_serving_threshold():
    """Cyclic garbage does not pile up for ever: it goes once the threshold is crossed."""
    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a

    collected = []

    def watch(phase, info):
        if phase == "stop":
            collected.append(info)

    before = gc.get_threshold()
    gc.collect()
    gc.callbacks.append(watch)
    try:
        tune_gc()
        for _ in range(3 * GC_YOUNG_THRESHOLD):
            cycle()
        assert collected, "no collection ran after 30,000 cyclic objects"
        assert sum(1 for o in gc.get_objects() if type(o) is Node) < 2 * GC_YOUNG_THRESHOLD
    finally:
        gc.callbacks.remove(watch)
        gc.set_threshold(*before)
