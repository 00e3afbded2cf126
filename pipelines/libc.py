"""The C library, for what Python does not offer: trimming malloc's free memory, its arenas, and a
child process that ends with its parent. Imports nothing heavy (used by pipelines.prefect_api while
a command starts)."""

from __future__ import annotations

import functools
import os
import signal


@functools.cache
def glibc():
    """The C library when it is glibc (its malloc can be tuned and trimmed), else None (musl, macOS)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc's own
    except (OSError, AttributeError):
        return None
    return libc


def end_with_parent(parent: int) -> None:
    """In a child process (a helper's initializer, a server's preexec_fn): end it (SIGTERM) when the
    process that started it, ``parent`` (its pid, taken before the fork), ends in any way, a signal
    included; at once if it has ended already (the signal would never come: a helper slow to start
    would wait for work forever). Linux only; elsewhere nothing. Call glibc() in the parent first, so
    that the child does not look for the library after the fork."""
    libc = glibc()
    if libc is not None:
        try:
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except AttributeError:
            return
        if os.getppid() != parent:  # (checked after the prctl: a parent ending between the two is caught)
            os.kill(os.getpid(), signal.SIGTERM)
