"""Intel 8259A programmable interrupt controller, master/slave pair as on a PC.

Follows the 8259A datasheet: ICW1-ICW4 initialisation (vector base, cascade,
8086 mode, auto-EOI, level/edge), OCW1 mask, OCW2 EOI and rotation commands,
OCW3 register reads, poll and special mask mode; fully nested priorities with
rotation; spurious IR7 when a request vanished before the CPU acknowledged it
("DEFAULT IR7", datasheet: "Edge and level triggered modes").

Register table (port = base + A0):

  A0=0 write  D4=1: ICW1  bit 0 IC4, 1 SNGL, 3 LTIM (level), 4 marks ICW1
              D4=0 D3=0: OCW2  bits 7-5 R/SL/EOI, bits 2-0 level
              D4=0 D3=1: OCW3  bit 0 RIS, 1 RR, 2 P (poll), 5 SMM, 6 ESMM
  A0=0 read   IRR or ISR (as OCW3 selected), or the poll word after a poll command
  A0=1 write  ICW2 (vector base, bits 7-3), ICW3, ICW4 (bit 0 8086, 1 AEOI, 4 SFNM)
              during initialisation; OCW1 (interrupt mask) after it
  A0=1 read   IMR

Edge-triggered requests latch in IRR (a pulse shorter than the CPU's response
is not lost, as in QEMU); level-triggered requests follow the line.
"""
from __future__ import annotations

from typing import Callable

from unikernel_sim.devices.device import Device, PortRange, Stateful

ICW1_IC4 = 0x01
ICW1_SINGLE = 0x02
ICW1_LEVEL = 0x08
ICW1_MARK = 0x10
OCW3_MARK = 0x08
OCW3_RIS = 0x01
OCW3_RR = 0x02
OCW3_POLL = 0x04
OCW3_SMM = 0x20
OCW3_ESMM = 0x40
ICW4_8086 = 0x01
ICW4_AEOI = 0x02
ICW4_SFNM = 0x10
POLL_INTERRUPT = 0x80
SPURIOUS_LEVEL = 7
CASCADE_LINE = 2

MASTER_COMMAND, MASTER_DATA = 0x20, 0x21
SLAVE_COMMAND, SLAVE_DATA = 0xA0, 0xA1
BIOS_MASTER_BASE = 0x08           # as a PC BIOS leaves it (real-mode IVT layout)
BIOS_SLAVE_BASE = 0x70
BIOS_MASTER_MASK = 0xFF & ~(1 << CASCADE_LINE)
BIOS_SLAVE_MASK = 0xFF


class Pic8259(Stateful):
    """One 8259A. ``output`` is how its INT output reaches the master (or the CPU)."""

    saved_fields = ("irr", "isr", "imr", "lines", "vector_base", "icw3", "icw4", "level_triggered", "single",
                    "lowest_priority", "read_isr", "poll_pending", "special_mask", "rotate_on_aeoi", "init_step",
                    "expect_icw4", "_int_output")

    def __init__(self, base_port: int, *, is_master: bool, vector_base: int,
                 output: Callable[[bool], None] | None = None) -> None:
        self.base_port = base_port
        self.is_master = is_master
        self.output = output or (lambda level: None)
        self.irr = 0
        self.isr = 0
        self.imr = 0
        self.lines = 0               # current input levels
        self.vector_base = vector_base
        self.icw3 = 1 << CASCADE_LINE if is_master else CASCADE_LINE
        self.icw4 = ICW4_8086
        self.level_triggered = False
        self.single = False
        self.lowest_priority = 7
        self.read_isr = False
        self.poll_pending = False
        self.special_mask = False
        self.rotate_on_aeoi = False
        self.init_step = 0           # 0: operational; 2/3/4: expecting that ICW
        self.expect_icw4 = False
        self._int_output = False

    # --- interrupt lines (from devices, via the machine) --------------------------
    def set_line(self, line: int, level: bool) -> None:
        bit = 1 << line
        if level:
            if self.level_triggered or not self.lines & bit:
                self.irr |= bit          # rising edge, or level held
            self.lines |= bit
        else:
            self.lines &= ~bit
            if self.level_triggered:
                self.irr &= ~bit
        self._update_output()

    def pulse(self, line: int) -> None:
        """A rising edge followed by the line falling again (an edge-triggered tick)."""
        self.set_line(line, True)
        self.set_line(line, False)

    # --- priorities ----------------------------------------------------------------
    def _priority(self, line: int) -> int:
        """0 = highest. IR(lowest_priority+1) is the highest priority."""
        return (line - self.lowest_priority - 1) % 8

    def _highest(self, mask: int) -> int | None:
        candidates = [line for line in range(8) if mask & (1 << line)]
        return min(candidates, key=self._priority) if candidates else None

    def _requested_line(self) -> int | None:
        """The IRR line that would interrupt the CPU now, or None."""
        pending = self.irr & ~self.imr
        if not pending:
            return None
        line = self._highest(pending)
        in_service = self.isr & ~self.imr if self.special_mask else self.isr
        if self.is_master and self.icw4 & ICW4_SFNM:
            in_service &= ~self.icw3      # the slave may interrupt its own in-service level
        blocking = self._highest(in_service)
        if blocking is not None and self._priority(blocking) <= self._priority(line):
            return None
        return line

    def _update_output(self) -> None:
        level = self._requested_line() is not None
        if level != self._int_output:
            self._int_output = level
            self.output(level)

    def refresh_output(self) -> None:
        """Recompute INT after irr/isr were set from outside (cpu/tick_path.py)."""
        self._update_output()

    @property
    def interrupt_output(self) -> bool:
        return self._int_output

    # --- acknowledge (INTA cycle) ------------------------------------------------------
    def acknowledge(self) -> tuple[int, bool]:
        """One INTA: returns (level, genuine). A vanished request gives IR7, not in service."""
        line = self._requested_line()
        if line is None:
            return SPURIOUS_LEVEL, False
        bit = 1 << line
        if not self.level_triggered:
            self.irr &= ~bit
        if self.icw4 & ICW4_AEOI:
            if self.rotate_on_aeoi:
                self.lowest_priority = line
        else:
            self.isr |= bit
        self._update_output()
        return line, True

    def vector_for(self, level: int) -> int:
        return (self.vector_base & 0xF8) | level

    # --- I/O --------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port == self.base_port + 1:
            return self.imr
        if self.poll_pending:
            self.poll_pending = False
            line = self._requested_line()
            if line is None:
                return 0
            self.acknowledge()
            return POLL_INTERRUPT | line
        return self.isr if self.read_isr else self.irr

    def io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port == self.base_port:
            if value & ICW1_MARK:
                self._icw1(value)
            elif value & OCW3_MARK:
                self._ocw3(value)
            else:
                self._ocw2(value)
        elif self.init_step == 2:
            self.vector_base = value & 0xF8
            self.init_step = 4 if self.single else 3
            if self.init_step == 4 and not self.expect_icw4:
                self.init_step = 0
        elif self.init_step == 3:
            self.icw3 = value
            self.init_step = 4 if self.expect_icw4 else 0
        elif self.init_step == 4:
            self.icw4 = value
            self.init_step = 0
        else:
            self.imr = value
        self._update_output()

    def _icw1(self, value: int) -> None:
        """ICW1 resets the chip's state (datasheet, "Initialization Command Words")."""
        self.level_triggered = bool(value & ICW1_LEVEL)
        self.single = bool(value & ICW1_SINGLE)
        self.expect_icw4 = bool(value & ICW1_IC4)
        if not self.expect_icw4:
            self.icw4 = 0
        self.imr = 0
        self.isr = 0
        self.irr = 0 if not self.level_triggered else self.lines
        self.lowest_priority = 7
        self.special_mask = False
        self.read_isr = False
        self.poll_pending = False
        self.rotate_on_aeoi = False
        self.init_step = 2

    def _ocw2(self, value: int) -> None:
        command = value >> 5
        level = value & 7
        if command == 0b001:                       # non-specific EOI
            self._end_of_interrupt(self._highest(self.isr), rotate=False)
        elif command == 0b011:                     # specific EOI
            self._end_of_interrupt(level, rotate=False)
        elif command == 0b101:                     # rotate on non-specific EOI
            self._end_of_interrupt(self._highest(self.isr), rotate=True)
        elif command == 0b111:                     # rotate on specific EOI
            self._end_of_interrupt(level, rotate=True)
        elif command == 0b100:                     # rotate in automatic EOI mode (set)
            self.rotate_on_aeoi = True
        elif command == 0b000:                     # rotate in automatic EOI mode (clear)
            self.rotate_on_aeoi = False
        elif command == 0b110:                     # set priority: level becomes the lowest
            self.lowest_priority = level

    def _end_of_interrupt(self, level: int | None, *, rotate: bool) -> None:
        if level is None:
            return
        self.isr &= ~(1 << level)
        if rotate:
            self.lowest_priority = level

    def _ocw3(self, value: int) -> None:
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)
        if value & OCW3_POLL:
            self.poll_pending = True
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)


class PicPair(Device):
    """Master + slave cascaded on master IR2, as wired in every PC/AT.

    ``sync`` runs before every port read, so that an IRR read sees the timer
    ticks that are due (the board brings the timed devices up to date)."""

    name = "i8259"
    ports = (PortRange(MASTER_COMMAND, 2), PortRange(SLAVE_COMMAND, 2))
    saved_fields = ("master", "slave")

    def __init__(self, master_base: int = BIOS_MASTER_BASE, slave_base: int = BIOS_SLAVE_BASE,
                 on_change: Callable[[], None] | None = None) -> None:
        self.on_change = on_change or (lambda: None)
        self.sync: Callable[[], None] = lambda: None
        self.on_mask_change: Callable[[], None] = lambda: None   # which timed events matter changed
        self.master = Pic8259(MASTER_COMMAND, is_master=True, vector_base=master_base,
                              output=lambda level: self.on_change())
        self.slave = Pic8259(SLAVE_COMMAND, is_master=False, vector_base=slave_base,
                             output=lambda level: self.master.set_line(CASCADE_LINE, level))

    def power_on_state(self) -> None:
        """As a PC BIOS hands over: vector bases 0x08/0x70, every IRQ masked but the
        cascade, so a kernel receives nothing until it unmasks (or re-initialises)."""
        self.master.imr = BIOS_MASTER_MASK
        self.slave.imr = BIOS_SLAVE_MASK

    def set_irq(self, irq: int, level: bool) -> None:
        chip, line = (self.master, irq) if irq < 8 else (self.slave, irq - 8)
        chip.set_line(line, level)

    def pulse_irq(self, irq: int) -> None:
        chip, line = (self.master, irq) if irq < 8 else (self.slave, irq - 8)
        chip.pulse(line)

    def irq_masked(self, irq: int) -> bool:
        """Whether IRQ irq cannot reach the CPU because of a mask bit (the slave's
        own, or the cascade line's at the master)."""
        if irq < 8:
            return bool(self.master.imr & (1 << irq))
        return bool(self.slave.imr & (1 << (irq - 8)) or self.master.imr & (1 << CASCADE_LINE))

    @property
    def interrupt_pending(self) -> bool:
        return self.master.interrupt_output

    def acknowledge(self) -> tuple[int, int | None]:
        """INTA for the CPU: returns (vector, irq); irq is None for a spurious interrupt."""
        level, genuine = self.master.acknowledge()
        if genuine and level == CASCADE_LINE and self.master.icw3 & (1 << CASCADE_LINE):
            slave_level, slave_genuine = self.slave.acknowledge()
            return self.slave.vector_for(slave_level), (8 + slave_level) if slave_genuine else None
        return self.master.vector_for(level), level if genuine else None

    def io_read(self, port: int, size: int) -> int:
        self.sync()
        return self._chip(port).io_read(port, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        masks = (self.master.imr, self.slave.imr)
        self._chip(port).io_write(port, size, value)
        if (self.master.imr, self.slave.imr) != masks:     # OCW1, or ICW1 clearing the IMR
            self.on_mask_change()

    def _chip(self, port: int) -> Pic8259:
        return self.master if port in (MASTER_COMMAND, MASTER_DATA) else self.slave

    def describe_state(self) -> str:
        m, s = self.master, self.slave
        return (f"i8259: master irr={m.irr:#04x} isr={m.isr:#04x} imr={m.imr:#04x} base={m.vector_base:#04x}; "
                f"slave irr={s.irr:#04x} isr={s.isr:#04x} imr={s.imr:#04x} base={s.vector_base:#04x}")
