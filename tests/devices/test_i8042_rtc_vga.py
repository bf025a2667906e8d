"""i8042 keyboard controller, PS/2 keyboard, CMOS RTC and VGA text registers
against their datasheets / the IBM PC/AT technical reference behaviour."""
from __future__ import annotations

import datetime as dt

import pytest

from unikernel_sim.devices.cmos_rtc import CmosRtc
from unikernel_sim.devices.i8042 import I8042
from unikernel_sim.devices.scancodes import text_scancodes
from unikernel_sim.devices.vga_text import VgaText


class Clock:
    ns = 0

    def __call__(self) -> int:
        return self.ns


def make_kbc(start_ns=0):
    clock = Clock()
    irqs, resets = [], []
    kbc = I8042(clock, irq1=lambda: irqs.append(clock.ns), reset=lambda: resets.append(True),
                keys_start_ns=start_ns, key_interval_ns=1000)
    return kbc, clock, irqs, resets


def cmd(kbc, value):
    kbc.io_write(0x64, 1, value)


def data_in(kbc):
    assert kbc.io_read(0x64, 1) & 0x01, "output buffer should be full"
    return kbc.io_read(0x60, 1)


def test_controller_self_tests_and_configuration_byte():
    kbc, _, _, _ = make_kbc()
    cmd(kbc, 0xAA)
    assert data_in(kbc) == 0x55
    cmd(kbc, 0xAB)
    assert data_in(kbc) == 0x00
    cmd(kbc, 0x20)
    config = data_in(kbc)
    assert config & 0x01 and config & 0x40      # IRQ1 on, translation on
    cmd(kbc, 0x60)
    kbc.io_write(0x60, 1, 0x00)
    cmd(kbc, 0x20)
    assert data_in(kbc) == 0x00
    assert kbc.io_read(0x64, 1) & 0x04          # system flag set after POST


def test_an_empty_output_buffer_reads_back_the_last_byte():
    # QEMU (and the 8042's data register) keep the last byte: a kernel whose IRQ 1 handler
    # swallowed the self-test reply still finds 0x55 when its init code reads the port.
    kbc, _, _, _ = make_kbc()
    assert kbc.io_read(0x60, 1) == 0x00                    # nothing read yet
    cmd(kbc, 0xAA)
    assert data_in(kbc) == 0x55                            # taken by "the IRQ handler"
    assert not kbc.io_read(0x64, 1) & 0x01                 # the buffer is empty now ...
    assert kbc.io_read(0x60, 1) == 0x55                    # ... and still reads 0x55
    assert kbc.io_read(0x60, 1) == 0x55


def test_keyboard_commands_ack_reset_identify_echo():
    kbc, _, _, _ = make_kbc()
    kbc.io_write(0x60, 1, 0xFF)
    assert [data_in(kbc), data_in(kbc)] == [0xFA, 0xAA]
    kbc.io_write(0x60, 1, 0xF2)
    assert [data_in(kbc), data_in(kbc), data_in(kbc)] == [0xFA, 0xAB, 0x83]
    kbc.io_write(0x60, 1, 0xEE)
    assert data_in(kbc) == 0xEE
    kbc.io_write(0x60, 1, 0xED)
    assert data_in(kbc) == 0xFA
    kbc.io_write(0x60, 1, 0x07)
    assert data_in(kbc) == 0xFA and kbc.leds == 7
    kbc.io_write(0x60, 1, 0x42)                # not a command
    assert data_in(kbc) == 0xFE


def test_typed_text_arrives_as_set1_make_break_with_irq1():
    kbc, clock, irqs, _ = make_kbc()
    kbc.type_bytes(text_scancodes("aB"))
    received = []
    while kbc.typed or kbc.obf is not None:
        nxt = kbc.next_event_ns()
        if nxt is not None:
            clock.ns = max(clock.ns, nxt)
            kbc.advance(clock.ns)
        received.append(data_in(kbc))
    assert received == [0x1E, 0x9E, 0x2A, 0x30, 0xB0, 0xAA]   # a; shift B
    assert len(irqs) == 6


def test_port1_disabled_holds_keys_back():
    kbc, clock, _, _ = make_kbc()
    cmd(kbc, 0xAD)
    kbc.type_bytes([0x1E])
    assert kbc.io_read(0x64, 1) & 0x01 == 0
    cmd(kbc, 0xAE)
    assert data_in(kbc) == 0x1E


def test_named_and_extended_keys():
    assert text_scancodes("{enter}") == [0x1C, 0x9C]
    assert text_scancodes("{up}") == [0xE0, 0x48, 0xE0, 0xC8]
    assert text_scancodes("!") == [0x2A, 0x02, 0x82, 0xAA]


def test_braces_literal_and_unknown_key_names():
    shifted_bracket = [0x2A, 0x1A, 0x9A, 0xAA]                 # `{` is shift + `[` on a US keyboard
    assert text_scancodes("{{") == shifted_bracket
    assert text_scancodes("{ no close")[:4] == shifted_bracket
    with pytest.raises(ValueError, match="unknown key name {nosuchkey}"):
        text_scancodes("{nosuchkey}")


def test_reset_line_pulse():
    kbc, _, _, resets = make_kbc()
    cmd(kbc, 0xFE)
    assert resets == [True]


def test_rtc_bcd_binary_and_status():
    clock = Clock()
    rtc = CmosRtc(clock, start=dt.datetime(2026, 11, 25, 23, 59, 58), ram_bytes=512 << 20)

    def reg(index):
        rtc.io_write(0x70, 1, index)
        return rtc.io_read(0x71, 1)

    assert [reg(0x04), reg(0x02), reg(0x00)] == [0x23, 0x59, 0x58]        # BCD
    assert [reg(0x07), reg(0x08), reg(0x09), reg(0x32)] == [0x25, 0x11, 0x26, 0x20]
    clock.ns = 3 * 10**9
    assert [reg(0x07), reg(0x04), reg(0x00)] == [0x26, 0x00, 0x01]        # midnight passed
    rtc.io_write(0x70, 1, 0x0B)
    rtc.io_write(0x71, 1, 0x06)                                              # binary, 24 h
    assert reg(0x00) == 1 and reg(0x09) == 26
    assert reg(0x0D) & 0x80                                                  # valid RAM and time
    assert reg(0x15) | reg(0x16) << 8 == 640
    assert reg(0x17) | reg(0x18) << 8 == 0xFFFF                              # capped at 64 MiB
    rtc.io_write(0x70, 1, 0x40)
    rtc.io_write(0x71, 1, 0xAB)
    assert reg(0x40) == 0xAB                                                 # CMOS RAM keeps bytes


def test_rtc_12_hour_mode():
    clock = Clock()
    rtc = CmosRtc(clock, start=dt.datetime(2026, 1, 1, 13, 5, 0))
    rtc.io_write(0x70, 1, 0x0B)
    rtc.io_write(0x71, 1, 0x00)                                              # BCD, 12 h
    rtc.io_write(0x70, 1, 0x04)
    assert rtc.io_read(0x71, 1) == 0x81                                      # 1 PM


def test_vga_text_and_cursor_registers():
    memory = bytearray(0x8000)
    clock = Clock()
    vga = VgaText(lambda address, length: bytes(memory[address - 0xB8000: address - 0xB8000 + length]), clock)
    for i, ch in enumerate(b"Hello"):
        memory[2 * i] = ch
        memory[2 * i + 1] = 0x1F
    memory[2 * 80] = 0xC9                      # box-drawing corner on row 1 (code page 437)
    vga.io_write(0x3D4, 1, 0x0E)
    vga.io_write(0x3D5, 1, 0x00)
    vga.io_write(0x3D4, 1, 0x0F)
    vga.io_write(0x3D5, 1, 85)
    assert vga.cursor == (1, 5)
    lines = vga.text().split("\n")
    assert lines[0] == "Hello" and lines[1] == "╔" and len(lines) == 25
    assert vga.cells()[0][0] == (ord("H"), 0x1F)
    vga.io_write(0x3D4, 1, 0x0A)
    vga.io_write(0x3D5, 1, 0x20)
    assert vga.cursor is None
    vga.io_write(0x3D4, 1, 0x0F)
    assert vga.io_read(0x3D5, 1) == 85


def test_the_ps2_mouse_answers_a_driver_init_on_port_2():
    # The sequence an OSDev-style PS/2 mouse driver sends (via 0xD4), checked against the
    # PS/2 mouse protocol: reset -> ACK, BAT 0xAA, ID 0x00; defaults; enable reporting.
    kbc, _, irqs, _ = make_kbc()
    mouse_irqs = []
    kbc.irq12 = lambda: mouse_irqs.append(True)
    cmd(kbc, 0xA8)                                          # enable port 2
    cmd(kbc, 0x20)
    config = data_in(kbc)
    cmd(kbc, 0x60)
    kbc.io_write(0x60, 1, config | 0x02)                    # IRQ 12 on

    def mouse(value):
        cmd(kbc, 0xD4)
        kbc.io_write(0x60, 1, value)

    def aux_in():
        status = kbc.io_read(0x64, 1)
        assert status & 0x01 and status & 0x20, "a byte from the mouse (status bit 5)"
        return kbc.io_read(0x60, 1)

    mouse(0xFF)
    assert [aux_in(), aux_in(), aux_in()] == [0xFA, 0xAA, 0x00]
    mouse(0xF2)
    assert [aux_in(), aux_in()] == [0xFA, 0x00]
    mouse(0xF3)
    assert aux_in() == 0xFA
    mouse(200)
    assert aux_in() == 0xFA
    mouse(0xF4)
    assert aux_in() == 0xFA
    mouse(0xE9)
    assert [aux_in(), aux_in(), aux_in(), aux_in()] == [0xFA, 0x20, 2, 200]
    assert mouse_irqs and not irqs[1:]                      # IRQ 12, not IRQ 1, for mouse bytes
    cmd(kbc, 0xD3)
    kbc.io_write(0x60, 1, 0x5A)
    assert aux_in() == 0x5A                                 # 0xD3: as if the mouse sent it
