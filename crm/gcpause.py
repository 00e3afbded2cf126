"""Pausing Python's cycle collector around work that makes many small objects and no cycles (the demo
generator, planning merges in bulk): its repeated passes over them find nothing and cost time."""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def collector_paused():
    """The cycle collector off inside the block, then as it was before (it is process-wide)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
