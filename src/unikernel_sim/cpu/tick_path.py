"""The timer ticks without Python: PIT channel 0 (or HPET timer 0 under legacy replacement)
-> 8259 master and/or I/O APIC pin 2 -> IDT, HPET timer 0 routed to an I/O APIC pin -> IDT,
and the local APIC timer -> IDT, in C.

Through the run loop one tick cost ~120 us of host time (stop, bring every device
up to date, deliver, re-arm, restart, and a Python port hook for the handler's
EOI); `_tick_path.c` does the same work in the block hook, the port hook (the
8259's EOI) and the local APIC page's MMIO callbacks (its EOI; the page is mapped to
C callbacks that hand every other access to the device).

An event (a PIT edge, an APIC expiry) falls due in fast mode when a C thread sees it in host time, in
deterministic mode at the instruction count where the run loop's deadline would have
stopped the guest (``clock.tick_at``, checked by the block hook right after that
deadline, under the same rules), so deterministic runs take every tick at the same
instruction as before, and the same tick whichever path serves it.

Ownership is per slice and per source. ``begin`` (before emu_start) checks that a
tick takes the plain path - for the APIC: enabled, the timer unmasked with a count and
a valid vector; for the PIT: periodic, the 8259 master initialised in fully nested,
edge-triggered mode, IRQ 0 reaching the CPU through the 8259 (unmasked, LINT0 in ExtINT
mode) and/or I/O APIC pin 2 (unmasked, edge, fixed, to this CPU); under the HPET's
legacy replacement the same with HPET timer 0 (periodic, edge-triggered) as IRQ 0's
timer instead of the PIT, the other HPET timers idle; without it, HPET timer 0 the same
way routed to an I/O APIC pin (unmasked, edge, fixed, to this CPU) that is its only way
to the CPU (a running PIT then stays the run loop's); for all: nothing pending,
nothing that watches deliveries one by one (tracing, a debugger's step) - and copies the
registers and the timers' accounting into the C struct. ``take_back`` copies
them back into the Python models before any Python device code runs (a port
or MMIO access the C hooks do not serve) and when the slice ends,
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
from unikernel_sim.devices.hpet import ENABLE as HPET_ENABLE
from unikernel_sim.devices.hpet import INTERRUPT_ENABLE as HPET_INTERRUPT_ENABLE
from unikernel_sim.devices.hpet import LEVEL as HPET_LEVEL
from unikernel_sim.devices.hpet import MODE_32 as HPET_MODE_32
from unikernel_sim.devices.hpet import NS_PER_TICK as HPET_NS_PER_TICK
from unikernel_sim.devices.hpet import PERIODIC as HPET_PERIODIC
from unikernel_sim.devices.hpet import ROUTE_MASK as HPET_ROUTE_MASK
from unikernel_sim.devices.hpet import ROUTE_SHIFT as HPET_ROUTE_SHIFT
from unikernel_sim.devices.i8259 import CASCADE_LINE, ICW4_AEOI, ICW4_SFNM
from unikernel_sim.devices.io_apic import DELIVERY_MODE_MASK as IOAPIC_DELIVERY_MASK
from unikernel_sim.devices.io_apic import DELIVERY_MODE_SHIFT as IOAPIC_DELIVERY_SHIFT
from unikernel_sim.devices.io_apic import DESTINATION_SHIFT as IOAPIC_DESTINATION_SHIFT
from unikernel_sim.devices.io_apic import FIXED as IOAPIC_FIXED
from unikernel_sim.devices.io_apic import LEVEL_TRIGGERED as IOAPIC_LEVEL
from unikernel_sim.devices.io_apic import LOGICAL as IOAPIC_LOGICAL
from unikernel_sim.devices.io_apic import LOWEST_PRIORITY as IOAPIC_LOWEST
from unikernel_sim.devices.io_apic import MASKED as IOAPIC_MASKED
from unikernel_sim.devices.local_apic import (
    APIC_BASE_ADDRESS, LVT_MASKED, LVT_PERIODIC, LVT_TSC_DEADLINE, SVR_ENABLE, divide_shift,
)

if TYPE_CHECKING:
    from unikernel_sim.devices.board import PcBoard

NEVER = (1 << 64) - 1
SAFE_RANGES = 64                     # _tick_path.h
APIC_WORDS = 4                       # _tick_path.h: a 256-bit APIC register as four words
WORD_MASK = (1 << 64) - 1
FIRST_VALID_VECTOR = 16
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
        ("pit_live", ctypes.c_uint64),
        ("apic_live", ctypes.c_uint64),
        ("apic_irr", ctypes.c_uint64 * APIC_WORDS),
        ("apic_isr", ctypes.c_uint64 * APIC_WORDS),
        ("apic_tmr", ctypes.c_uint64 * APIC_WORDS),
        *((name, ctypes.c_uint64) for name in ("apic_tpr", "apic_timer_vector", "apic_periodic",
                                                "apic_initial_count", "apic_divide_shift")),
        ("apic_timer_start", ctypes.c_int64),
        ("apic_last_advance", ctypes.c_int64),
        ("apic_expiries", ctypes.c_uint64),
        ("apic_slow_read", ctypes.c_void_p),
        ("apic_slow_write", ctypes.c_void_p),
        *((name, ctypes.c_uint64) for name in ("apic_timer_live", "pic_to_cpu", "pit_to_apic", "pit_apic_vector")),
        ("irq0_from_hpet", ctypes.c_uint64),
        ("hpet_first_ns", ctypes.c_int64),
        ("hpet_period_ns", ctypes.c_int64),
        ("irq0_to_pic", ctypes.c_uint64),
        ("hlt_wake", ctypes.c_uint64),
        ("hlt_wakes", ctypes.c_uint64),
        ("guest_cpu", ctypes.c_int64),
    ]


_lib = library
check_mirror(TickPathState, "_tick_path.h's struct tick_path", "tick_path_struct_size")
_lib.tick_path_publish.restype = ctypes.c_int
_lib.tick_path_publish.argtypes = [ctypes.POINTER(TickPathState)]
_lib.tick_path_close.restype = None
_lib.tick_path_close.argtypes = [ctypes.POINTER(TickPathState)]
_lib.tick_path_rearm.restype = None
_lib.tick_path_rearm.argtypes = [ctypes.POINTER(TickPathState)]
_APIC_READ = ctypes.cast(_lib.tick_path_apic_read, ctypes.c_void_p).value
_APIC_WRITE = ctypes.cast(_lib.tick_path_apic_write, ctypes.c_void_p).value

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
        s.guest_cpu = -1
        self._pointer = ctypes.pointer(s)
        clock.state.tick = ctypes.addressof(s)
        self.apic_window_native = False           # the APIC's page goes through _tick_path.c

    def serve_apic_page(self, guard: Callable) -> None:
        """Put the local APIC's MMIO page on the C callbacks, so that an EOI needs no
        Python while the APIC timer is C's (everything else still reaches the device)."""
        def set_slow(read, write) -> None:
            self.state.apic_slow_read = ctypes.cast(read, ctypes.c_void_p).value
            self.state.apic_slow_write = ctypes.cast(write, ctypes.c_void_p).value

        self.board.mmio.serve_natively(APIC_BASE_ADDRESS, _APIC_READ, _APIC_WRITE, ctypes.addressof(self.state),
                                       set_slow, guard)
        self.apic_window_native = True

    def begin(self, *, watched: bool, red_zone_reach: int | None, hlt_wake: bool = False) -> bool:
        """Let C own the tick for this slice if it takes the plain path; True if it does.
        watched: something must see each delivery (a trace, a debugger's step).
        red_zone_reach: the red-zone watch's frame distance, None without the watch.
        hlt_wake: C may also wake a hlt at a learnt site (RunLoop._on_hlt's common case:
        virtual time jumps to the tick); nothing else must happen while the guest halts."""
        self.state.hlt_wake = int(hlt_wake)
        if self.live:
            return True
        if not self.enabled or watched or not self.fast.enabled:
            return False
        board = self.board
        if board.interrupt_pending:
            return False
        s = self.state
        s.apic_live = int(self._load_apic())       # first: the PIT may reach it through the I/O APIC
        s.pit_live = int(self._load_pit())
        if not (s.pit_live or s.apic_timer_live):  # no timer of C's: nothing to serve
            s.pit_live = s.apic_live = s.apic_timer_live = 0
            return False
        s.red_zone_pending = 0
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

    @property
    def owned_timers(self) -> tuple:
        """The devices whose events C serves in this slice (the run loop leaves them out)."""
        s = self.state
        if not self.live:
            return ()
        irq0 = self.board.hpet if s.irq0_from_hpet else self.board.pit
        return ((irq0,) if s.pit_live else ()) + ((self.board.lapic,) if s.apic_timer_live else ())

    def _load_pit(self) -> bool:
        """Copy the 8259 master and IRQ 0's timer in if they take the plain path: the timer
        is PIT channel 0 (periodic, gate high), or HPET timer 0 under legacy replacement
        (_load_hpet_timer); the edge reaches the CPU through the 8259 (IRQ 0 unmasked, LINT0
        in ExtINT mode) and/or through I/O APIC pin 2 (unmasked, edge, fixed, to this CPU;
        the APIC's copy loaded). Or HPET timer 0 routed to an I/O APIC pin (_load_routed_hpet)."""
        if self._load_routed_hpet():
            return True
        board = self.board
        pic = board.pic.master
        if (pic.init_step or pic.level_triggered or pic.special_mask or pic.poll_pending
                or pic.rotate_on_aeoi or pic.lowest_priority != FULLY_NESTED_LOWEST or pic.icw4 & ICW4_SFNM
                or pic.lines & IRQ0_BIT):
            return False
        pic_to_cpu = board.lapic.accepts_pic
        apic_vector = self._pin_vector(IRQ0_IOAPIC_PIN)
        if apic_vector is False:
            return False                            # the I/O APIC routes it some other way
        if not (pic_to_cpu and not pic.imr & IRQ0_BIT) and apic_vector is None:
            return False                            # the edge reaches no CPU: nothing to serve
        s = self.state
        if board.hpet.legacy_replacement:
            if not self._load_hpet_timer():
                return False
        else:
            pit = board.pit
            channel = pit.channels[0]
            if (channel.loaded_at is None or not channel.gate or channel.mode not in PERIODIC_MODES
                    or channel.paused_ticks):
                return False
            s.irq0_from_hpet = 0
            s.pit_loaded_at, s.pit_period, s.pit_accounted = channel.loaded_at, channel.period, pit._accounted_until
        s.pic_to_cpu = int(pic_to_cpu)
        s.pit_to_apic, s.pit_apic_vector = (0, 0) if apic_vector is None else (1, apic_vector)
        s.irr, s.isr, s.imr, s.vector_base = pic.irr, pic.isr, pic.imr, pic.vector_base
        s.auto_eoi = int(bool(pic.icw4 & ICW4_AEOI))
        s.host_lines = pic.icw3 & (1 << CASCADE_LINE)
        s.output = 0
        s.ioapic_latches = int(apic_vector is None)   # masked: the host pulses it (it latches edges)
        s.ioapic_edges = 0
        s.irq0_to_pic = 1
        return True

    def _load_routed_hpet(self) -> bool:
        """HPET timer 0 without legacy replacement, making events on the I/O APIC pin its
        Tn_INT_ROUTE_CNF names: C serves it if that pin sends a fixed, edge-triggered
        vector to this CPU (the pin is then its only way to the CPU: the 8259 never sees
        it, and its copy is not loaded). The PIT, which still drives IRQ 0 and pin 2 without
        legacy replacement, stays the run loop's if it runs (owned_timers)."""
        hpet = self.board.hpet
        config = hpet.timer_config[0]
        if not hpet.config & HPET_ENABLE or hpet.legacy_replacement or not config & HPET_INTERRUPT_ENABLE:
            return False
        vector = self._pin_vector((config >> HPET_ROUTE_SHIFT) & HPET_ROUTE_MASK)
        if vector is None or vector is False or not self._load_hpet_timer():
            return False
        s = self.state
        s.irq0_to_pic = s.pic_to_cpu = 0
        s.pit_to_apic, s.pit_apic_vector = 1, vector
        s.irr = s.isr = s.output = s.auto_eoi = s.host_lines = 0
        s.ioapic_latches = s.ioapic_edges = 0
        return True

    def _load_hpet_timer(self) -> bool:
        """HPET timer 0 drives IRQ 0 (legacy replacement) or its pin: copy its schedule in if it is
        periodic, edge-triggered, its comparator its next match (the low word of it in
        32-bit mode: the model steps the match by the period across 2^32, as QEMU does),
        and the other timers make no events (C owns the whole HPET while live)."""
        hpet = self.board.hpet
        config, match = hpet.timer_config[0], hpet.match[0]
        mask = 0xFFFFFFFF if config & HPET_MODE_32 else WORD_MASK
        if (not config & HPET_INTERRUPT_ENABLE or not config & HPET_PERIODIC or config & HPET_LEVEL
                or not hpet.period[0] or match is None or match & mask != hpet.comparator[0] or hpet.status & 1
                or any(other is not None for other in hpet.match[1:])):
            return False
        s = self.state
        s.irq0_from_hpet = 1
        s.hpet_first_ns = hpet.time_of(match)
        s.hpet_period_ns = hpet.period[0] * HPET_NS_PER_TICK
        s.pit_accounted = s.hpet_first_ns - 1       # every match before its next is accounted
        return True

    def _pin_vector(self, pin: int) -> int | None | bool:
        """The vector an I/O APIC pin sends its edges to: None while the pin is masked,
        False when the C path cannot follow it (no such pin, level-triggered, another
        delivery mode or destination, a latched edge, or the APIC's copy not loaded)."""
        ioapic, apic = self.board.ioapic, self.board.lapic
        if pin >= len(ioapic.entries):
            return False
        entry = ioapic.entries[pin]
        if entry & IOAPIC_MASKED:
            return None
        mode = (entry >> IOAPIC_DELIVERY_SHIFT) & IOAPIC_DELIVERY_MASK
        vector = entry & 0xFF
        if (not self.state.apic_live or entry & IOAPIC_LEVEL or mode not in (IOAPIC_FIXED, IOAPIC_LOWEST)
                or vector < FIRST_VALID_VECTOR or ioapic.latched >> pin & 1
                or not apic.is_destination(entry >> IOAPIC_DESTINATION_SHIFT, bool(entry & IOAPIC_LOGICAL))):
            return False
        return vector

    def _load_apic(self) -> bool:
        """Copy the local APIC in if it is enabled (IA32_APIC_BASE and SVR); its timer makes
        events in C if unmasked with a count and a valid vector."""
        apic = self.board.lapic
        timer = apic.lvt[0]
        if not self.apic_window_native or not apic.globally_enabled or not apic.svr & SVR_ENABLE:
            return False
        s = self.state
        s.apic_timer_live = int(not timer & (LVT_MASKED | LVT_TSC_DEADLINE) and (timer & 0xFF) >= FIRST_VALID_VECTOR
                                and apic.initial_count > 0)
        for words, value in ((s.apic_irr, apic.irr), (s.apic_isr, apic.isr), (s.apic_tmr, apic.tmr)):
            for index in range(APIC_WORDS):
                words[index] = (value >> (64 * index)) & WORD_MASK
        s.apic_tpr, s.apic_timer_vector = apic.tpr, timer & 0xFF
        s.apic_periodic = int(bool(timer & LVT_PERIODIC))
        s.apic_initial_count, s.apic_divide_shift = apic.initial_count, divide_shift(apic.divide)
        s.apic_timer_start, s.apic_last_advance = apic.timer_start_ns, apic._last_advance
        return True

    def take_back(self) -> None:
        """Copy the 8259 master, the PIT's accounting and the local APIC back into the
        Python models (before Python device code runs, and at the end of every slice)."""
        if not self.live:
            return
        s = self.state
        s.live = 0
        self.live = False
        self.clock.state.tick_attention = 0
        self.clock.state.tick_at = NEVER
        board = self.board
        if s.pit_live:
            if s.irq0_to_pic:
                pic = board.pic.master
                pic.irr, pic.isr = s.irr, s.isr
            if s.irq0_from_hpet:                # its next match: the first after what C accounted
                matches = max(0, (s.pit_accounted - s.hpet_first_ns) // s.hpet_period_ns + 1)
                board.hpet.move_periodic_match(0, matches)
            else:
                board.pit._accounted_until = s.pit_accounted
            if s.ioapic_edges:                  # what the edges did to the masked pin
                board.ioapic.set_line(IRQ0_IOAPIC_PIN, True)
                board.ioapic.set_line(IRQ0_IOAPIC_PIN, False)
                s.ioapic_edges = 0
        if s.apic_live:
            apic = board.lapic
            apic.irr, apic.isr, apic.tmr = (sum(word << (64 * i) for i, word in enumerate(words))
                                            for words in (s.apic_irr, s.apic_isr, s.apic_tmr))
            apic._last_advance = s.apic_last_advance
        if s.delivered:
            self.on_delivered(s.delivered)
            s.delivered = 0
        if s.red_zone_pending:
            s.red_zone_pending = 0
            context = self.fast.context
            self._red_zone_look_due = (context.last_old_rsp, context.last_new_rsp, context.last_return_rip)
        if s.pit_live and s.irq0_to_pic:
            board.pic.master.refresh_output()    # a request C left pending reaches the run loop
        if s.apic_live:
            board.lapic.refresh_pending()
        s.pit_live = s.apic_live = s.apic_timer_live = 0

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
        """Statistics: IRQ 0 edges (PIT or HPET) and APIC timer expiries accounted in C, stops
        handed to the run loop, hlts woken in C."""
        return {"edges": self.state.edges, "handed_back": self.state.handed_back,
                "apic_expiries": self.state.apic_expiries, "hlt_wakes": self.state.hlt_wakes}

    def __del__(self) -> None:
        """Stop the timer thread: it reads this struct, so it must end before the struct."""
        if _lib is not None and getattr(self, "_pointer", None) is not None:   # not at interpreter exit
            _lib.tick_path_close(self._pointer)
