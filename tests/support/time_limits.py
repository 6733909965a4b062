"""A wall-clock limit for a block of test code: a hang fails the test instead of the suite."""
from __future__ import annotations

import contextlib
import signal


class Hang(Exception):
    """The block ran past its limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise Hang inside the block once it has run `seconds` (SIGALRM; main thread, POSIX)."""
    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
