"""Stopping a running guest from outside: wall-clock timeout and Ctrl-C.

Neither reaches Python while Unicorn runs: ``emu_start`` holds the thread in C
and ``KeyboardInterrupt`` waits until it returns (DESIGN.md). A watcher thread
blocks on a socket that Python's C-level signal handler writes to
(``signal.set_wakeup_fd``) with the deadline as its timeout, and calls
``uc.emu_stop()`` - Unicorn's own timeout works the same way, from a thread.
"""
from __future__ import annotations

import select
import signal
import socket
import threading
import time
from typing import Callable

from unicorn import Uc


class Watchdog:
    def __init__(self, uc: Uc, *, timeout: float | None, catch_sigint: bool,
                 on_stop: Callable[[], None] = lambda: None) -> None:
        self.uc = uc
        self.on_stop = on_stop
        self.timeout = timeout
        self.catch_sigint = catch_sigint and threading.current_thread() is threading.main_thread()
        self.timed_out = False
        self.interrupted = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fired(self) -> bool:
        return self.timed_out or self.interrupted

    def __enter__(self) -> "Watchdog":
        if self.timeout is None and not self.catch_sigint:
            return self
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        if self.catch_sigint:
            self._old_wakeup = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
            self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        self._deadline = None if self.timeout is None else time.monotonic() + self.timeout
        self._thread = threading.Thread(target=self._watch, name="unisim-watchdog", daemon=True)
        self._thread.start()
        return self

    def _stop(self) -> None:
        self.on_stop()
        self.uc.emu_stop()

    def _on_sigint(self, signum, frame) -> None:
        self.interrupted = True
        self._stop()

    def _watch(self) -> None:
        while not self._done.is_set():
            wait = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
            readable, _, _ = select.select([self._reader], [], [], wait)
            if self._done.is_set():
                return
            if readable:
                try:
                    data = self._reader.recv(64)
                except BlockingIOError:
                    data = b""
                if signal.SIGINT.value in data:
                    self.interrupted = True
                    self._stop()
                    return
            elif self._deadline is not None and time.monotonic() >= self._deadline:
                self.timed_out = True
                self._stop()
                return

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            return
        self._done.set()
        try:
            self._writer.send(b"\0")
        except OSError:
            pass
        self._thread.join()
        if self.catch_sigint:
            signal.set_wakeup_fd(self._old_wakeup)
            signal.signal(signal.SIGINT, self._old_handler)
        self._reader.close()
        self._writer.close()
