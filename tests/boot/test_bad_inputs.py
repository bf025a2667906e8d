"""Every bad input: one line on stderr naming the file and the problem, a
documented exit code, never a traceback."""
from __future__ import annotations

import os
import time
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import guestkit
from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.boot.multiboot2_header import TAG_FRAMEBUFFER
from unikernel_sim.cli import main
from unikernel_sim.errors import ImageError
from unikernel_sim.exit_codes import ExitCode
from unikernel_sim.run import boot

EXIT_NOW = "mov al, 0\nout 0xf4, al"


def run_cli(capfd, *args: str) -> tuple[int, str]:
    code = main(["boot", *args])
    out, err = capfd.readouterr()
    return code, err


def assert_one_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_missing_file(capfd, tmp_path):
    path = str(tmp_path / "nope.elf")
    code, err = run_cli(capfd, path)
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, path, "not found")


def test_directory_instead_of_file(capfd, tmp_path):
    code, err = run_cli(capfd, str(tmp_path))
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, str(tmp_path), "directory")


def test_empty_file(capfd, tmp_path):
    path = write(tmp_path, "empty.elf", b"")
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "empty")


def test_not_elf(capfd, tmp_path):
    path = write(tmp_path, "text.txt", b"just some text, not a kernel\n" * 100)
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "not an ELF file", "no Multiboot2 header")


def test_truncated_elf(capfd, tmp_path, firmware_elf):
    data = Path(firmware_elf).read_bytes()
    path = write(tmp_path, "truncated.elf", data[:0x1100])
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "truncated")


def test_truncated_elf_header(capfd, tmp_path, firmware_elf):
    path = write(tmp_path, "stub.elf", Path(firmware_elf).read_bytes()[:40])
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "truncated")


def test_elf_for_another_machine(capfd, tmp_path):
    em_arm = 40
    path = write(tmp_path, "arm.elf", guestkit.elf32_image(b"\xf4", machine=em_arm))
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "EM_ARM", "not x86")


def test_no_multiboot2_header(capfd, tmp_path, firmware_elf):
    data = bytearray(Path(firmware_elf).read_bytes())
    offset = data.find(struct.pack("<I", 0xE85250D6))
    data[offset:offset + 4] = b"\0\0\0\0"
    path = write(tmp_path, "nohdr.elf", bytes(data))
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "no Multiboot2 header")


def test_header_after_32k(capfd, tmp_path):
    header = guestkit.multiboot2_header([])
    path = write(tmp_path, "late.bin", b"\0" * 0x9000 + header + b"\xf4")
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "0x9000", "beyond the first 32 KiB")


def test_bad_checksum(capfd, tmp_path):
    header = guestkit.multiboot2_header([], checksum_delta=1)
    path = write(tmp_path, "badsum.bin", header + b"\xf4")
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "bad checksum")


def test_an_odd_tag_size_is_a_warning_as_grub_reads_on(capfd, make_guest):
    # information request of 10 bytes (GRUB counts (10 - 8) / 4 = 0 requests and goes on)
    odd = struct.pack("<HHI", 1, 0, 10) + b"\0" * 8         # padded to 16, where the next tag starts
    code, err = run_cli(capfd, make_guest(EXIT_NOW, elf=True, extra_tags=[odd]))
    assert code == 0
    assert_one_line(err, "warning:", "has size 10")


def test_tag_running_past_header(capfd, tmp_path):
    bad_tag = struct.pack("<HHI", 6, 0, 4000)
    path = write(tmp_path, "longtag.bin", guestkit.multiboot2_header([bad_tag]) + b"\xf4")
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "no end tag", "past the end of the file")


def test_a_tag_cut_off_by_the_end_of_the_file_is_one_line(capfd, tmp_path):
    """An address tag needs 24 bytes; the file ends 10 bytes into it (found by the fuzz test:
    it used to be a struct.error traceback)."""
    header = guestkit.multiboot2_header([])
    cut = header[:-8] + struct.pack("<HHI", 2, 0, 24) + b"\0\0"          # the end tag replaced by a stub
    path = write(tmp_path, "cut.bin", cut)
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "tag type 2", "cut off by the end of the file", "24 bytes, 10 are left")


def test_unsupported_required_tag_refused_optional_accepted(capfd, tmp_path, make_guest):
    unknown = guestkit.header_tag(42, b"\0" * 8)
    code, err = run_cli(capfd, make_guest(EXIT_NOW, elf=True, extra_tags=[unknown]))
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, "tag type 42", "not marked optional")
    optional = guestkit.header_tag(42, b"\0" * 8, flags=1)
    code, err = run_cli(capfd, make_guest(EXIT_NOW, elf=True, extra_tags=[optional]))
    assert (code, err) == (0, "")


def test_unknown_required_information_request(capfd, make_guest):
    code, err = run_cli(capfd, make_guest(EXIT_NOW, elf=True, extra_tags=[guestkit.information_request([6, 99])]))
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, "unknown boot information type(s) 99")
    code, _ = run_cli(capfd, make_guest(EXIT_NOW, elf=True,
                                        extra_tags=[guestkit.information_request([99], optional=True)]))
    assert code == 0


@pytest.mark.parametrize("size,flags,warning", [((1024, 768, 32), 0, None), ((1024, 768, 0), 1, None),
                                                ((1000, 700, 32), 0, "GRUB sets 1280x800x32")])
def test_framebuffer_request_boots_with_the_mode_grub_sets(capfd, make_guest, size, flags, warning):
    """Every framebuffer request boots, as under GRUB (which falls back to the EDID
    preferred 1280x800 for a size the VBE BIOS lacks); the fallback is a warning."""
    tag = guestkit.header_tag(TAG_FRAMEBUFFER, struct.pack("<III", *size), flags)
    code, err = run_cli(capfd, make_guest(EXIT_NOW, elf=True, extra_tags=[tag]))
    assert code == 0
    if warning is None:
        assert err == ""
    else:
        assert_one_line(err, "1000x700x32", warning)


def test_segment_outside_guest_ram(capfd, make_guest):
    path = make_guest(EXIT_NOW, elf=True, load_address=600 << 20)
    code, err = run_cli(capfd, path)
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "outside guest RAM", "--memory")


def test_memory_too_small_for_kernel(capfd, make_guest):
    path = make_guest(EXIT_NOW, elf=True, bss=6 << 20)
    code, err = run_cli(capfd, path, "--memory", "4")
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, path, "outside guest RAM (4 MiB")
    assert run_cli(capfd, path, "--memory", "16")[0] == 0


def test_a_segment_in_low_memory_boots_as_under_grub(capfd, make_guest):
    """GRUB 2.06 loads segments anywhere below 1 MiB (recorded at 0x500, 0x8000 and 0x9FC00)."""
    assert run_cli(capfd, make_guest(EXIT_NOW, elf=True, load_address=0x8000)) == (0, "")


def test_bytes_for_vga_memory_and_bios_rom_are_dropped_with_a_warning(capfd, make_guest):
    """A segment at 0xFF000 (the header page; the code at 1 MiB): GRUB loads it, QEMU
    keeps BIOS code there (recorded), so the kernel boots and the page is not written."""
    path = make_guest(EXIT_NOW, elf=True, load_address=0xFF000)
    code, err = run_cli(capfd, path)
    assert code == 0
    assert_one_line(err, "warning", "0xff000..0x100000", "VGA memory and BIOS ROM")


def test_segment_overlapping_a_module(make_guest, tmp_path):
    path = make_guest(EXIT_NOW, elf=True)
    module = write(tmp_path, "m.bin", b"x" * 100)
    with pytest.raises(ImageError, match="overlaps ELF segment"):
        boot(path, modules=[ModuleSpec(module, "m", address=0x100800)])


def test_module_overlapping_another_module(make_guest, tmp_path):
    path = make_guest(EXIT_NOW, elf=True)
    module = write(tmp_path, "m.bin", b"x" * 8192)
    with pytest.raises(ImageError, match=r"module .*overlaps module"):
        boot(path, modules=[ModuleSpec(module, "a", address=0x400000), ModuleSpec(module, "b", address=0x401000)])


def test_missing_and_unreadable_modules(capfd, tmp_path, firmware_elf):
    missing = str(tmp_path / "missing.bin")
    code, err = run_cli(capfd, firmware_elf, "--module", f"{missing}=weights")
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, missing, "module not found")
    code, err = run_cli(capfd, firmware_elf, "--module", str(tmp_path))
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, str(tmp_path), "directory")


def test_unreadable_module_permissions(capfd, tmp_path, firmware_elf):
    path = write(tmp_path, "secret.bin", b"x")
    os.chmod(path, 0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: file permissions do not stop reads")
    code, err = run_cli(capfd, firmware_elf, "--module", path)
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, path, "cannot read")


@pytest.mark.parametrize("args,fragment", [
    (["--memory", "0"], "out of range"),
    (["--memory", "lots"], "not a whole number"),
    (["--memory", "100000"], "out of range"),
    (["--timeout", "-1"], "out of range"),
    (["--timeout", "0"], "out of range"),
    (["--timeout", "inf"], "out of range"),
    (["--timeout", "nan"], "out of range"),
    (["--timeout", "1e300"], "out of range"),
    (["--timeout", "1e10"], "out of range"),
    (["--max-instructions", "18446744073709551616"], "out of range"),
    (["--max-instructions", "0"], "out of range"),
    (["--tsc-mhz", "0"], "out of range"),
    (["--max-instructions", "x"], "not a whole number"),
    (["--exit-style", "bochs"], "invalid choice"),
    (["--expect", "("], "invalid regular expression"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--module", "=weights"], "no file name in '=weights'"),
    (["--keys", "{entr}"], "unknown key name {entr}"),
])
def test_bad_usage(capfd, firmware_elf, args, fragment):
    code, err = run_cli(capfd, firmware_elf, *args)
    assert code == ExitCode.USAGE
    assert_one_line(err, fragment)


@pytest.mark.parametrize("argv", [
    ["--help"], ["boot", "--help"], ["profile", "--help"], ["info", "--help"], ["demo", "--help"],
    ["llama", "--help"], ["chat", "--help"], ["pgo", "--help"], ["boot", "k.elf", "--memory", "64", "-v"],
    ["profile", "--diff", "a.json", "b.json"], ["llama", "--model", "m", "--tokenizer", "t", "--temp", "0"],
    ["chat", "why?", "--dot", "avx2"], ["info", "--acpi"], ["frobnicate"], [],
])
def test_the_parser_built_for_one_command_answers_as_the_whole_one(capsys, argv):
    """Only the named command's arguments are added at start (the others cost ~6 ms);
    the parser with every command built is the oracle: same help, namespace and errors."""
    import unikernel_sim.cli as cli

    def outcome(parser):
        try:
            result = vars(parser.parse_args(argv))
        except SystemExit as exit_:
            result = ("exit", exit_.code)
        except Exception as error:
            result = (type(error).__name__, str(error))
        return result, capsys.readouterr()

    assert outcome(cli.build_parser(cli._command_named(argv))) == outcome(cli.build_parser())


def test_missing_serial_input_file(capfd, tmp_path, firmware_elf):
    missing = str(tmp_path / "in.txt")
    code, err = run_cli(capfd, firmware_elf, "--serial-in", missing)
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, missing, "not found")


def test_real_process_prints_no_traceback(tmp_path):
    """The installed console script, end to end: exit code and a single line."""
    path = str(tmp_path / "missing.elf")
    proc = subprocess.run([sys.executable, "-m", "unikernel_sim", "boot", path], capture_output=True, text=True)
    assert proc.returncode == ExitCode.NO_INPUT
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert path in proc.stderr


# --- bounded reads -------------------------------------------------------------------
def _quick(capfd, *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    code, err = run_cli(capfd, *args)
    return code, err, time.monotonic() - started


def test_a_device_as_module_is_refused_at_once(capfd, firmware_elf):
    for device in ("/dev/zero", "/dev/urandom"):
        code, err, seconds = _quick(capfd, firmware_elf, "--module", device)
        assert code == ExitCode.NO_INPUT
        assert_one_line(err, device, "is a device, not a file")
        assert seconds < 5                  # was: memory growing ~1 GB/s until killed


def test_an_endless_pipe_as_module_is_refused_within_the_guest_ram(tmp_path):
    done = subprocess.run(f"{sys.executable} -m unikernel_sim boot {guestkit_image(tmp_path)} --memory 16 "
                          "--module <(cat /dev/zero)", shell=True, executable="/bin/bash", capture_output=True,
                          timeout=60)
    assert done.returncode == ExitCode.NO_INPUT
    assert b"goes on past 16777216 bytes" in done.stderr and done.stderr.count(b"\n") == 1


def test_a_sparse_module_larger_than_ram_is_refused_before_reading(capfd, firmware_elf, tmp_path):
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as handle:
        handle.truncate(4 << 30)
    code, err, seconds = _quick(capfd, firmware_elf, "--module", str(sparse))
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, str(sparse), "4294967296 bytes", "--memory")
    assert seconds < 5            # was 16 s and 4.2 GB; a stat() suffices


def test_a_large_file_of_zeros_is_rejected_without_a_byte_by_byte_scan(capfd, tmp_path):
    zeros = tmp_path / "zeros.bin"
    with open(zeros, "wb") as handle:
        handle.truncate(128 << 20)
    code, err, seconds = _quick(capfd, str(zeros))
    assert code == ExitCode.BAD_IMAGE
    assert_one_line(err, "no Multiboot2 header")
    assert seconds < 5            # was 4.3 s scanning in Python


def test_a_fifo_with_no_writer_ends_with_the_timeout(capfd, firmware_elf, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, err, _ = _quick(capfd, firmware_elf, "--module", str(fifo), "--timeout", "0.5")
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, str(fifo), "before the timeout")


def test_a_symlink_loop_and_an_empty_name_say_what_they_are(capfd, firmware_elf, tmp_path):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    code, err = run_cli(capfd, str(loop))
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, "symbolic links")
    code, err = run_cli(capfd, "")
    assert code == ExitCode.NO_INPUT
    assert_one_line(err, "empty file name")


def guestkit_image(tmp_path: Path) -> str:
    path = tmp_path / "exit.bin"
    path.write_bytes(guestkit.flat_image(guestkit.assemble(EXIT_NOW, guestkit.code_address(guestkit.DEFAULT_LOAD_ADDRESS))))
    return str(path)


def test_a_bug_in_unisim_is_one_line_and_a_saved_traceback(capfd, monkeypatch, tmp_path, firmware_elf):
    """An exception nobody expected (here: the loader itself breaks) is not a traceback on
    the terminal: one line naming the file the traceback went to, and the internal-error
    exit code."""
    import unikernel_sim.run as run_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(run_module, "Machine", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    code, err = run_cli(capfd, firmware_elf)
    assert code == ExitCode.INTERNAL_ERROR
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "internal error: ZeroDivisionError: simulated bug" in lines[0], err
    saved = Path(lines[0].split("traceback saved to ")[1].split(" ")[0])
    assert saved.parent == tmp_path and "Traceback (most recent call last)" in saved.read_text()
