"""The timer tick without Python: PIT channel 0 -> 8259 master -> IDT in C.

Through the run loop one tick cost ~120 us of host time (stop, bring every device
up to date, deliver, re-arm, restart, and a Python port hook for the handler's
EOI); `_tick_path.c` does the same work in the block hook and the port hook.

The edge falls due in fast mode when a C thread sees the PIT's edge in host time, in
deterministic mode at the instruction count where the run loop's deadline would have
stopped the guest (``clock.tick_at``, checked by the block hook right after that
deadline, under the same rules), so deterministic runs take every tick at the same
instruction as before, and the same tick whichever path serves it.

Ownership is per slice. ``begin`` (before emu_start) checks that the tick takes
the plain path - the 8259 master initialised in fully nested, edge-
triggered mode with IRQ 0 unmasked and nothing pending, the PIT periodic, IRQ 0
masked at the I/O APIC, no HPET legacy replacement, nothing that watches
deliveries one by one (tracing, a debugger's step) - and copies the master's
registers and the PIT's accounting into the C struct. ``take_back`` copies
them back into the Python models before any Python device code runs (a port
or MMIO access the C hooks do not serve, an MSR write) and when the slice ends,
so the models are the only state anyone else ever reads. Anything the C path
does not cover stops the guest with the request still pending, and the run
loop's reference path delivers it.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Callable

from unikernel_sim.cpu.native import check_mirror, library
from unikernel_sim.cpu.fast_delivery import FastDelivery, IrqContext
from unikernel_sim.cpu.vclock import VClockState, VirtualClock
from unikernel_sim.devices.i8259 import CASCADE_LINE, ICW4_AEOI, ICW4_SFNM

if TYPE_CHECKING:
    from unikernel_sim.devices.board import PcBoard

NEVER = (1 << 64) - 1
SAFE_RANGES = 64                     # _tick_path.h
PERIODIC_MODES = (2, 3, 6, 7)
FULLY_NESTED_LOWEST = 7              # the 8259's lowest priority after ICW1: no rotation
IRQ0_BIT = 1
IRQ0_IOAPIC_PIN = 2                  # ISA IRQ 0 arrives on I/O APIC pin 2 (the MADT's override)
RED_ZONE_LOOK_PERIOD_NS = 10_000_000
"""At most one red-zone look per this much time. A look stops the guest, and the watch it
may arm costs a flush of all translated code when it retires (~1 ms together); in fast
mode virtual time is host time, so a look per tick of a fast timer in red-zone code
would leave the guest no time to run. Deterministic mode (the run loop's path) looks at
every interrupt."""


class TickPathState(ctypes.Structure):
    """Mirror of struct tick_path (_tick_path.h)."""

    _fields_ = [
        ("clock", ctypes.POINTER(VClockState)),
        ("irq", ctypes.POINTER(IrqContext)),
        *((name, ctypes.c_uint64) for name in ("live", "generation", "irr", "isr", "imr", "vector_base",
                                                "auto_eoi", "host_lines", "output")),
        ("pit_loaded_at", ctypes.c_int64),
        ("pit_period", ctypes.c_uint64),
        ("pit_accounted", ctypes.c_int64),
        *((name, ctypes.c_uint64) for name in ("ioapic_latches", "ioapic_edges", "delivered", "handed_back",
                                                "edges", "retry_blocks")),
        ("thread", ctypes.c_void_p),
        ("sleeping_until", ctypes.c_uint64),
        *((name, ctypes.c_uint64) for name in ("red_zone_check", "red_zone_reach", "red_zone_pending")),
        ("red_zone_quiet_until", ctypes.c_int64),
        ("safe_count", ctypes.c_uint64),
        ("safe_start", ctypes.c_uint64 * SAFE_RANGES),
        ("safe_end", ctypes.c_uint64 * SAFE_RANGES),
        ("deterministic", ctypes.c_uint64),
        ("next_edge_ns", ctypes.c_int64),
    ]


_lib = library
check_mirror(TickPathState, "_tick_path.h's struct tick_path", "tick_path_struct_size")
_lib.tick_path_publish.restype = ctypes.c_int
_lib.tick_path_publish.argtypes = [ctypes.POINTER(TickPathState)]
_lib.tick_path_close.restype = None
_lib.tick_path_close.argtypes = [ctypes.POINTER(TickPathState)]
_lib.tick_path_rearm.restype = None
_lib.tick_path_rearm.argtypes = [ctypes.POINTER(TickPathState)]

RedZoneLook = Callable[[int, int, int], "tuple[int, int] | None"]
"""(old RSP, new RSP, return RIP) of a 64-bit frame pushed below the interrupted RSP:
the host arms its watch if it must, and returns a code range where such frames never
need a look (or None)."""


class TickPath:
    def __init__(self, clock: VirtualClock, fast: FastDelivery, board: "PcBoard") -> None:
        self.clock = clock
        self.fast = fast
        self.board = board
        self.enabled = True                   # False: every tick takes the run loop's path
        self.live = False
        self.on_delivered: Callable[[int], None] = lambda count: None   # InterruptPath.irq_count
        self.red_zone_look: RedZoneLook | None = None
        self._red_zone_look_due: tuple[int, int, int] | None = None
        s = self.state = TickPathState()
        s.clock = clock._pointer
        s.irq = ctypes.pointer(fast.context)
        s.sleeping_until = NEVER
        self._pointer = ctypes.pointer(s)
        clock.state.tick = ctypes.addressof(s)

    def begin(self, *, watched: bool, red_zone_reach: int | None) -> bool:
        """Let C own the tick for this slice if it takes the plain path; True if it does.
        watched: something must see each delivery (a trace, a debugger's step).
        red_zone_reach: the red-zone watch's frame distance, None without the watch."""
        if self.live:
            return True
        if not self.enabled or watched or not self.fast.enabled:
            return False
        board = self.board
        pic, pit = board.pic.master, board.pit
        channel = pit.channels[0]
        if (board.interrupt_pending or board.hpet.legacy_replacement or not board.lapic.accepts_pic
                or not board.ioapic.pin_masked(IRQ0_IOAPIC_PIN)
                or pic.init_step or pic.level_triggered or pic.special_mask or pic.poll_pending
                or pic.rotate_on_aeoi or pic.lowest_priority != FULLY_NESTED_LOWEST or pic.icw4 & ICW4_SFNM
                or pic.imr & IRQ0_BIT or pic.lines & IRQ0_BIT
                or channel.loaded_at is None or not channel.gate or channel.mode not in PERIODIC_MODES
                or channel.paused_ticks):
            return False
        s = self.state
        s.irr, s.isr, s.imr, s.vector_base = pic.irr, pic.isr, pic.imr, pic.vector_base
        s.auto_eoi = int(bool(pic.icw4 & ICW4_AEOI))
        s.host_lines = pic.icw3 & (1 << CASCADE_LINE)
        s.output = 0
        s.pit_loaded_at, s.pit_period, s.pit_accounted = channel.loaded_at, channel.period, pit._accounted_until
        s.ioapic_latches = 1                    # the host pulses the pin: the I/O APIC decides
        s.ioapic_edges = s.red_zone_pending = 0
        s.red_zone_check = int(red_zone_reach is not None and self.red_zone_look is not None)
        s.red_zone_reach = red_zone_reach or 0
        s.retry_blocks = 256
        s.deterministic = int(self.clock.deterministic)
        s.generation += 1
        s.live = 1
        self.live = True
        _lib.tick_path_rearm(self._pointer)     # deterministic mode: the count the edge falls due at
        if not s.deterministic and _lib.tick_path_publish(self._pointer) != 0:
            self.take_back()                    # no timer thread: the run loop keeps the tick
            return False
        return True

    def take_back(self) -> None:
        """Copy the 8259 master and the PIT's accounting back into the Python models
        (before Python device code runs, and at the end of every slice)."""
        if not self.live:
            return
        s = self.state
        s.live = 0
        self.live = False
        self.clock.state.tick_attention = 0
        self.clock.state.tick_at = NEVER
        board = self.board
        pic = board.pic.master
        pic.irr, pic.isr = s.irr, s.isr
        board.pit._accounted_until = s.pit_accounted
        if s.ioapic_edges:                      # what the edges did to the masked pin
            board.ioapic.set_line(IRQ0_IOAPIC_PIN, True)
            board.ioapic.set_line(IRQ0_IOAPIC_PIN, False)
            s.ioapic_edges = 0
        if s.delivered:
            self.on_delivered(s.delivered)
            s.delivered = 0
        if s.red_zone_pending:
            s.red_zone_pending = 0
            context = self.fast.context
            self._red_zone_look_due = (context.last_old_rsp, context.last_new_rsp, context.last_return_rip)
        pic.refresh_output()                    # a request C left pending reaches the run loop

    def look_at_red_zone(self) -> None:
        """The C path stopped in front of a handler whose frame may sit in a red zone: the
        host's watch looks now (at the start of the slice that runs the handler, as the
        run loop's own deliveries do: the watch's window starts when the guest resumes)."""
        look, self._red_zone_look_due = self._red_zone_look_due, None
        if look is None:
            return
        safe = self.red_zone_look(*look)
        s = self.state
        if not self.clock.deterministic:             # deterministic mode looks at every one, as the run loop
            s.red_zone_quiet_until = self.clock.now_ns() + RED_ZONE_LOOK_PERIOD_NS
        if safe is not None and s.safe_count < SAFE_RANGES:
            s.safe_start[s.safe_count], s.safe_end[s.safe_count] = safe
            s.safe_count += 1

    def drop_red_zone_look(self) -> None:
        """The run ended before the handler ran: the next run starts from other state."""
        self._red_zone_look_due = None

    @property
    def counts(self) -> dict[str, int]:
        """Statistics: PIT edges accounted and stops handed to the run loop."""
        return {"edges": self.state.edges, "handed_back": self.state.handed_back}

    def close(self) -> None:
        """Stop the timer thread (it reads this struct: it must end before the struct)."""
        self.take_back()
        _lib.tick_path_close(self._pointer)

    def __del__(self) -> None:
        if _lib is not None and getattr(self, "_pointer", None) is not None:   # not at interpreter exit
            _lib.tick_path_close(self._pointer)
