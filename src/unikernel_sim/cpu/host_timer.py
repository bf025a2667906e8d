"""Host-clock deadlines that stop emu_start: the next device event (fast mode),
the wall-clock timeout of a run, and the output watch.

Unicorn's own `timeout=` starts a thread per emu_start call (~150 us each,
docs/unicorn-quirks.md); a 1 kHz guest timer would pay that a thousand times a second, and
thousands of guest calls per second would too. One thread (``_host_timer.c``) lives as long
as the machine, sleeps until the earliest armed deadline and asks for a stop through
``vclock_request_async_stop`` (the guest stops at its next block boundary, never inside an
instruction, Q19). A request made while emu_start is not running is kept for the next slice,
so a deadline that passes between two slices is never lost. The thread is C, not Python:
a Python thread woken by every arm competed for the GIL with the thread returning from
emu_start (~15 us of a ~70 us guest call).
"""
from __future__ import annotations

import ctypes

from unikernel_sim.cpu.native import check_mirror, library
from unikernel_sim.cpu.vclock import VClockState, VirtualClock, host_ns

EVENT = 0
TIMEOUT = 1
OUTPUT = 2                 # buffered guest output waiting while the guest runs on
IRQ_POLL = 3               # a request waits for IF: the block hook looks every period (no stop)
TLB_REVIEW = 4             # fast mode: the block hook flushes the soft TLB (no stop; _vclock.c)
KINDS = 5                  # _host_timer.c HOST_TIMER_KINDS
NEVER = (1 << 64) - 1
OUTPUT_PERIOD_NS = 20_000_000
"""How long guest output may wait in the C port buffer (cpu/fast_ports.py) while
the guest runs without a stop: a kernel that prints a banner and then spins must
still show it."""


class HostTimerState(ctypes.Structure):
    """struct host_timer (_host_timer.c), field for field."""
    _fields_ = [
        ("clock", ctypes.POINTER(VClockState)),
        ("output_length", ctypes.c_void_p),
        ("output_period_ns", ctypes.c_uint64),
        ("deadline", ctypes.c_uint64 * KINDS),
        ("fired", ctypes.c_uint64),
        ("sleeping_until", ctypes.c_uint64),
        ("output_watch", ctypes.c_uint64),
        ("thread", ctypes.c_void_p),
        ("irq_poll_period_ns", ctypes.c_uint64),
        ("tlb_review_on", ctypes.c_uint64),
    ]


check_mirror(HostTimerState, "struct host_timer", "host_timer_struct_size")
_lib = library
# Called without argtypes (the struct's pointer made once, plain ints and a c_uint64): the
# argtypes conversion tripled the cost of a call a run makes several times. Not a byref():
# that object is invisible to the garbage collector, and through the struct's reference
# to the clock (whose callbacks hold the machine) it kept every Machine alive.
_arm = _lib.host_timer_arm
_arm.restype = ctypes.c_int
_take = _lib.host_timer_take
_take.restype = ctypes.c_int
_start_run = _lib.host_timer_start_run
_start_run.restype = ctypes.c_int
_lib.host_timer_close.restype = None
_lib.host_timer_close.argtypes = [ctypes.POINTER(HostTimerState)]


def _started(error: int) -> None:
    """The C calls that may start the thread return an errno when it cannot start."""
    if error:
        raise OSError(error, "cannot start the host timer thread")


class HostTimer:
    def __init__(self, clock: VirtualClock) -> None:
        self.state = s = HostTimerState()
        s.clock = clock._pointer
        s.output_period_ns = OUTPUT_PERIOD_NS
        s.tlb_review_on = int(not clock.deterministic)   # deterministic mode reviews at counts
        for kind in range(KINDS):
            s.deadline[kind] = NEVER
        self._pointer = ctypes.pointer(s)
        self._clock = clock                          # the thread asks its struct for stops

    @property
    def address(self) -> int:
        """The C struct's address (the tick path moves its event deadline: _host_timer.h)."""
        return ctypes.addressof(self.state)

    def start_run(self, timeout_deadline_ns: int | None, output_length_address: int) -> None:
        """A run starts: stop it at timeout_deadline_ns (CLOCK_MONOTONIC ns; None: no
        timeout, the last run's is dropped), and until output_done() every
        OUTPUT_PERIOD_NS, if the uint64 at output_length_address (the C port buffer's
        fill) is not 0, fire OUTPUT (stop the guest so the run loop drains it)."""
        self.state.output_length = output_length_address
        deadline = NEVER if timeout_deadline_ns is None else max(0, timeout_deadline_ns)
        _started(_start_run(self._pointer, ctypes.c_uint64(deadline)))

    def output_done(self) -> None:
        """The run ended: the thread retires the watch at its next look (a run that
        follows before then finds it armed)."""
        self.state.output_watch = 0

    def arm(self, deadline_host_ns: int | None, kind: int = EVENT) -> None:
        """Stop the guest at deadline_host_ns (CLOCK_MONOTONIC ns); None disarms.
        Disarming what is neither armed nor fired, or arming what is already armed at
        that time and has not fired, costs no call into C. A deadline left armed after a
        run may fire between runs: harmless, the next run cancels the stop it asks for
        and arms what it needs (runloop.py)."""
        s = self.state
        bit = 1 << kind
        if deadline_host_ns is None:
            if s.deadline[kind] == NEVER and not s.fired & bit:
                return
            deadline_host_ns = NEVER
        elif s.deadline[kind] == deadline_host_ns and not s.fired & bit:
            return
        _started(_arm(self._pointer, kind, ctypes.c_uint64(max(0, deadline_host_ns))))

    def poll_interrupts(self, period_ns: int | None) -> None:
        """Fast mode, a request waiting while IF is clear: every period_ns the thread sets
        the clock's POLL_IRQ bit, and the block hook stops the guest only once the CPU would
        take the request (no stop, no Python, while it would not). None stops the polls.
        The thread re-arms them itself: arming again while they run costs nothing."""
        s = self.state
        if period_ns is None:
            if s.deadline[IRQ_POLL] != NEVER:
                _started(_arm(self._pointer, IRQ_POLL, ctypes.c_uint64(NEVER)))
            return
        if s.deadline[IRQ_POLL] == NEVER:
            s.irq_poll_period_ns = period_ns
            _started(_arm(self._pointer, IRQ_POLL, ctypes.c_uint64(host_ns() + period_ns)))

    def take_fired(self, kind: int = EVENT) -> bool:
        """Whether that deadline passed since it was armed (it does not fire again until
        re-armed; the output watch looks again a period later by itself)."""
        if not self.state.fired & (1 << kind):          # only the thread sets bits: safe to read
            return False
        return bool(_take(self._pointer, kind))

    def close(self) -> None:
        """Stop the thread (it reads this struct and the clock's)."""
        if _lib is not None and getattr(self, "_pointer", None) is not None:
            _lib.host_timer_close(self._pointer)

    def __del__(self) -> None:
        self.close()
