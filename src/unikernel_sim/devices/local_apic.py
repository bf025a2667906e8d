"""The local APIC of the one CPU (Intel SDM vol. 3A chapter 11), xAPIC mode, at
0xFEE00000, as QEMU 7.2 emulates it and SeaBIOS leaves it.

Register table (offset: register; R/W as the SDM's table 11-1):

  0x020 ID (bits 24-31)            0x030 version: 0x00050014 (version 0x14, max LVT 5)
  0x080 TPR (bits 0-7)             0x0A0 PPR (read-only, from TPR and the highest ISR)
  0x0B0 EOI (write-only)           0x0D0 LDR (bits 24-31)    0x0E0 DFR (bits 28-31; low bits read 1)
  0x0F0 SVR: bits 0-7 spurious vector, bit 8 APIC software enable
  0x100-0x170 ISR, 0x180-0x1F0 TMR, 0x200-0x270 IRR (256 bits each, read-only)
  0x280 ESR: bit 5 send illegal vector, 6 receive illegal vector, 7 illegal register
        address (reads show errors as they happen; a write clears)
  0x300/0x310 ICR low/high: vector, delivery mode (8-10), destination mode (11),
        level (14), trigger (15), shorthand (18-19); destination (bits 56-63)
  0x320 LVT timer (bit 17: periodic), 0x330 thermal, 0x340 performance counters,
  0x350 LINT0, 0x360 LINT1, 0x370 error: vector, delivery mode, mask (bit 16)...
  0x380 timer initial count, 0x390 current count (read-only), 0x3E0 divide configuration

The timer counts down at 1 GHz divided by the divide configuration (QEMU's APIC bus
clock: recorded 626,114 ticks of a divide-by-16 timer in 10 ms of PIT time, 625,000
expected), a period being initial count + 1 ticks as in QEMU. TSC-deadline mode is
not offered (CPUID does not advertise it, as QEMU's TCG does not).

Interrupts reach the CPU as in QEMU: the APIC's own highest pending vector whose
priority class is above the PPR's, else the 8259's request when LINT0 is unmasked
in ExtINT mode (SeaBIOS's virtual-wire set-up) or the APIC is globally disabled in
IA32_APIC_BASE. QEMU (and so unisim) keeps the 8259 path open when software
disables the APIC through the SVR; the SDM would mask every LVT then.

Power-on values are what SeaBIOS leaves (recorded): SVR 0x1FF, LINT0 ExtINT
(0x8700), LINT1 NMI (0x8400), the other LVTs masked, DFR flat, and in the ICR the
INIT-SIPI-SIPI SeaBIOS broadcast to count processors (0x000C4610). Interprocessor
interrupts reach this CPU only (fixed and lowest-priority to itself, by shorthand,
physical ID, broadcast or logical match); INIT, start-up, SMI and NMI messages are
counted and ignored: there is no other processor, and resetting this one is not
what a kernel probing for APs means.
"""
from __future__ import annotations

from typing import Callable

from unikernel_sim.devices.device import Device, MmioWindow

APIC_BASE_ADDRESS = 0xFEE00000
APIC_BASE_MSR_POWER_ON = 0xFEE00900            # base | enable (bit 11) | BSP (bit 8)
APIC_BASE_ENABLE = 1 << 11
APIC_BASE_BSP = 1 << 8
APIC_BASE_EXTD = 1 << 10                       # x2APIC: not offered (CPUID.1:ECX.x2APIC = 0)
WINDOW = 0x1000

ID, VERSION, TPR, APR, PPR, EOI, LDR, DFR, SVR = 0x020, 0x030, 0x080, 0x090, 0x0A0, 0x0B0, 0x0D0, 0x0E0, 0x0F0
ISR, TMR, IRR, ESR, ICR_LOW, ICR_HIGH = 0x100, 0x180, 0x200, 0x280, 0x300, 0x310
LVT_TIMER, LVT_THERMAL, LVT_PERFORMANCE, LVT_LINT0, LVT_LINT1, LVT_ERROR = 0x320, 0x330, 0x340, 0x350, 0x360, 0x370
INITIAL_COUNT, CURRENT_COUNT, DIVIDE = 0x380, 0x390, 0x3E0
LVT_OFFSETS = (LVT_TIMER, LVT_THERMAL, LVT_PERFORMANCE, LVT_LINT0, LVT_LINT1, LVT_ERROR)
VERSION_VALUE = 0x00050014
SVR_ENABLE = 1 << 8
SVR_BITS = 0x1FF
DFR_RESERVED_ONES = 0x0FFFFFFF

LVT_MASKED = 1 << 16
LVT_PERIODIC = 1 << 17
LVT_DELIVERY_STATUS = 1 << 12
LVT_REMOTE_IRR = 1 << 14
LVT_TSC_DEADLINE = 1 << 18
DELIVERY_MODE_SHIFT, DELIVERY_MODE_MASK = 8, 0x7
FIXED, LOWEST_PRIORITY, SMI, NMI, INIT, STARTUP, EXTINT = 0, 1, 2, 4, 5, 6, 7
ICR_LOGICAL = 1 << 11
ICR_LEVEL_TRIGGER = 1 << 15
SHORTHAND_SHIFT = 18
NO_SHORTHAND, SELF, ALL_INCLUDING_SELF, ALL_EXCLUDING_SELF = 0, 1, 2, 3
BROADCAST = 0xFF

ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7
FIRST_VALID_VECTOR = 16

TIMER_HZ = 1_000_000_000                       # the counter's clock before the divider
SEABIOS_LINT0 = 0x8700                         # ExtINT, level: the 8259 through LINT0
SEABIOS_LINT1 = 0x8400                         # NMI
SEABIOS_ICR = 0x000C4610                       # its INIT/SIPI broadcast, vector 0x10
ALL_ONES = 0xFFFFFFFF

READABLE = frozenset({ID, VERSION, TPR, APR, PPR, EOI, LDR, DFR, SVR, ESR, ICR_LOW, ICR_HIGH, *LVT_OFFSETS,
                      INITIAL_COUNT, CURRENT_COUNT, DIVIDE,
                      *range(ISR, ISR + 0x80, 0x10), *range(TMR, TMR + 0x80, 0x10), *range(IRR, IRR + 0x80, 0x10)})


def divide_shift(value: int) -> int:
    """Divide configuration (bits 0, 1, 3) -> log2 of the divisor (SDM figure 11-10):
    0b000 -> 2, 0b001 -> 4, ... 0b011 -> 16, 0b1000 -> 32 ... 0b1011 -> 1."""
    return (((value & 3) | ((value >> 1) & 4)) + 1) & 7


def _highest(bits: int) -> int:
    """The highest set bit's index, -1 for none."""
    return bits.bit_length() - 1


class LocalApic(Device):
    name = "local-apic"
    mmio = (MmioWindow(APIC_BASE_ADDRESS, WINDOW),)
    saved_fields = ("apic_base", "apic_id", "tpr", "ldr", "dfr", "svr", "isr", "tmr", "irr", "esr", "icr_low",
                    "icr_high", "lvt", "initial_count", "divide", "timer_start_ns", "_last_advance", "ignored_ipis",
                    "_pending")

    def __init__(self, now_ns: Callable[[], int], on_change: Callable[[], None] = lambda: None,
                 on_level_eoi: Callable[[int], None] = lambda vector: None,
                 on_reprogram: Callable[[], None] = lambda: None) -> None:
        self.now_ns = now_ns
        self.on_change = on_change            # whether an interrupt is pending may have changed
        self.on_level_eoi = on_level_eoi      # EOI of a level-triggered vector: to the I/O APIC
        self.on_reprogram = on_reprogram      # the timer's next expiry moved
        self.reset()

    def reset(self) -> None:
        """The state SeaBIOS hands over (recorded on QEMU 7.2)."""
        self.apic_base = APIC_BASE_MSR_POWER_ON
        self.apic_id = 0
        self.tpr = self.ldr = 0
        self.dfr = ALL_ONES
        self.svr = SVR_BITS
        self.isr = self.tmr = self.irr = 0
        self.esr = 0
        self.icr_low, self.icr_high = SEABIOS_ICR, 0
        self.lvt = [LVT_MASKED, LVT_MASKED, LVT_MASKED, SEABIOS_LINT0, SEABIOS_LINT1, LVT_MASKED]
        self.initial_count = self.divide = 0
        self.timer_start_ns = 0
        self._last_advance = 0                # virtual time the timer was last brought up to
        self.ignored_ipis = 0
        self._pending = False

    # --- the CPU side ------------------------------------------------------------------
    @property
    def globally_enabled(self) -> bool:
        return bool(self.apic_base & APIC_BASE_ENABLE)

    @property
    def accepts_pic(self) -> bool:
        """Whether the 8259's INTR reaches the CPU: LINT0 unmasked in ExtINT mode, or
        the APIC globally disabled (QEMU's apic_accept_pic_intr)."""
        lint0 = self.lvt[3]
        return (not self.globally_enabled
                or (not lint0 & LVT_MASKED and (lint0 >> DELIVERY_MODE_SHIFT) & DELIVERY_MODE_MASK == EXTINT))

    @property
    def interrupt_pending(self) -> bool:
        return self._pending

    def processor_priority(self) -> int:
        """SDM 11.8.3.1: the TPR if its class is at least the highest in-service class."""
        in_service = max(_highest(self.isr), 0)
        return self.tpr if (self.tpr >> 4) >= (in_service >> 4) else in_service & 0xF0

    def _deliverable(self) -> int | None:
        if not (self.globally_enabled and self.svr & SVR_ENABLE):
            return None
        requested = _highest(self.irr)
        if requested < 0:
            return None
        if (requested & 0xF0) <= (self.processor_priority() & 0xF0):
            return None
        return requested

    def acknowledge(self) -> int | None:
        """INTA: the vector to deliver (moved from IRR to ISR), or None."""
        vector = self._deliverable()
        if vector is None:
            return None
        self.irr &= ~(1 << vector)
        self.isr |= 1 << vector
        self._update()
        return vector

    def accept(self, vector: int, level_triggered: bool = False) -> None:
        """A fixed interrupt for this APIC (from the I/O APIC, the timer, an IPI)."""
        if vector < FIRST_VALID_VECTOR:
            self._error(ESR_RECEIVE_ILLEGAL_VECTOR)
            return
        self.irr |= 1 << vector
        if level_triggered:
            self.tmr |= 1 << vector
        else:
            self.tmr &= ~(1 << vector)
        self._update()

    def refresh_pending(self) -> None:
        """Recompute the CPU's request after IRR/ISR were set from outside (cpu/tick_path.py)."""
        self._update()

    def _update(self) -> None:
        pending = self._deliverable() is not None
        if pending != self._pending:
            self._pending = pending
            self.on_change()

    def _error(self, bits: int) -> None:
        self.esr |= bits
        error_lvt = self.lvt[5]
        if not error_lvt & LVT_MASKED:
            self.accept(error_lvt & 0xFF)

    # --- IA32_APIC_BASE ------------------------------------------------------------------
    def write_base_msr(self, value: int) -> None:
        """WRMSR 0x1B: enable/disable globally (the base stays 0xFEE00000: moving it
        is not emulated; x2APIC mode is not offered, so EXTD is ignored)."""
        was_enabled = self.globally_enabled
        self.apic_base = (APIC_BASE_ADDRESS | APIC_BASE_BSP | (value & APIC_BASE_ENABLE))
        if was_enabled and not self.globally_enabled:
            self.reset_registers_on_disable()
        self._update()
        self.on_change()

    def reset_registers_on_disable(self) -> None:
        """SDM 11.4.3: a global disable is like a reset of the APIC's registers but
        the ID (the state that makes the 8259 reach the CPU directly)."""
        self.tpr = self.ldr = 0
        self.dfr = ALL_ONES
        self.svr = 0xFF
        self.isr = self.tmr = self.irr = self.esr = 0
        self.lvt = [LVT_MASKED] * len(LVT_OFFSETS)
        self.initial_count = 0

    # --- the timer --------------------------------------------------------------------------
    def _period_ns(self) -> int:
        return (self.initial_count + 1) << divide_shift(self.divide)

    def current_count(self, now_ns: int) -> int:
        if self.initial_count == 0:
            return 0
        ticks = (now_ns - self.timer_start_ns) >> divide_shift(self.divide)
        if self.lvt[0] & LVT_PERIODIC:
            return self.initial_count - ticks % (self.initial_count + 1)
        return max(0, self.initial_count - ticks)

    def _expiry_after(self, now_ns: int) -> int | None:
        """The next time the count reaches zero after now_ns (None: never)."""
        if self.initial_count == 0:
            return None
        period = self._period_ns()
        elapsed = now_ns - self.timer_start_ns
        if self.lvt[0] & LVT_PERIODIC:
            return self.timer_start_ns + (elapsed // period + 1) * period
        end = self.timer_start_ns + period
        return end if end > now_ns else None

    def next_event_ns(self) -> int | None:
        if self.lvt[0] & LVT_MASKED or self.initial_count == 0:
            return None
        return self._expiry_after(self._last_advance)

    def advance(self, now_ns: int) -> None:
        """Raise the timer's vector for each expiry up to now_ns (one, however many
        periods passed: an edge interrupt already in the IRR is not counted twice)."""
        expiry = self._expiry_after(self._last_advance) if self.initial_count else None
        if expiry is not None and expiry <= now_ns and not self.lvt[0] & LVT_MASKED:
            self.accept(self.lvt[0] & 0xFF)
        self._last_advance = max(self._last_advance, now_ns)

    def _start_timer(self, count: int) -> None:
        now = self.now_ns()
        self.initial_count = count
        self.timer_start_ns = now
        self._last_advance = now
        self.on_reprogram()

    # --- guest accesses ------------------------------------------------------------------
    def mmio_read(self, offset: int, size: int) -> int:
        register = offset & ~0xF
        value = self._read(register)
        return value >> (8 * (offset & 3))

    def _read(self, register: int) -> int:
        if register not in READABLE:
            self._error(ESR_ILLEGAL_REGISTER)
            return 0
        if register == ID:
            return self.apic_id << 24
        if register == VERSION:
            return VERSION_VALUE
        if register == TPR:
            return self.tpr
        if register == PPR:
            return self.processor_priority()
        if register == LDR:
            return self.ldr
        if register == DFR:
            return self.dfr
        if register == SVR:
            return self.svr
        if register == ESR:
            return self.esr
        if register == ICR_LOW:
            return self.icr_low
        if register == ICR_HIGH:
            return self.icr_high
        if register in LVT_OFFSETS:
            return self.lvt[LVT_OFFSETS.index(register)]
        if register == INITIAL_COUNT:
            return self.initial_count
        if register == CURRENT_COUNT:
            return self.current_count(self.now_ns())
        if register == DIVIDE:
            return self.divide
        for base, bits in ((ISR, self.isr), (TMR, self.tmr), (IRR, self.irr)):
            if base <= register < base + 0x80:
                return (bits >> (32 * ((register - base) >> 4))) & ALL_ONES
        return 0                                               # APR, EOI

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if size < 4 or offset & 0xF:
            return                                             # as QEMU: only whole dwords
        register = offset
        if register == ID:
            self.apic_id = value >> 24
        elif register == TPR:
            self.tpr = value & 0xFF
            self._update()
        elif register == EOI:
            self._end_of_interrupt()
        elif register == LDR:
            self.ldr = value & 0xFF000000
        elif register == DFR:
            self.dfr = value | DFR_RESERVED_ONES
        elif register == SVR:
            self.svr = value & SVR_BITS
            self._update()
            self.on_change()
        elif register == ESR:
            self.esr = 0
        elif register == ICR_LOW:
            self.icr_low = value & ~LVT_DELIVERY_STATUS
            self._send_ipi()
        elif register == ICR_HIGH:
            self.icr_high = value & 0xFF000000
        elif register in LVT_OFFSETS:
            self._write_lvt(LVT_OFFSETS.index(register), value)
        elif register == INITIAL_COUNT:
            self._start_timer(value & ALL_ONES)
        elif register == DIVIDE:
            self.divide = value & 0xB                      # as QEMU: the count is not restarted
            self.on_reprogram()
        elif register not in READABLE:
            self._error(ESR_ILLEGAL_REGISTER)

    def _write_lvt(self, index: int, value: int) -> None:
        value &= ~(LVT_DELIVERY_STATUS | LVT_REMOTE_IRR)
        if index == 0:
            self.lvt[0] = value & ~LVT_TSC_DEADLINE
            self.on_reprogram()
        else:
            self.lvt[index] = value
        if index == 3:
            self.on_change()                                   # the 8259 path opened or closed

    def _end_of_interrupt(self) -> None:
        vector = _highest(self.isr)
        if vector < 0:
            return
        self.isr &= ~(1 << vector)
        if self.tmr & (1 << vector):
            self.on_level_eoi(vector)
        self._update()

    def _send_ipi(self) -> None:
        """An IPI from this CPU (SDM 11.6): only this CPU can be its destination."""
        low = self.icr_low
        mode = (low >> DELIVERY_MODE_SHIFT) & DELIVERY_MODE_MASK
        shorthand = (low >> SHORTHAND_SHIFT) & 3
        if shorthand == ALL_EXCLUDING_SELF:
            targets_self = False
        elif shorthand in (SELF, ALL_INCLUDING_SELF):
            targets_self = True
        else:
            targets_self = self._is_destination(self.icr_high >> 24, bool(low & ICR_LOGICAL))
        if mode in (FIXED, LOWEST_PRIORITY):
            vector = low & 0xFF
            if vector < FIRST_VALID_VECTOR:
                self._error(ESR_SEND_ILLEGAL_VECTOR)
            elif targets_self:
                self.accept(vector, level_triggered=False)
        elif targets_self or shorthand == ALL_EXCLUDING_SELF:
            self.ignored_ipis += 1                              # INIT, start-up, SMI, NMI

    def _is_destination(self, destination: int, logical: bool) -> bool:
        """SDM 11.6.2: physical ID match or 0xFF; logical: flat model bit match (or 0xFF)."""
        if not logical:
            return destination in (self.apic_id, BROADCAST)
        if destination == BROADCAST:
            return True
        return bool(destination & (self.ldr >> 24))

    def is_destination(self, destination: int, logical: bool) -> bool:
        """For the I/O APIC's redirection entries."""
        return self._is_destination(destination, logical)

    def describe_state(self) -> str:
        state = "enabled" if self.globally_enabled and self.svr & SVR_ENABLE else "disabled"
        return (f"{self.name}: {state}, id={self.apic_id}, tpr={self.tpr:#04x}, svr={self.svr:#05x}, "
                f"irr={_vectors(self.irr)}, isr={_vectors(self.isr)}, timer lvt={self.lvt[0]:#x} "
                f"initial={self.initial_count:#x} divide={self.divide:#x}, lint0={self.lvt[3]:#x}")


def _vectors(bits: int) -> str:
    found = [f"{vector:#04x}" for vector in range(256) if bits >> vector & 1]
    return "[" + ",".join(found) + "]"
