"""The longer fuzz run: hostile options, hostile guests, and the CI fuzz
properties with many more examples. Prints cases run and failures by class
(every class must be zero; docs/robustness.md records a run).

    python bench/fuzz.py [--options 400] [--guests 300] [--examples 2000] [--seed 1]

A failure is: an exit code outside the documented table, an internal error,
a traceback, more than one stderr line for a bad input, a run past its
timeout, or (hostile guests, deterministic mode) two runs that differ.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import guestkit  # noqa: E402

from unikernel_sim.cli import main  # noqa: E402
from unikernel_sim.exit_codes import ExitCode  # noqa: E402
from unikernel_sim.firmware import build_firmware  # noqa: E402
from unikernel_sim.run import boot  # noqa: E402
from markdown_table import print_table  # bench/markdown_table.py, beside this script

DOCUMENTED = {int(code) for code in ExitCode} | set(range(0, 64))
NASTY_VALUES = ["", "-1", "0", "1", "nan", "inf", "-inf", "1e400", "1e-400", "0x", "0x10", "9" * 40,
                str(1 << 64), str((1 << 63) - 1), "1_000", " 5", "５", os.fsdecode(b"\xff\xfe"), "a" * 5000,
                "{enter}", "{", "}", "=x", "/dev/zero", "/nonexistent", "/", "(", ".*", "2026-13-01T00:00:00"]
OPTIONS = ["--memory", "--max-instructions", "--timeout", "--tsc-mhz", "--cmdline", "--serial-in-text", "--keys",
           "--expect", "--rtc-time", "--module", "--serial-in", "--exit-style", "--trace"]
BUDGET = ["--max-instructions", "20000", "--timeout", "5"]


def run_cli(args: list[str]) -> tuple[int, str, float]:
    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as exit_:          # argparse --help and friends
            code = exit_.code if isinstance(exit_.code, int) else 0
    return code, err.getvalue(), time.monotonic() - started


def classify(code: int, err: str, seconds: float, limit: float) -> str | None:
    if "internal error" in err:
        return "internal error"
    if "Traceback" in err:
        return "traceback"
    if code not in DOCUMENTED:
        return f"undocumented exit code {code}"
    if code in (ExitCode.USAGE, ExitCode.NO_INPUT, ExitCode.BAD_IMAGE) and err.count("\n") != 1:
        return "bad input without exactly one line"
    if seconds > limit:
        return "ran past its timeout"
    return None


def fuzz_options(kernel: str, count: int, rng: random.Random, failures: collections.Counter) -> int:
    for _ in range(count):
        picked = rng.sample(OPTIONS, rng.randint(1, 3))
        args = ["boot", kernel, *BUDGET]
        for option in picked:
            args += [option, rng.choice(NASTY_VALUES)]
        code, err, seconds = run_cli(args)
        problem = classify(code, err, seconds, limit=30)
        if problem:
            failures[problem] += 1
            print(f"options: {problem}: {args[2:]!r}\n{err[-400:]}", file=sys.stderr)
    return count


def fuzz_guests(folder: Path, count: int, rng: random.Random, failures: collections.Counter) -> int:
    cases = 0
    for index in range(count):
        code = bytes(rng.randrange(256) for _ in range(rng.randint(1, 256)))
        path = folder / f"guest{index}.bin"
        path.write_bytes(guestkit.flat_image(code))
        for deterministic in (False, True):
            cases += 1
            args = ["boot", str(path), "--max-instructions", "100000", "--timeout", "3"]
            args += ["--deterministic"] if deterministic else []
            exit_code, err, seconds = run_cli(args)
            problem = classify(exit_code, err, seconds, limit=20)
            if problem:
                failures[problem] += 1
                print(f"guest {index}: {problem}\n{err[-400:]}", file=sys.stderr)
        first = boot(str(path), max_instructions=100_000, deterministic=True)
        second = boot(str(path), max_instructions=100_000, deterministic=True)
        cases += 1
        if (first.serial_bytes, first.stop.reason, first.instructions) != (
                second.serial_bytes, second.stop.reason, second.instructions):
            failures["deterministic runs differ"] += 1
    return cases


def fuzz_properties(examples: int, failures: collections.Counter) -> int:
    env = {**os.environ, "UNISIM_FUZZ_EXAMPLES": str(examples)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "fuzz")],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        failures["fuzz property"] += 1
        print(done.stdout[-2000:], file=sys.stderr)
    return examples * 5


def main_() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--options", type=int, default=400)
    parser.add_argument("--guests", type=int, default=300)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    kernel = str(build_firmware())
    failures: collections.Counter = collections.Counter()
    counts = {}
    with tempfile.TemporaryDirectory() as folder:
        counts["option combinations (CLI)"] = fuzz_options(kernel, args.options, rng, failures)
        counts["random-code guests (CLI, both modes, + a determinism pair)"] = fuzz_guests(
            Path(folder), args.guests, rng, failures)
    counts["property examples (loader, headers, flat code, boot info, report)"] = fuzz_properties(
        args.examples, failures)
    print_table(["generator", "cases"], counts.items())
    print(f"\nfailures by class: {dict(failures) or 'none'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main_())
