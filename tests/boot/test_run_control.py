"""How runs end: each stop reason, its exit code (docs/booting.md), --expect,
--serial-in and the I/O-port rules."""
from __future__ import annotations

import pytest

from unikernel_sim.cli import main
from unikernel_sim.exit_codes import ExitCode
from unikernel_sim.run import boot
from unikernel_sim.stops import StopReason

SPIN = "spin: jmp spin"


def cli(capfd, *args):
    code = main(["boot", *args])
    out, err = capfd.readouterr()
    return code, out, err


@pytest.mark.parametrize("value,plain,qemu", [(0, 0, 1), (1, 1, 3), (5, 5, 11), (63, 63, 127), (64, 63, 129),
                                              (200, 63, 145)])
def test_guest_exit_codes(capfd, make_guest, value, plain, qemu):
    path = make_guest(f"mov eax, {value}\nout 0xf4, eax")
    assert cli(capfd, path)[0] == plain
    assert cli(capfd, path, "--exit-style", "qemu")[0] == qemu


def test_guest_exit_value_is_kept_in_the_result(make_guest):
    result = boot(make_guest("mov eax, 0x12345678\nmov dx, 0xf4\nout dx, eax"))
    assert result.stop.reason == StopReason.GUEST_EXIT
    assert result.guest_exit_value == 0x12345678


def test_simulator_codes_never_collide_with_guest_codes():
    own = {int(c) for c in ExitCode if c != ExitCode.OK}
    plain_guest = set(range(0, 64))
    qemu_guest = {((v << 1) | 1) & 0xFF for v in range(256)}
    assert not own & plain_guest
    assert not own & qemu_guest


def test_clean_halt_with_interrupts_disabled(capfd, make_guest):
    path = make_guest("cli\nhlt\njmp spin2\nspin2: jmp spin2")
    code, _, err = cli(capfd, path)
    assert code == ExitCode.OK and err == ""
    result = boot(path)
    assert result.stop.reason == StopReason.HALT
    assert "interrupts disabled" in result.stop.summary


def test_timeout(capfd, make_guest):
    code, _, err = cli(capfd, make_guest(SPIN), "--timeout", "0.3")
    assert code == ExitCode.TIMEOUT
    assert "timeout of 0.3 s" in err


def test_instruction_budget_is_exact(make_guest):
    result = boot(make_guest("nop\nnop\n" + SPIN), max_instructions=1000)
    assert result.stop.reason == StopReason.BUDGET
    assert result.instructions == 1000
    assert result.exit_code == ExitCode.BUDGET


def test_budget_counts_to_a_clean_stop(make_guest):
    # Five instructions then the debug-exit `out`: six executed in all.
    result = boot(make_guest("nop\nnop\nnop\nnop\nmov al, 0\nout 0xf4, al"), max_instructions=10_000)
    assert result.stop.reason == StopReason.GUEST_EXIT
    assert result.instructions == 6


@pytest.mark.parametrize("source,fragments", [
    # No IDT: the exception cannot be delivered (#GP), nor can that (#DF), nor that: triple fault.
    ("ud2", ["missing IDT: #UD", "triple fault", "chain: #UD -> #GP error 0x33 -> "]),
    ("int3", ["missing IDT: #BP", "triple fault", "chain: INT 0x3 (#BP) -> #GP error 0x1a -> "]),
    ("xor ecx, ecx\nmov eax, 1\ndiv ecx", ["missing IDT: #DE", "triple fault", "chain: #DE -> #GP error 0x3 -> #DF"]),
    ("mov eax, dword ptr [0xf0000000]", ["outside RAM", "read of 0xf0000000 outside guest RAM"]),
])
def test_crash_stops_with_a_named_cause(capfd, make_guest, source, fragments):
    code, _, err = cli(capfd, make_guest(source))
    assert code == ExitCode.CRASH
    first_lines = "\n".join(err.splitlines()[:2])
    for fragment in fragments:
        assert fragment in first_lines
    assert "rip=" in err


def test_expect_pass_and_fail(capfd, firmware_elf, make_guest):
    code, out, _ = cli(capfd, firmware_elf, "--expect", r"boot info: \d+ tags")
    assert code == 0 and "boot info:" in out
    code, _, err = cli(capfd, firmware_elf, "--expect", "kernel panic")
    assert code == ExitCode.EXPECT_FAILED
    assert "--expect pattern never appeared" in err


def test_expect_stops_an_idle_kernel_once_matched(capfd, make_guest):
    hello = "".join(f"mov al, {ord(c)}\nout dx, al\n" for c in "ready\n")
    code, out, _ = cli(capfd, make_guest("mov dx, 0x3f8\n" + hello + SPIN), "--expect", "ready",
                       "--timeout", "20")
    assert code == 0 and out == "ready\n"


def test_expect_does_not_hide_a_crash(capfd, make_guest):
    code, _, _ = cli(capfd, make_guest("mov eax, dword ptr [0xfffffff0]"), "--expect", "never")
    assert code == ExitCode.CRASH


ECHO = """
poll:
    mov dx, 0x3fd
    in al, dx
    test al, 1
    jz done
    mov dx, 0x3f8
    in al, dx
    out dx, al
    jmp poll
done:
    mov al, 0
    out 0xf4, al
"""


def test_serial_in_echo(capfd, make_guest, tmp_path):
    typed = tmp_path / "typed.txt"
    typed.write_bytes(b"hello from the host\n\x00\xff binary too")
    code, _, _ = cli(capfd, make_guest(ECHO), "--serial-in", str(typed), "--serial-in-text", "!")
    assert code == 0
    result = boot(make_guest(ECHO), serial_input=typed.read_bytes() + b"!")
    assert result.serial_bytes == typed.read_bytes() + b"!"


def test_serial_out_file_gets_the_bytes(capfd, firmware_elf, tmp_path):
    out_file = tmp_path / "serial.log"
    code, out, _ = cli(capfd, firmware_elf, "--serial-out", str(out_file))
    assert code == 0
    assert out_file.read_text() == out


def test_output_before_a_crash_is_not_lost(capfd, make_guest):
    text = "partial line without newline"
    writes = "".join(f"mov al, {ord(c)}\nout dx, al\n" for c in text)
    code, out, _ = cli(capfd, make_guest("mov dx, 0x3f8\n" + writes + "ud2"))
    assert code == ExitCode.CRASH
    assert out == text


def test_unknown_ports_read_all_ones_and_are_counted(make_guest):
    result = boot(make_guest("""
        mov dx, 0x123
        in eax, dx
        mov dword ptr [0x200000], eax
        in al, dx
        mov byte ptr [0x200004], al
        out dx, al
        out 0x80, al
        mov al, 0
        out 0xf4, al
    """))
    assert result.stop.reason == StopReason.GUEST_EXIT
    assert result.machine.ram.u32(0x200000) == 0xFFFFFFFF
    assert result.machine.ram.u8(0x200004) == 0xFF
    bus = result.machine.board.io
    assert bus.unknown_reads == {0x123: 2, 0x124: 1, 0x125: 1, 0x126: 1}
    assert bus.unknown_writes == {0x123: 1}
    assert 0x80 not in bus.unknown_writes          # the POST port is decoded


def test_verbose_lists_unknown_ports(capfd, make_guest):
    code, _, err = cli(capfd, make_guest("mov dx, 0x2f8\nin al, dx\nmov al, 0\nout 0xf4, al"), "--verbose")
    assert code == 0
    assert "unknown port 0x02f8: 1 read(s)" in err


def test_strict_io_stops_on_first_unknown_port(capfd, make_guest):
    code, _, err = cli(capfd, make_guest("mov dx, 0x2f8\nmov al, 7\nout dx, al\nmov al, 0\nout 0xf4, al"),
                       "--strict-io")
    assert code == ExitCode.STRICT_IO
    assert "write of 0x7 to port 0x2f8" in err


def test_ctrl_c_stops_the_guest_and_says_where(make_guest):
    """SIGINT while the guest spins in C: the watcher thread stops emu_start.

    The guest prints a line before it spins and the signal waits for that line:
    a fixed sleep raced the interpreter's start-up on a loaded machine."""
    import signal
    import subprocess
    import sys

    import guestkit

    announce = "mov dx, 0x3f8\nmov al, 0x72\nout dx, al\nmov al, 0x0a\nout dx, al\n"
    code_start = guestkit.code_address(guestkit.DEFAULT_LOAD_ADDRESS)
    spin_address = code_start + len(guestkit.assemble(announce, code_start))
    process = subprocess.Popen([sys.executable, "-m", "unikernel_sim", "boot", make_guest(announce + SPIN)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "r\n"          # the guest is running
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == ExitCode.INTERRUPTED
    assert f"interrupted (Ctrl-C) at {spin_address:#x}" in err
    assert "Traceback" not in err


def test_acpi_power_off_the_qemu_way(make_guest):
    for port in (0x604, 0xB004):
        result = boot(make_guest(f"mov dx, {port:#x}\nmov ax, 0x2000\nout dx, ax\nud2"))
        assert result.stop.reason.value == "power-off"
        assert result.exit_code == 0


def test_breakpoints_are_added_and_removed_by_symbol_name(firmware_elf):
    from unikernel_sim.machine import Machine

    kept = Machine(deterministic=True)
    kept.load(firmware_elf)                             # no job: the firmware exits after its banner
    kept.add_breakpoint("serial_init")
    assert kept.run(timeout=30).reason == StopReason.BREAKPOINT      # the default path calls serial_init

    machine = Machine(deterministic=True)
    machine.load(firmware_elf)
    address = machine.add_breakpoint("serial_init")
    assert address == machine.symbols.address_of("serial_init") and "serial_init" in machine.breakpoints
    machine.remove_breakpoint("serial_init")
    assert address not in machine.breakpoints
    stop = machine.run(timeout=30)
    assert stop.reason == StopReason.GUEST_EXIT, stop.summary
    with pytest.raises(KeyError, match="no_such_function"):
        machine.remove_breakpoint("no_such_function")
