"""Ctrl-C (and SIGTERM, SIGHUP) while the guest runs.

KeyboardInterrupt does not reach Python while Unicorn runs: emu_start holds
the thread in C and the Python-level handler waits until it returns
(docs/unicorn-quirks.md). A watcher thread blocks on a pipe that Python's C-level signal
handler writes to (signal.set_wakeup_fd; a pipe rather than a socket pair: importing
socket costs 5 ms of every start) and asks for a stop at the guest's next
block boundary (``stop``: VirtualClock.request_async_stop; never uc.emu_stop()
from another thread, Q19). Only the CLI asks for this; the wall-clock timeout
is a HostTimer deadline.
"""
from __future__ import annotations

import os
import select
import signal
import threading
from typing import Callable


WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Each ends the run like Ctrl-C: output flushed, report printed, a documented
exit code (exit_codes.py), instead of dying with nothing said."""


class InterruptWatch:
    def __init__(self, stop: Callable[[], None], *, enabled: bool) -> None:
        self.stop = stop
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal_received: signal.Signals | None = None
        self._done: threading.Event | None = None     # made in __enter__ when enabled (a guest call: not)
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "InterruptWatch":
        if not self.enabled:
            return self
        self._done = threading.Event()
        self._reader, self._writer = os.pipe()
        os.set_blocking(self._reader, False)
        os.set_blocking(self._writer, False)
        self._old_wakeup = signal.set_wakeup_fd(self._writer, warn_on_full_buffer=False)
        self._old_handlers = {number: signal.signal(number, self._on_signal) for number in WATCHED_SIGNALS}
        self._thread = threading.Thread(target=self._watch, name="unisim-signals", daemon=True)
        self._thread.start()
        return self

    @property
    def interrupted(self) -> bool:
        return self.signal_received is not None

    def _stop(self, number: int) -> None:
        if self.signal_received is None:
            self.signal_received = signal.Signals(number)
        self.stop()

    def _on_signal(self, signum, frame) -> None:
        self._stop(signum)

    def _watch(self) -> None:
        while not self._done.is_set():
            readable, _, _ = select.select([self._reader], [], [])
            if self._done.is_set():
                return
            try:
                data = os.read(self._reader, 64)
            except BlockingIOError:
                continue
            for number in WATCHED_SIGNALS:
                if number.value in data:
                    self._stop(number)
                    return

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            return
        self._done.set()
        try:
            os.write(self._writer, b"\0")
        except OSError:
            pass
        self._thread.join()
        signal.set_wakeup_fd(self._old_wakeup)
        for number, handler in self._old_handlers.items():
            signal.signal(number, handler)
        os.close(self._reader)
        os.close(self._writer)
