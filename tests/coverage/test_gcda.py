"""Guest coverage through gcc's own counters. Oracles: the .gcda bytes the hosted libgcov
writes for a program compiled here (our writer must produce the same bytes from the same
counters), gcov itself (it must accept our files), and the exact profiler (gcov's
execution count of vga_putc's first line equals the profiler's count of its calls)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

import guestkit
from unikernel_sim.coverage import gcda
from unikernel_sim.firmware import build_firmware, firmware_dir

needs_gcov = pytest.mark.skipif(shutil.which("gcov") is None, reason="gcov (part of gcc) is not installed")
PROGRAM = """
int f(int n) { int s = 0; for (int i = 0; i < n; i++) s += i; return s; }
int main(void) { return f(5) + f(3) - 13; }
"""


def unisim(*arguments, cwd=None):
    return subprocess.run([sys.executable, "-m", "unikernel_sim", *arguments], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_the_gcda_writer_reproduces_libgcov_byte_for_byte(tmp_path):
    (tmp_path / "t.c").write_text(PROGRAM)
    subprocess.run(["gcc", "--coverage", "-O0", "t.c", "-o", "t"], cwd=tmp_path, check=True)
    subprocess.run(["./t"], cwd=tmp_path, check=True)
    written = (tmp_path / "t.gcda").read_bytes()
    counters, runs = gcda.parse_gcda(written)
    assert [f.counters[0] for f in counters.functions] == [[1, 1, 1], [2, 8]]    # main's arcs; f: 2 calls, 8 trips
    assert gcda.gcda_bytes(counters, runs) == written


@pytest.fixture(scope="module")
def coverage_kernel() -> str:
    return str(build_firmware("coverage", {"COVERAGE": "1"}))


def gcov_lines(directory, source: str) -> dict[int, str]:
    """gcov's count column per line of source (firmware/), from the .gcda under directory
    (gcov -t: to stdout, from the firmware directory, where the objects were compiled)."""
    object_dir = directory / os.path.dirname(source)
    done = subprocess.run(["gcov", "-t", "-o", str(object_dir), source], cwd=firmware_dir(), check=True,
                          capture_output=True, text=True)
    counts, current = {}, None
    for line in done.stdout.splitlines():
        count, number, text = line.split(":", 2)
        if number.strip() == "0" and text.startswith("Source:"):
            current = text[len("Source:"):]
        elif current == source:
            counts[int(number)] = count.strip()
    return counts


@needs_gcov
def test_a_boot_s_coverage_agrees_with_the_exact_profile(tmp_path, coverage_kernel):
    directory, profile = tmp_path / "cov", tmp_path / "p.json"
    done = unisim("boot", coverage_kernel, "--deterministic", "--coverage", str(directory), "--profile", str(profile))
    assert done.returncode == 0, done.stderr
    from unikernel_sim.profiling.profile import Profile

    calls = {row.name: row.calls for row in Profile.from_json(profile.read_text()).per_function()}
    source = (firmware_dir() / "kernel_lib/io/vga.c").read_text().splitlines()
    first = next(n for n, text in enumerate(source, 1) if text.startswith("void vga_putc("))
    counts = gcov_lines(directory, "kernel_lib/io/vga.c")
    assert counts[first] == str(calls["vga_putc"]) and calls["vga_putc"] > 100
    again = unisim("boot", coverage_kernel, "--deterministic", "--coverage", str(directory))
    assert again.returncode == 0
    assert gcov_lines(directory, "kernel_lib/io/vga.c")[first] == str(2 * calls["vga_putc"])   # runs add up


def test_coverage_of_a_kernel_without_counters_is_refused_before_it_runs(tmp_path, firmware_elf):
    done = unisim("boot", firmware_elf, "--coverage", str(tmp_path / "cov"))
    assert done.returncode == 68 and done.stderr.count("\n") == 1 and "no coverage counters" in done.stderr
    assert done.stdout == ""                                                  # it never ran


@needs_gcov
def test_pytest_sums_the_coverage_of_each_test_s_guest_calls(tmp_path, coverage_kernel):
    test = tmp_path / "test_calls.py"
    test.write_text(guestkit.TWO_STRLEN_CALLS)
    directory = tmp_path / "cov"
    done = guestkit.run_pytest(test, "--unisim-coverage", str(directory))
    assert done.returncode == 0, done.stdout + done.stderr
    source = (firmware_dir() / "kernel_lib/libc/string.c").read_text().splitlines()
    first = next(n for n, text in enumerate(source, 1) if re.match(r"size_t strlen\(", text))
    assert gcov_lines(directory, "kernel_lib/libc/string.c")[first] == "2"       # two calls, nothing of the boot
