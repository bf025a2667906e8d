"""Host-clock deadlines that stop emu_start: the next device event (fast mode)
and the wall-clock timeout of a run.

Unicorn's own `timeout=` starts a thread per emu_start call (~150 us each,
docs/unicorn-quirks.md); a 1 kHz guest timer would pay that a thousand times a second, and
thousands of guest calls per second would too. This thread lives as long as
the machine, sleeps until the earliest armed deadline and asks for a stop
through ``stop`` (VirtualClock.request_async_stop: the guest stops at its next
block boundary, never inside an instruction, Q19). A request made while
emu_start is not running is kept for the next slice, so a deadline that passes
between two slices is never lost.
"""
from __future__ import annotations

import threading
from typing import Callable

from unikernel_sim.cpu.vclock import host_ns

NS_PER_SECOND = 1_000_000_000
EVENT = "event"
TIMEOUT = "timeout"
OUTPUT = "output"          # buffered guest output waiting while the guest runs on
OUTPUT_PERIOD_NS = 20_000_000
"""How long guest output may wait in the C port buffer (cpu/fast_ports.py) while
the guest runs without a stop: a kernel that prints a banner and then spins must
still show it."""


class HostTimer:
    def __init__(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        self._condition = threading.Condition()
        self._deadlines: dict[str, int] = {}
        self._fired: set[str] = set()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._output_pending: Callable[[], bool] | None = None
        self._sleeping_until: int | None = None   # the timer thread's wake-up (None: none)

    def watch_output(self, pending: Callable[[], bool] | None) -> None:
        """While set, every OUTPUT_PERIOD_NS: if pending(), fire OUTPUT (stop the guest
        so the run loop drains it). None stops watching."""
        if pending is None and self._output_pending is None:
            return
        with self._condition:
            self._output_pending = pending
            if pending is not None:
                self._deadlines[OUTPUT] = deadline = host_ns() + OUTPUT_PERIOD_NS
                self._ensure_thread()
                self._wake_for(deadline)
            else:
                self._deadlines.pop(OUTPUT, None)
                self._fired.discard(OUTPUT)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="unisim-timer", daemon=True)
            self._thread.start()

    def arm(self, deadline_host_ns: int | None, kind: str = EVENT) -> None:
        """Stop the guest at deadline_host_ns (CLOCK_MONOTONIC ns); None disarms.
        Disarming what is not armed takes no lock: only this (the guest's) thread
        arms, and the timer thread only ever adds to _fired, so both reads are safe
        (a run arms and disarms several kinds; each notify costs ~5 us)."""
        if deadline_host_ns is None and kind not in self._deadlines and kind not in self._fired:
            return
        with self._condition:
            self._fired.discard(kind)
            if deadline_host_ns is None:
                self._deadlines.pop(kind, None)        # the thread finds nothing due when it wakes
            else:
                self._deadlines[kind] = deadline_host_ns
                self._ensure_thread()
                self._wake_for(deadline_host_ns)

    def _wake_for(self, deadline: int) -> None:
        """(Lock held.) Wake the timer thread only if it sleeps past deadline: a later
        deadline or a disarm it handles when it wakes anyway, and each notify costs ~5 us
        (a guest call arms and disarms three kinds)."""
        if self._sleeping_until is None or deadline < self._sleeping_until:
            self._condition.notify()

    def take_fired(self, kind: str = EVENT) -> bool:
        """Whether that deadline passed since it was armed (it is then disarmed;
        the output watch re-arms itself)."""
        if kind not in self._fired:                    # the timer thread only adds: safe to read
            return False
        with self._condition:
            self._fired.discard(kind)
            if kind == OUTPUT and self._output_pending is not None:
                self._deadlines[OUTPUT] = deadline = host_ns() + OUTPUT_PERIOD_NS
                self._wake_for(deadline)
            else:
                self._deadlines.pop(kind, None)
            return True

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()

    def _loop(self) -> None:
        """Each armed deadline fires once, independently of the others."""
        with self._condition:
            while not self._closed:
                now = host_ns()
                due = [kind for kind, deadline in self._deadlines.items()
                       if deadline <= now and kind not in self._fired]
                if OUTPUT in due and not (self._output_pending and self._output_pending()):
                    due.remove(OUTPUT)                   # nothing waiting: look again a period later
                    self._deadlines[OUTPUT] = now + OUTPUT_PERIOD_NS
                if due:
                    self._fired.update(due)
                    self._stop()
                pending = [deadline for kind, deadline in self._deadlines.items() if kind not in self._fired]
                self._sleeping_until = min(pending) if pending else None
                self._condition.wait((self._sleeping_until - now) / NS_PER_SECOND if pending else None)
                self._sleeping_until = 0                 # awake: arming must not count on a wake-up
