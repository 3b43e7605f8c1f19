"""A child process that dies with its parent (a parallel rebuild's or audit's second
process): killed with ``kill -9``, the parent cannot stop it, and an orphan would go on
folding, holding connections and staging tables nobody reads.

On Linux the kernel sends the child ``SIGKILL`` when its parent dies (``prctl``
``PR_SET_PDEATHSIG``); elsewhere, and against a parent that died before the call, a daemon
thread compares the parent's pid with the one the child started under.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
CHECK_EVERY = 0.5
"""Seconds between two looks at the parent's pid (where prctl is not available)."""


def _set_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent: int | None = None) -> None:
    """Make this process exit when its parent does. ``parent``: the pid the parent gave
    (the current parent if None); a parent already gone ends this process at once."""
    expected = parent if parent is not None else os.getppid()
    _set_death_signal()
    if os.getppid() != expected:
        os._exit(1)

    def watch() -> None:
        while True:
            threading.Event().wait(CHECK_EVERY)
            if os.getppid() != expected:
                os._exit(1)

    threading.Thread(target=watch, name="simledger-parent-watch", daemon=True).start()
