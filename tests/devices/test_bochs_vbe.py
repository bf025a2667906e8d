"""The std VGA's Bochs VBE display and its linear framebuffer: registers as the
Bochs VBE interface defines them (index 0x1CE, data 0x1CF; see devices/bochs_vbe.py's
table), modes set by the loader and by the guest, and screenshots that show what
the guest drew. Oracles: the pixel values the guests write, converted by hand."""
from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from unikernel_sim.boot.multiboot2_header import TAG_FRAMEBUFFER
from unikernel_sim.cli import main
from unikernel_sim.exit_codes import ExitCode
from unikernel_sim.run import boot

import guestkit

LFB = 0xFD000000
EXIT = "mov al, 0\nout 0xf4, al\nhlt"


def dispi_write(index: int, value: int) -> str:
    return f"mov dx, 0x1ce\nmov ax, {index}\nout dx, ax\nmov dx, 0x1cf\nmov ax, {value}\nout dx, ax\n"


def dispi_read_to_ram(index: int, slot: int) -> str:
    """Read register index into the dword at 0x7000 + 4*slot (the test reads RAM)."""
    return (f"mov dx, 0x1ce\nmov ax, {index}\nout dx, ax\nmov dx, 0x1cf\nxor eax, eax\nin ax, dx\n"
            f"mov [{0x7000 + 4 * slot}], eax\n")


def test_a_framebuffer_tag_gets_the_mode_and_the_screenshot_shows_what_was_drawn(make_guest, tmp_path, capfd):
    tag = guestkit.header_tag(TAG_FRAMEBUFFER, struct.pack("<III", 640, 480, 32))
    # red pixel at (0, 0), green at (639, 0), blue at (0, 479): x8r8g8b8 in memory
    source = (f"mov dword ptr [{LFB:#x}], 0x00ff0000\n"
              f"mov dword ptr [{LFB + 639 * 4:#x}], 0x0000ff00\n"
              f"mov dword ptr [{LFB + 479 * 2560:#x}], 0x000000ff\n" + EXIT)
    shot = tmp_path / "screen.png"
    code = main(["boot", make_guest(source, elf=True, extra_tags=[tag]), "--screenshot", str(shot)])
    assert code == 0, capfd.readouterr().err
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (640, 480)
    assert image.getpixel((0, 0)) == (255, 0, 0)
    assert image.getpixel((639, 0)) == (0, 255, 0)
    assert image.getpixel((0, 479)) == (0, 0, 255)
    assert image.getpixel((1, 1)) == (0, 0, 0)


def test_a_guest_sets_a_16_bit_mode_itself(make_guest):
    """Disable, program XRES/YRES/BPP, enable with the LFB: RGB565 pixels, VIRT_HEIGHT
    = 16 MiB / (800 * 2), GETCAPS reads the maxima, VIDEO_MEMORY_64K = 256."""
    source = (dispi_write(4, 0) + dispi_write(1, 800) + dispi_write(2, 600) + dispi_write(3, 16)
              + dispi_write(4, 0x41)
              + f"mov word ptr [{LFB:#x}], 0xf800\nmov word ptr [{LFB + 2:#x}], 0x07e0\n"
              + "".join(dispi_read_to_ram(i, i) for i in range(11))
              + dispi_write(4, 0x43) + "".join(dispi_read_to_ram(i, 10 + i) for i in (1, 2, 3))
              + dispi_write(4, 0x41) + EXIT)
    result = boot(make_guest(source), max_instructions=1_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    ram = result.machine.ram
    registers = [ram.u32(0x7000 + 4 * i) for i in range(14)]
    assert registers[:11] == [0xB0C5, 800, 600, 16, 0x41, 0, 800, (16 << 20) // 1600, 0, 0, 256]
    assert registers[11:] == [16000, 12000, 32]          # GETCAPS: QEMU's maxima
    from unikernel_sim.devices.framebuffer_render import framebuffer_rgb

    width, height, rgb = framebuffer_rgb(result.machine.board.vbe)
    assert (width, height) == (800, 600)
    assert rgb[:6] == bytes([255, 0, 0, 0, 255, 0])


def test_enabling_clears_video_memory_unless_told_not_to(make_guest):
    source = (f"mov dword ptr [{LFB:#x}], 0x12345678\n" + dispi_write(1, 640) + dispi_write(2, 480)
              + dispi_write(3, 32) + dispi_write(4, 0xC1) + f"mov eax, [{LFB:#x}]\nmov [0x7000], eax\n"
              + dispi_write(4, 0) + dispi_write(4, 0x41) + f"mov eax, [{LFB:#x}]\nmov [0x7004], eax\n" + EXIT)
    result = boot(make_guest(source), max_instructions=1_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    assert result.machine.ram.u32(0x7000) == 0x12345678          # NOCLEARMEM (bit 7)
    assert result.machine.ram.u32(0x7004) == 0                   # a plain enable clears


def test_invalid_depth_becomes_8_and_odd_widths_round_down(make_guest):
    source = (dispi_write(1, 643) + dispi_write(2, 480) + dispi_write(3, 12) + dispi_write(4, 0x41)
              + dispi_read_to_ram(1, 0) + dispi_read_to_ram(3, 1) + dispi_write(0, 0x1234)
              + dispi_read_to_ram(0, 2) + dispi_write(0, 0xB0C2) + dispi_read_to_ram(0, 3) + EXIT)
    result = boot(make_guest(source), max_instructions=1_000_000)
    ram = result.machine.ram
    assert [ram.u32(0x7000 + 4 * i) for i in range(4)] == [640, 8, 0xB0C5, 0xB0C2]


def test_a_paletted_screenshot_is_one_clear_error(make_guest, tmp_path, capfd):
    source = dispi_write(1, 640) + dispi_write(2, 480) + dispi_write(3, 8) + dispi_write(4, 0x41) + EXIT
    shot = tmp_path / "screen.png"
    code = main(["boot", make_guest(source), "--screenshot", str(shot)])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == ExitCode.OUTPUT_FAILED
    assert len(err) == 1 and "8-bit paletted mode" in err[0], err
    assert not shot.exists()


def test_the_framebuffer_survives_snapshots(make_guest):
    from unikernel_sim.machine import Machine

    machine = Machine(64)
    machine.load(make_guest(EXIT))
    machine.board.vbe.set_mode(640, 480, 32)
    snapshot = machine.snapshot()
    machine.uc.mem_write(LFB, b"\xff" * 4)
    machine.board.vbe.set_mode(800, 600, 16)
    machine.restore(snapshot)
    assert bytes(machine.uc.mem_read(LFB, 4)) == b"\0" * 4
    assert machine.board.vbe.mode == (640, 480, 32)


def test_the_crash_report_names_the_framebuffer_mode(make_guest):
    from unikernel_sim.diagnostics.report import build_report

    tag = guestkit.header_tag(TAG_FRAMEBUFFER, struct.pack("<III", 800, 600, 16))
    result = boot(make_guest("ud2", elf=True, extra_tags=[tag]))
    report = build_report(result.machine, result.stop)
    assert "bochs-vbe: 800x600x16 linear framebuffer at 0xfd000000, line 1600 bytes, offset (0, 0)" in report.devices
    assert "bochs-vbe: 800x600x16" in report.text()
