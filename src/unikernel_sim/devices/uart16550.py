"""16550A UART (National Semiconductor PC16550D datasheet, "Register Description").

Transmission is instantaneous: THR is always empty again by the time the guest
reads LSR, so LSR reads 0x60 (THRE | TEMT) plus DR when input waits; it never
reads 0xFF, which is what an absent UART returns. Input comes from a host-side
queue that refills the 16-byte receive FIFO as the guest drains it: no overrun,
and the same bytes at the same reads in every run.

Register table (offset from the base port, DLAB = LCR bit 7):

  +0  RBR (read, DLAB=0)   received byte
      THR (write, DLAB=0)  byte to transmit
      DLL (DLAB=1)         divisor latch, low byte
  +1  IER (DLAB=0)         bit 0 rx data, 1 THR empty, 2 line status, 3 modem status
      DLM (DLAB=1)         divisor latch, high byte
  +2  IIR (read)           bit 0 = 1: nothing pending; bits 1-3 source; 6-7 FIFOs on
      FCR (write)          bit 0 FIFO enable, 1 clear rx, 2 clear tx, 6-7 rx trigger
  +3  LCR                  word length, stop bits, parity, bit 7 DLAB
  +4  MCR                  bit 0 DTR, 1 RTS, 2 OUT1, 3 OUT2 (IRQ gate), 4 loopback
  +5  LSR                  bit 0 DR, 1 OE, 5 THRE, 6 TEMT
  +6  MSR                  bits 0-3 deltas, 4 CTS, 5 DSR, 6 RI, 7 DCD
  +7  SCR                  scratch
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from unikernel_sim.devices.device import Device, PortRange

RBR_THR_DLL = 0
IER_DLM = 1
IIR_FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

LCR_DLAB = 0x80
IER_RX_DATA = 0x01
IER_THR_EMPTY = 0x02
IER_LINE_STATUS = 0x04
IER_MODEM_STATUS = 0x08
IIR_NONE = 0x01
IIR_MODEM_STATUS = 0x00
IIR_THR_EMPTY = 0x02
IIR_RX_DATA = 0x04
IIR_LINE_STATUS = 0x06
IIR_FIFOS_ENABLED = 0xC0
FCR_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_CLEAR_TX = 0x04
MCR_DTR = 0x01
MCR_RTS = 0x02
MCR_OUT1 = 0x04
MCR_OUT2 = 0x08
MCR_LOOPBACK = 0x10
MCR_MASK = 0x1F
LSR_DATA_READY = 0x01
LSR_OVERRUN = 0x02
LSR_THR_EMPTY = 0x20
LSR_TRANSMITTER_EMPTY = 0x40
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80
MSR_CONNECTED = MSR_CTS | MSR_DSR | MSR_DCD   # a terminal is attached
FIFO_DEPTH = 16

COM1_BASE = 0x3F8
COM1_IRQ = 4


class Uart16550(Device):
    name = "uart16550"
    irq_lines = (COM1_IRQ,)
    saved_fields = ("divisor", "ier", "lcr", "mcr", "lsr_errors", "msr_deltas", "scr", "fifo_enabled", "rx_fifo",
                    "thr_empty_pending", "_irq_level", "input")

    def __init__(
        self,
        base: int = COM1_BASE,
        transmit: Callable[[int], None] | None = None,
        irq_line: Callable[[bool], None] | None = None,
    ) -> None:
        self.base = base
        self.ports = (PortRange(base, 8),)
        self.transmit = transmit or (lambda byte: None)
        self.irq_line = irq_line or (lambda level: None)
        # Told after every change whether a THR write is a plain transmit and what an
        # LSR read returns without side effect (None: it has one): the C port path
        # serves those two accesses while that holds (cpu/fast_ports.py).
        self.fast_path: Callable[[bool, int | None], None] = lambda tx_plain, lsr_value: None
        self.input: deque[int] = deque()
        self.reset()

    def reset(self) -> None:
        """Power-on register values (datasheet, "Reset" table)."""
        self.divisor = 0
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.lsr_errors = 0
        self.msr_deltas = 0
        self.scr = 0
        self.fifo_enabled = False
        self.rx_fifo: deque[int] = deque()
        self.thr_empty_pending = False   # THRE interrupt latched, cleared by IIR read / THR write
        self._irq_level = False
        self.publish()

    def publish(self) -> None:
        """Tell fast_path what a THR write and an LSR read amount to now."""
        tx_plain = not self.lcr & LCR_DLAB and not self.mcr & MCR_LOOPBACK and not self.ier & IER_THR_EMPTY
        quiet = not self.rx_fifo and not self.lsr_errors
        self.fast_path(tx_plain, LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY if quiet else None)

    def after_load(self) -> None:
        self.publish()

    # --- host side -------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Queue bytes as if typed on the terminal attached to the port."""
        self.input.extend(data)
        self._refill()
        self._update_irq()
        self.publish()

    # --- guest side ------------------------------------------------------
    def _io_read(self, port: int, size: int) -> int:
        reg = port - self.base
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            return self.divisor & 0xFF if dlab else self._read_rbr()
        if reg == IER_DLM:
            return self.divisor >> 8 if dlab else self.ier
        if reg == IIR_FCR:
            return self._read_iir()
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            return self._read_lsr()
        if reg == MSR:
            return self._read_msr()
        return self.scr

    def io_read(self, port: int, size: int) -> int:
        value = self._io_read(port, size)
        self.publish()                   # a read may pop received data or clear errors
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        reg = port - self.base
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif reg == IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                self.ier = value & 0x0F
                self.thr_empty_pending = bool(self.ier & IER_THR_EMPTY)
        elif reg == IIR_FCR:
            self._write_fcr(value)
        elif reg == LCR:
            self.lcr = value
        elif reg == MCR:
            old = self._modem_lines()
            self.mcr = value & MCR_MASK
            self._note_modem_change(old)
        elif reg == SCR:
            self.scr = value
        self._update_irq()
        self.publish()

    # --- registers -------------------------------------------------------
    def _write_thr(self, value: int) -> None:
        if self.mcr & MCR_LOOPBACK:
            if len(self.rx_fifo) >= (FIFO_DEPTH if self.fifo_enabled else 1):
                self.lsr_errors |= LSR_OVERRUN
            else:
                self.rx_fifo.append(value)
        else:
            self.transmit(value)
        self.thr_empty_pending = bool(self.ier & IER_THR_EMPTY)

    def _write_fcr(self, value: int) -> None:
        self.fifo_enabled = bool(value & FCR_ENABLE)
        if value & FCR_CLEAR_RX:
            self.rx_fifo.clear()
            self._refill()

    def _read_rbr(self) -> int:
        value = self.rx_fifo.popleft() if self.rx_fifo else 0
        self._refill()
        self._update_irq()
        return value

    def _read_lsr(self) -> int:
        value = LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY | self.lsr_errors
        if self.rx_fifo:
            value |= LSR_DATA_READY
        self.lsr_errors = 0   # error bits clear on read
        self._update_irq()
        return value

    def _read_msr(self) -> int:
        value = self._modem_lines() | self.msr_deltas
        self.msr_deltas = 0
        self._update_irq()
        return value

    def _read_iir(self) -> int:
        source = self._pending_source()
        if source == IIR_THR_EMPTY:
            self.thr_empty_pending = False   # reading IIR clears the THRE source
            self._update_irq()
        fifo_bits = IIR_FIFOS_ENABLED if self.fifo_enabled else 0
        return source | fifo_bits

    def _pending_source(self) -> int:
        """Highest-priority enabled interrupt source (datasheet table 4)."""
        if self.ier & IER_LINE_STATUS and self.lsr_errors:
            return IIR_LINE_STATUS
        if self.ier & IER_RX_DATA and self.rx_fifo:
            return IIR_RX_DATA
        if self.ier & IER_THR_EMPTY and self.thr_empty_pending:
            return IIR_THR_EMPTY
        if self.ier & IER_MODEM_STATUS and self.msr_deltas:
            return IIR_MODEM_STATUS
        return IIR_NONE

    def _modem_lines(self) -> int:
        if not self.mcr & MCR_LOOPBACK:
            return MSR_CONNECTED
        lines = 0
        if self.mcr & MCR_RTS:
            lines |= MSR_CTS
        if self.mcr & MCR_DTR:
            lines |= MSR_DSR
        if self.mcr & MCR_OUT1:
            lines |= MSR_RI
        if self.mcr & MCR_OUT2:
            lines |= MSR_DCD
        return lines

    def _note_modem_change(self, old: int) -> None:
        new = self._modem_lines()
        changed = old ^ new
        if changed & MSR_CTS:
            self.msr_deltas |= 0x01
        if changed & MSR_DSR:
            self.msr_deltas |= 0x02
        if old & MSR_RI and not new & MSR_RI:   # trailing edge of RI
            self.msr_deltas |= 0x04
        if changed & MSR_DCD:
            self.msr_deltas |= 0x08

    def _refill(self) -> None:
        if self.mcr & MCR_LOOPBACK:
            return
        capacity = FIFO_DEPTH if self.fifo_enabled else 1
        while self.input and len(self.rx_fifo) < capacity:
            self.rx_fifo.append(self.input.popleft())

    def _update_irq(self) -> None:
        # On a PC the UART's interrupt output reaches the PIC only through OUT2.
        level = self._pending_source() != IIR_NONE and bool(self.mcr & MCR_OUT2)
        if level != self._irq_level:
            self._irq_level = level
            self.irq_line(level)
