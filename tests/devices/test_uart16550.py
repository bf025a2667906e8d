"""16550A registers against the PC16550D datasheet ("Register Description",
"Reset" table, "Interrupt Identification Register" priorities)."""
from __future__ import annotations

from unikernel_sim.devices.uart16550 import Uart16550

BASE = 0x3F8
RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR = range(8)


def make(**kw):
    sent = []
    irq = []
    uart = Uart16550(BASE, transmit=sent.append, irq_line=irq.append, **kw)
    return uart, sent, irq


def rd(uart, reg):
    return uart.io_read(BASE + reg, 1)


def wr(uart, reg, value):
    uart.io_write(BASE + reg, 1, value)


def test_reset_values():
    uart, _, _ = make()
    assert rd(uart, IER) == 0x00
    assert rd(uart, IIR) == 0x01           # no interrupt pending, FIFOs off
    assert rd(uart, LCR) == 0x00
    assert rd(uart, MCR) == 0x00
    assert rd(uart, LSR) == 0x60           # THRE | TEMT, never 0xFF
    assert rd(uart, MSR) & 0xF0 == 0xB0    # CTS, DSR, DCD: a terminal is attached


def test_divisor_latch_behind_dlab():
    uart, sent, _ = make()
    wr(uart, LCR, 0x80)
    wr(uart, RBR, 0x0C)                    # DLL
    wr(uart, IER, 0x00)                    # DLM
    assert (rd(uart, RBR), rd(uart, IER)) == (0x0C, 0x00)
    assert uart.divisor == 12              # 9600 baud
    wr(uart, LCR, 0x03)
    assert rd(uart, IER) == 0x00           # IER, not DLM, again
    assert sent == []                      # writing DLL did not transmit


def test_transmit_and_scratch():
    uart, sent, _ = make()
    for ch in b"hi":
        wr(uart, RBR, ch)
    assert bytes(sent) == b"hi"
    wr(uart, SCR, 0x5A)
    assert rd(uart, SCR) == 0x5A


def test_fifo_enable_shows_in_iir():
    uart, _, _ = make()
    wr(uart, IIR, 0xC7)
    assert rd(uart, IIR) == 0xC1


def test_loopback_returns_transmitted_bytes_and_mirrors_modem_lines():
    uart, sent, _ = make()
    wr(uart, MCR, 0x10 | 0x0F)             # loopback, DTR RTS OUT1 OUT2
    wr(uart, RBR, 0xAE)
    assert sent == []
    assert rd(uart, LSR) & 0x01
    assert rd(uart, RBR) == 0xAE
    assert rd(uart, LSR) & 0x01 == 0
    assert rd(uart, MSR) & 0xF0 == 0xF0    # CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2
    wr(uart, MCR, 0x10)
    assert rd(uart, MSR) & 0xF0 == 0x00


def test_receive_from_host_input():
    uart, _, _ = make()
    uart.feed(b"ab")
    assert rd(uart, LSR) & 0x01
    assert rd(uart, RBR) == ord("a")
    assert rd(uart, RBR) == ord("b")
    assert rd(uart, LSR) == 0x60


def test_interrupts_and_priorities():
    uart, _, irq = make()
    wr(uart, MCR, 0x08)                    # OUT2 gates the IRQ line
    wr(uart, IER, 0x03)                    # rx data + THR empty
    assert irq == [True]
    assert rd(uart, IIR) == 0x02           # THRE
    assert rd(uart, IIR) == 0x01           # reading IIR cleared the THRE source
    assert irq == [True, False]
    uart.feed(b"x")
    assert rd(uart, IIR) == 0x04           # received data available
    wr(uart, RBR, ord("y"))                # transmit re-arms THRE
    assert rd(uart, IIR) == 0x04           # rx data outranks THRE
    rd(uart, RBR)
    assert rd(uart, IIR) == 0x02


def test_irq_needs_out2():
    uart, _, irq = make()
    wr(uart, IER, 0x02)
    assert irq == []
    wr(uart, MCR, 0x08)
    assert irq == [True]


def test_loopback_overrun_sets_oe():
    uart, _, _ = make()
    wr(uart, MCR, 0x10)
    wr(uart, RBR, 1)
    wr(uart, RBR, 2)                       # no FIFO: the holding register overflows
    assert rd(uart, LSR) & 0x02
    assert rd(uart, LSR) & 0x02 == 0       # OE clears when LSR is read
