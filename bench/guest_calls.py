"""Guest calls per second with a snapshot restore before each, and the cost of
restoring after dirtying 1 MiB and 64 MiB of guest RAM.

    python bench/guest_calls.py [--seconds 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

from unikernel_sim.firmware import build_firmware
from unikernel_sim.pytest_plugin import boot_to_ready
from markdown_table import print_table  # bench/markdown_table.py, beside this script

MIB = 1 << 20


def calls_per_second(booted, seconds: float) -> float:
    machine = booted.machine
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        machine.restore(booted.snapshot)
        machine.call("malloc", 5632)
        count += 1
    return count / (time.perf_counter() - start)


def restore_ms(booted, dirty_bytes: int, repeats: int = 7) -> float:
    machine = booted.machine
    samples = []
    for _ in range(repeats):
        machine.restore(booted.snapshot)
        machine.ram.fill(32 * MIB, dirty_bytes, 0x5A)
        start = time.perf_counter()
        machine.restore(booted.snapshot)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    kernel = str(build_firmware())
    rows = []
    for mode, deterministic in (("fast", False), ("deterministic", True)):
        booted = boot_to_ready(kernel, deterministic=deterministic)
        rows.append((f"malloc(5632) calls/s with a restore before each ({mode})",
                     f"{calls_per_second(booted, args.seconds):.0f}"))
    booted = boot_to_ready(kernel, deterministic=True)
    for size in (MIB, 64 * MIB):
        rows.append((f"restore after {size // MIB} MiB dirtied (median of 7)", f"{restore_ms(booted, size):.2f} ms"))
    print_table(["measurement", "value"], rows)


if __name__ == "__main__":
    main()
