"""What each runtime checker costs on a guest-compute job: the stories260K TinyLlama job
(256 greedy steps, its 100 Hz timer) with the default checkers, and with each one changed,
in one process, interleaved, medians of --runs. The other checkers of the crash report
(heap exhaustion, stack overflow, return into nowhere, IDT, mapping, SSE disabled) read
the machine's state only when a report is built: they cost nothing while the guest runs.

    python bench/checker_costs.py [--runs 3] [--steps 256]

Needs ../shared/data (stories260K.bin, tok512.bin).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.firmware import build_firmware
from unikernel_sim.run import boot
from markdown_table import print_table  # bench/markdown_table.py, beside this script

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CASES = {
    "default (red-zone watch, alignment guard in hardware mode)": {},
    "red-zone watch off": {"check_red_zone": False},
    "alignment guard off": {"alignment": "off"},
    "alignment guard in check mode": {"alignment": "check"},
    "return checks on (--check-returns)": {"check_returns": True},
    "red-zone watch and alignment guard off": {"check_red_zone": False, "alignment": "off"},
}


def job_seconds(kernel: str, steps: int, options: dict) -> float:
    start = time.perf_counter()
    result = boot(kernel, modules=[ModuleSpec(str(DATA / "stories260K.bin"), "model"),
                                   ModuleSpec(str(DATA / "tok512.bin"), "tokenizer")],
                  cmdline=f"job=llama steps={steps} temp=0", **options)
    elapsed = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"the job failed: {result.stop.summary}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=256)
    args = parser.parse_args()
    if not (DATA / "stories260K.bin").is_file():
        sys.exit(f"checker_costs: {DATA / 'stories260K.bin'} is missing (see ../shared/data/SOURCE.txt)")
    kernel = str(build_firmware())
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, options in CASES.items():
            samples[name].append(job_seconds(kernel, args.steps, options))
    base = statistics.median(samples[next(iter(CASES))])
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print_table([f"stories260K, {args.steps} steps (median of {args.runs})", "seconds", "vs default"],
                ((name, f"{median:.3f}", f"{median / base:.3f}x") for name, median in medians.items()))


if __name__ == "__main__":
    main()
