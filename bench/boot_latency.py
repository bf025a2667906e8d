"""Wall time from process start to the firmware's first serial byte, and to exit.

Median of N runs of `unisim boot firmware/build/default/kernel.elf` (the console
script installed beside this interpreter, not a shim found on PATH), beside
`python -c 'import unicorn'` and `python -c pass` on the same machine in the
same run (the floor any Python tool pays). Prints a Markdown table row set.

The unisim rows come twice: with the caller's environment as it is (this
machine sets PYTHONDONTWRITEBYTECODE=1, so an editable install compiles every
unikernel_sim module on every start), and with bytecode cached in a
temporary PYTHONPYCACHEPREFIX (what a regular, non-editable install or a
machine without that variable gets).

    python bench/boot_latency.py [--runs 10] [--python-m]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import os
import sys
import sysconfig
import tempfile
import time

from unikernel_sim.firmware import build_firmware
from markdown_table import print_table  # bench/markdown_table.py, beside this script


def first_byte_and_exit(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    first_at = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    if not first:
        raise SystemExit(f"{command} printed nothing")
    return first_at, time.perf_counter() - start


def console_script(name: str) -> str:
    """The script pip installed for this interpreter, not whatever PATH finds first: a
    version manager's shim on PATH (pyenv's is a bash script that runs pyenv, which
    execs the script) cost 60-100 ms a start here, which `python -c` rows never pay."""
    beside = os.path.join(sysconfig.get_path("scripts"), name)
    return beside if os.access(beside, os.X_OK) else (shutil.which(name) or name)


def process_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--python-m", action="store_true",
                        help="run `python -m unikernel_sim` instead of the console script, so that "
                             "PYTHONPATH selects the tree (an older worktree, for before/after)")
    args = parser.parse_args()
    kernel = str(build_firmware())
    program = [sys.executable, "-m", "unikernel_sim"] if args.python_m else [console_script("unisim")]
    unisim = program + ["boot", kernel]
    rows = []
    samples = [first_byte_and_exit(unisim) for _ in range(args.runs)]
    rows.append(("unisim boot: first serial byte", statistics.median(s[0] for s in samples)))
    rows.append(("unisim boot: process exit", statistics.median(s[1] for s in samples)))
    # The cached rows and their yardsticks alternate, one of each per round, so that a
    # slower minute of a noisy host weighs on both sides of the ratio alike.
    cached_runs, unicorn_runs, bare_runs = [], [], []
    with tempfile.TemporaryDirectory() as cache:
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = cache
        first_byte_and_exit(unisim, cached)                       # writes the bytecode once
        for _ in range(args.runs):
            cached_runs.append(first_byte_and_exit(unisim, cached))
            unicorn_runs.append(process_time([sys.executable, "-c", "import unicorn"]))
            bare_runs.append(process_time([sys.executable, "-c", "pass"]))
    first_byte = statistics.median(s[0] for s in cached_runs)
    import_unicorn = statistics.median(unicorn_runs)
    rows.append(("unisim boot, bytecode cached: first serial byte", first_byte))
    rows.append(("unisim boot, bytecode cached: process exit", statistics.median(s[1] for s in cached_runs)))
    rows.append(("python -c 'import unicorn'", import_unicorn))
    rows.append(("python -c pass", statistics.median(bare_runs)))
    print_table([f"measurement (median of {args.runs})", "ms"],
                ((name, f"{seconds * 1000:.1f}") for name, seconds in rows))
    print(f"\nfirst serial byte (bytecode cached) / `import unicorn`: {first_byte / import_unicorn:.3f}")


if __name__ == "__main__":
    main()
