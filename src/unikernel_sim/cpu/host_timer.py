"""Host-clock deadlines that stop emu_start: the next device event (fast mode)
and the wall-clock timeout of a run.

Unicorn's own `timeout=` starts a thread per emu_start call (~150 us each,
docs/unicorn-quirks.md); a 1 kHz guest timer would pay that a thousand times a second, and
thousands of guest calls per second would too. This thread lives as long as
the machine, sleeps until the earliest armed deadline and calls
uc.emu_stop() (the binding releases the GIL inside emu_start, so it can run).
"""
from __future__ import annotations

import threading

from unicorn import Uc

from unikernel_sim.cpu.vclock import host_ns

NS_PER_SECOND = 1_000_000_000
REFIRE_SECONDS = 0.001
EVENT = "event"
TIMEOUT = "timeout"


class HostTimer:
    def __init__(self, uc: Uc) -> None:
        self.uc = uc
        self._condition = threading.Condition()
        self._deadlines: dict[str, int] = {}
        self._fired: set[str] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, deadline_host_ns: int | None, kind: str = EVENT) -> None:
        """Stop the guest at deadline_host_ns (CLOCK_MONOTONIC ns); None disarms."""
        with self._condition:
            self._fired.discard(kind)
            if deadline_host_ns is None:
                self._deadlines.pop(kind, None)
            else:
                self._deadlines[kind] = deadline_host_ns
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="unisim-timer", daemon=True)
                    self._thread.start()
            self._condition.notify()

    def take_fired(self, kind: str = EVENT) -> bool:
        """Whether that deadline passed since it was armed (it is then disarmed)."""
        with self._condition:
            if kind not in self._fired:
                return False
            self._fired.discard(kind)
            self._deadlines.pop(kind, None)
            return True

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()

    def _loop(self) -> None:
        with self._condition:
            while not self._closed:
                pending = {k: d for k, d in self._deadlines.items() if k not in self._fired}
                if not pending:
                    if self._fired and self._deadlines:
                        # Keep stopping every millisecond until the run loop takes the
                        # event: a stop requested while emu_start is not running is lost.
                        self.uc.emu_stop()
                        self._condition.wait(REFIRE_SECONDS)
                    else:
                        self._condition.wait()
                    continue
                kind, deadline = min(pending.items(), key=lambda item: item[1])
                remaining = deadline - host_ns()
                if remaining > 0:
                    self._condition.wait(remaining / NS_PER_SECOND)
                    continue
                self._fired.add(kind)
                self.uc.emu_stop()
