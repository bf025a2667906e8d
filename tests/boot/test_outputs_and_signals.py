"""Outputs never clobber inputs nor lose data, output failures have their own
exit code, signals end a run like Ctrl-C, and command-line bytes reach the guest
as given."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import guestkit

from unikernel_sim.cli import main
from unikernel_sim.exit_codes import ExitCode
from unikernel_sim.run import boot

HELLO_AND_EXIT = """
    mov dx, 0x3f8
    mov al, 'h'
    out dx, al
    mov al, 10
    out dx, al
    mov al, 0
    out 0xf4, al
"""
CRASH = "mov eax, [0xfffffff0]\nud2"                  # outside RAM: exit 70 with a report
SPIN = "spin: jmp spin"
UNISIM = [sys.executable, "-m", "unikernel_sim"]


def cli(capfd, *args: str) -> tuple[int, str, str]:
    code = main(["boot", *args])
    out, err = capfd.readouterr()
    return code, out, err


@pytest.mark.parametrize("option", ["--serial-out", "--report-json", "--screenshot"])
def test_an_output_naming_the_kernel_is_refused_and_the_kernel_survives(capfd, make_guest, option):
    kernel = make_guest(HELLO_AND_EXIT)
    before = open(kernel, "rb").read()
    code, _, err = cli(capfd, kernel, option, kernel)
    assert code == ExitCode.USAGE
    assert err.count("\n") == 1 and option in err and "the kernel image" in err
    assert open(kernel, "rb").read() == before


def test_an_output_naming_a_module_through_a_link_is_refused(capfd, make_guest, tmp_path):
    kernel = make_guest(HELLO_AND_EXIT)
    module = tmp_path / "m.txt"
    module.write_bytes(b"module data")
    link = tmp_path / "link.txt"
    os.link(module, link)
    code, _, err = cli(capfd, kernel, "--module", f"{module}=m", "--serial-out", str(link))
    assert code == ExitCode.USAGE and "--module" in err and "--serial-out" in err
    assert module.read_bytes() == b"module data"


def test_two_outputs_naming_one_file_are_refused(capfd, make_guest, tmp_path):
    kernel = make_guest(HELLO_AND_EXIT)
    out = tmp_path / "out"
    out.write_bytes(b"old")
    code, _, err = cli(capfd, kernel, "--serial-out", str(out), "--report-json", str(out))
    assert code == ExitCode.USAGE and "--report-json" in err


def test_serial_out_to_a_full_device_is_an_output_failure(capfd, make_guest):
    code, out, err = cli(capfd, make_guest(HELLO_AND_EXIT), "--serial-out", "/dev/full")
    assert code == ExitCode.OUTPUT_FAILED
    assert "/dev/full" in err and "No space left on device" in err and "Traceback" not in err


def test_a_report_that_cannot_be_written_is_one_line_and_its_own_code(capfd, make_guest, tmp_path):
    code, _, err = cli(capfd, make_guest(HELLO_AND_EXIT), "--report-json", str(tmp_path / "no" / "such" / "dir"))
    assert code == ExitCode.OUTPUT_FAILED
    assert err.count("\n") == 1 and "cannot write the report" in err


def test_report_json_replaces_the_old_file_whole(capfd, make_guest, tmp_path):
    report = tmp_path / "report.json"
    report.write_text("old contents that are longer than null\n")
    code, _, _ = cli(capfd, make_guest(HELLO_AND_EXIT), "--report-json", str(report))
    assert code == 0 and report.read_text() == "null\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".unisim-")] == []


def test_a_fifo_with_no_reader_is_refused_at_once(capfd, make_guest, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    code, _, err = cli(capfd, make_guest(HELLO_AND_EXIT), "--serial-out", str(fifo))
    assert code == ExitCode.OUTPUT_FAILED and "no process is reading" in err
    assert time.monotonic() - started < 10


def _run(args: list[str], **popen) -> subprocess.CompletedProcess:
    return subprocess.run(UNISIM + args, timeout=60, **popen)


def test_stdout_on_a_full_device_is_an_output_failure(make_guest):
    with open("/dev/full", "wb") as full:
        done = _run(["boot", make_guest(HELLO_AND_EXIT)], stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == ExitCode.OUTPUT_FAILED
    assert b"No space left on device" in done.stderr and b"Traceback" not in done.stderr


def test_closed_stdout_is_one_line(make_guest):
    done = subprocess.run(" ".join(UNISIM + ["boot", make_guest(HELLO_AND_EXIT)]) + " >&-", shell=True,
                          stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == ExitCode.OUTPUT_FAILED
    assert done.stderr.decode().strip().splitlines() == [
        "unisim: standard output is closed; redirect it to a file or to /dev/null instead"]


def test_full_stderr_keeps_the_crash_code(make_guest):
    with open("/dev/full", "wb") as full:
        done = _run(["boot", make_guest(CRASH)], stdout=subprocess.DEVNULL, stderr=full)
    assert done.returncode == ExitCode.CRASH


def test_a_reader_closing_the_pipe_keeps_the_crash_code(make_guest):
    # The guest prints more than the reader takes, then crashes.
    kernel = make_guest("mov ecx, 5000\nmov dx, 0x3f8\nagain: mov al, 'x'\nout dx, al\nloop again\n" + CRASH)
    process = subprocess.Popen(UNISIM + ["boot", kernel], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.read(10)
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.CRASH
    assert b"Traceback" not in err and b"BrokenPipe" not in err


@pytest.mark.parametrize("number,code,words", [(signal.SIGTERM, ExitCode.TERMINATED, b"terminated (SIGTERM)"),
                                               (signal.SIGHUP, ExitCode.HANGUP, b"hung up (SIGHUP)")])
def test_sigterm_and_sighup_end_the_run_with_a_report(make_guest, number, code, words):
    kernel = make_guest("mov dx, 0x3f8\nmov al, 'r'\nout dx, al\nmov al, 10\nout dx, al\n" + SPIN)
    process = subprocess.Popen(UNISIM + ["boot", kernel, "--timeout", "50"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"r\n"             # the guest runs
    process.send_signal(number)
    out, err = process.communicate(timeout=30)
    assert process.returncode == code
    assert words in err and b"registers" in err and b"Traceback" not in err


def test_command_line_bytes_that_are_not_utf8_reach_the_guest_unchanged(make_guest):
    raw = b"console=\xff\xfe ok"
    result = boot(make_guest(HELLO_AND_EXIT), cmdline=os.fsdecode(raw))
    assert raw + b"\0" in result.machine.kernel.boot_info


def test_serial_text_bytes_that_are_not_utf8_are_typed_unchanged(capfdbinary, make_guest):
    echo = guestkit.WAIT_FOR_BYTE + "out dx, al\nmov al, 0\nout 0xf4, al"   # echo one byte, exit
    code = main(["boot", make_guest(echo), "--serial-in-text", os.fsdecode(b"\xe9")])
    assert code == 0
    assert capfdbinary.readouterr().out == b"\xe9"


def _with_address_limit(kib: int):
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (kib * 1024, kib * 1024))
    return limit


def test_a_small_address_space_limit_is_one_line_and_its_own_code(firmware_elf):
    done = _run(["boot", firmware_elf, "--max-instructions", "200000"], preexec_fn=_with_address_limit(600_000),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert done.returncode == ExitCode.HOST_LIMIT
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "ulimit -v" in lines[0]


def test_a_limit_that_used_to_kill_unicorn_now_boots(firmware_elf):
    # `ulimit -v 6000000` printed libunicorn's "Could not allocate dynamic translator buffer" and exited 1
    # fast mode: the TSC calibration polls port 0x61 for a span of host time, ~200,000 reads
    # since they are served in C (about a million instructions), so the budget leaves room
    done = _run(["boot", firmware_elf, "--max-instructions", "50000000"], preexec_fn=_with_address_limit(2_000_000),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert done.returncode == 0, done.stderr            # the demo job ends well within the budget


ECHO_UNTIL_NEWLINE = "echo_next:" + guestkit.WAIT_FOR_BYTE + """
    out dx, al
    cmp al, 10
    jne echo_next
    mov al, 0
    out 0xf4, al
"""


def test_serial_input_from_a_fifo_is_typed_as_it_arrives(make_guest, tmp_path):
    fifo = tmp_path / "serial-in"
    os.mkfifo(fifo)
    process = subprocess.Popen(UNISIM + ["boot", make_guest(ECHO_UNTIL_NEWLINE), "--serial-in", str(fifo),
                                         "--timeout", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.3)                                   # the guest is polling before anything arrives
    with open(fifo, "wb") as writer:
        writer.write(b"hel")
        writer.flush()
        time.sleep(0.2)
        writer.write(b"lo\n")
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out == b"hello\n"


def test_serial_input_from_an_endless_device_is_read_as_the_guest_takes_it(make_guest):
    # 4 MiB of zeros read one byte at a time, then a newline never comes: the budget ends it
    reader = "mov ecx, 200000\nread_next:" + guestkit.WAIT_FOR_BYTE + \
        "dec ecx\njnz read_next\nmov al, 0\nout 0xf4, al"
    done = _run(["boot", make_guest(reader), "--serial-in", "/dev/zero", "--timeout", "30"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert done.returncode == 0, done.stderr
