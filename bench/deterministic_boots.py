"""Deterministic boots of the reference firmware, back to back in one process.

The boot is I/O-bound (every serial byte polls the UART and the PIT calibration
polls port 0x61), and in deterministic mode every port access re-arms the
scheduler, so this measures the run loop's per-access cost rather than guest
compute.

    python bench/deterministic_boots.py [--boots 20]
"""
from __future__ import annotations

import argparse
import statistics
import time

from unikernel_sim.firmware import build_firmware
from unikernel_sim.run import boot
from markdown_table import print_table  # bench/markdown_table.py, beside this script


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boots", type=int, default=20)
    args = parser.parse_args()
    kernel = str(build_firmware())
    samples = []
    result = None
    for _ in range(args.boots):
        start = time.perf_counter()
        result = boot(kernel, deterministic=True, timeout=60)
        samples.append(time.perf_counter() - start)
    print_table(["boots", "median ms per boot", "guest instructions", "serial bytes"],
                [(args.boots, f"{statistics.median(samples) * 1000:.1f}", result.instructions,
                  len(result.serial_bytes))])


if __name__ == "__main__":
    main()
