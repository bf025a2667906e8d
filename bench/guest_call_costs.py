"""Host time of one guest call, one snapshot restore, and both together, on the booted
reference firmware (fast mode): medians of --batches batches of --calls each.

    python bench/guest_call_costs.py [--batches 5] [--calls 1000]

The raw-Unicorn yardsticks of issue 13 (14 us a call, 7.7 us a restore) are what a
bare uc.emu_start and uc.context_restore of the same work cost.
"""
from __future__ import annotations

import argparse
import statistics
import time

from unikernel_sim.firmware import build_firmware
from unikernel_sim.pytest_plugin import boot_to_ready


def per_call_us(action, calls: int, batches: int) -> float:
    for _ in range(calls // 10):
        action()                                        # warm the translation cache
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            action()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    booted = boot_to_ready(str(build_firmware()))
    machine, snapshot = booted.machine, booted.snapshot

    def restore_and_malloc() -> None:
        machine.restore(snapshot)
        machine.call("malloc", 5632)

    rows = [("guest call strlen(0x100000)", lambda: machine.call("strlen", 0x100000)),
            ("snapshot restore", lambda: machine.restore(snapshot)),
            ("restore + malloc(5632)", restore_and_malloc)]
    print(f"| measurement (median of {args.batches} x {args.calls}) | us |")
    print("|---|---|")
    for label, action in rows:
        print(f"| {label} | {per_call_us(action, args.calls, args.batches):.1f} |")


if __name__ == "__main__":
    main()
