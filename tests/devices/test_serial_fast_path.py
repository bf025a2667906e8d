"""COM1's C fast path (cpu/fast_ports.py): the same bytes, the same order, the
same virtual time as the Python path it short-cuts."""
from __future__ import annotations

import pytest

import guestkit

from unikernel_sim.machine import Machine
from unikernel_sim.run import boot
from unikernel_sim.stops import StopReason


def _run_firmware(firmware_elf: str, fast_path: bool) -> tuple[bytes, int, int]:
    machine = Machine(deterministic=True)
    machine.load(firmware_elf)
    if not fast_path:
        machine.loop.fast_ports.disable()
    stop = machine.run(max_instructions=50_000_000)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    return bytes(machine.serial.data), machine.instructions, machine.loop.fast_ports.fast_accesses


def test_deterministic_runs_are_identical_with_and_without_the_fast_path(firmware_elf):
    # The firmware prints through a polling driver and takes timer interrupts; its
    # output includes rdtsc-derived numbers, so any difference in virtual time shows.
    fast = _run_firmware(firmware_elf, fast_path=True)
    slow = _run_firmware(firmware_elf, fast_path=False)
    assert fast[2] > 100 and slow[2] == 0
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]


def test_serial_and_debug_console_keep_their_order(capfd, make_guest):
    from unikernel_sim.cli import main

    code = "mov dx, 0x3f8\n"
    for index, char in enumerate("abcdef"):
        port = "0x3f8" if index % 2 == 0 else "0xe9"
        code += f"mov al, {ord(char)}\nmov dx, {port}\nout dx, al\n"
    code += "mov al, 10\nmov dx, 0x3f8\nout dx, al\nmov al, 0\nout 0xf4, al"
    assert main(["boot", make_guest(code)]) == 0
    assert capfd.readouterr().out == "abcdef\n"


@pytest.mark.parametrize("deterministic", [False, True])
def test_a_flood_arrives_byte_exact(make_guest, tmp_path, deterministic):
    lines = 3000
    flood = guestkit.serial_flood(lines)
    result = boot(make_guest(flood), deterministic=deterministic)
    assert result.serial_bytes == guestkit.serial_flood_output(lines)
    assert result.machine.loop.fast_ports.fast_accesses >= 2 * 63 * lines


def test_a_banner_before_a_spin_reaches_the_terminal(make_guest):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "unikernel_sim", "boot", "--timeout", "20",
                                make_guest("mov dx, 0x3f8\nmov al, 0x62\nout dx, al\nmov al, 10\nout dx, al\n"
                                           "spin: jmp spin")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout.readline() == b"b\n"        # while the guest still spins
    finally:
        process.kill()
        process.communicate()
