"""Fast mode's timer: a thread that stops emu_start at a host-clock deadline.

Unicorn's own `timeout=` starts a thread per emu_start call (~150 us each,
DESIGN.md); a 1 kHz guest timer would pay that a thousand times a second. This
thread lives as long as the machine, sleeps until the armed deadline and calls
uc.emu_stop() (the binding releases the GIL inside emu_start, so it can run).
"""
from __future__ import annotations

import threading


from unicorn import Uc

from unikernel_sim.cpu.vclock import host_ns

NS_PER_SECOND = 1_000_000_000
REFIRE_SECONDS = 0.001


class HostTimer:
    def __init__(self, uc: Uc) -> None:
        self.uc = uc
        self._condition = threading.Condition()
        self._deadline: int | None = None
        self._fired = False
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, deadline_host_ns: int | None) -> None:
        """Stop the guest at deadline_host_ns (CLOCK_MONOTONIC ns); None disarms."""
        with self._condition:
            self._deadline = deadline_host_ns
            self._fired = False
            if deadline_host_ns is not None and self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="unisim-timer", daemon=True)
                self._thread.start()
            self._condition.notify()

    def take_fired(self) -> bool:
        """Whether the deadline passed since arming (then disarmed until the next arm)."""
        with self._condition:
            fired, self._fired = self._fired, False
            if fired:
                self._deadline = None
            return fired

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()

    def _loop(self) -> None:
        with self._condition:
            while not self._closed:
                if self._deadline is None:
                    self._condition.wait()
                    continue
                remaining = self._deadline - host_ns()
                if remaining > 0:
                    self._condition.wait(remaining / NS_PER_SECOND)
                    continue
                # Fire, and keep firing every millisecond until re-armed: a stop
                # requested while emu_start is not running is ignored by Unicorn.
                self._fired = True
                self.uc.emu_stop()
                self._condition.wait(REFIRE_SECONDS)



