"""COM1 input from a stream (a FIFO, a pipe, a terminal, /dev/urandom) while
the guest runs, as a terminal attached to the port would type it.

A pump thread reads what arrives and keeps at most UNREAD_LIMIT bytes waiting;
it stops reading until the guest has taken them (so /dev/zero costs no memory),
and asks for a stop at the guest's next block boundary when new bytes are
there, so the run loop can feed them to the UART (RunLoop.slice). Input that
arrives on the host's schedule is not deterministic: --deterministic runs with a
streamed --serial-in are repeatable only as far as the input's timing is.
"""
from __future__ import annotations

import os
import select
import threading
from typing import Callable

UNREAD_LIMIT = 64 * 1024
READ_CHUNK = 4096
POLL_SECONDS = 0.1


class SerialInputStream:
    unread_limit = UNREAD_LIMIT      # bytes the guest may leave unread before the pump waits

    def __init__(self, fd: int, notify: Callable[[], None]) -> None:
        self.fd = fd
        self.notify = notify
        self.ended = False                       # end of file (a pipe's writer closed it)
        self._pending = bytearray()
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name="unisim-serial-in", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return bool(self._pending)

    def take(self, room: int) -> bytes:
        """Up to room bytes that arrived (the pump then reads on)."""
        with self._condition:
            data = bytes(self._pending[:room])
            del self._pending[:room]
            self._condition.notify()
            return data

    def wait(self, seconds: float) -> None:
        """Block until bytes are waiting, the stream ended, or seconds passed."""
        with self._condition:
            if not self._pending and not self.ended:
                self._condition.wait(seconds)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join(timeout=1.0)

    def _pump(self) -> None:
        while True:
            with self._condition:
                while len(self._pending) >= UNREAD_LIMIT and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
            readable, _, _ = select.select([self.fd], [], [], POLL_SECONDS)
            if not readable:
                continue
            try:
                data = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            with self._condition:
                if not data:
                    self.ended = True
                    self._condition.notify_all()
                    return
                self._pending += data
                self._condition.notify_all()
            self.notify()
