"""Ctrl-C / SIGTERM as a stop request for long work (``probseg train``): the run ends after its
current step and saves what it has, instead of dying with the work since the last checkpoint.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StopRequest:
    """Set by SIGINT/SIGTERM; passed to ``train`` as ``should_stop=stop.is_set``."""

    def __init__(self) -> None:
        self.signal_name = ""

    def is_set(self) -> bool:
        return bool(self.signal_name)


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopRequest]:
    """Turn Ctrl-C / SIGTERM into a stop request, so training ends after the current step and
    saves ``last.safetensors`` (resumable) instead of dying with the work since the last
    periodic checkpoint.  A second signal interrupts at once.  Main thread only; elsewhere a no-op.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.signal_name = signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
