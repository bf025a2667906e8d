"""What a snapshot restore and the guest calls after it cost on the booted firmware (fast
mode), written against the API every tree since issue 13 has, so that an older tree can
run it too (PYTHONPATH=<tree>/src) for before/after comparisons in one sitting.

Rows: a guest call, a restore, a restore then a call (strlen, malloc), and a restore then
the guest's memset over 1 and 8 MiB of heap (what a test that fills buffers pays).
Medians of --batches batches.

    python bench/snapshot_restores.py [--batches 5]
"""
from __future__ import annotations

import argparse

from unikernel_sim import kernel_lib as kl
from unikernel_sim.firmware import build_firmware
from unikernel_sim.pytest_plugin import boot_to_ready
from batches import per_call_us  # bench/batches.py, beside this script
from markdown_table import print_table  # bench/markdown_table.py, beside this script

BIG = 8 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    booted = boot_to_ready(str(build_firmware()))
    machine, snapshot = booted.machine, booted.snapshot
    buffer = kl.malloc(machine, BIG)                      # where the memsets write (freed by the restore)
    machine.restore(snapshot)

    def restore_then(function: str, *arguments: int):
        def action() -> None:
            machine.restore(snapshot)
            machine.call(function, *arguments)
        return action

    rows = [("guest call strlen(0x100000)", lambda: machine.call("strlen", 0x100000), 1000),
            ("snapshot restore", lambda: machine.restore(snapshot), 1000),
            ("restore + strlen(0x100000)", restore_then("strlen", 0x100000), 1000),
            ("restore + malloc(5632)", restore_then("malloc", 5632), 1000),
            ("restore + memset 1 MiB", restore_then("memset", buffer, 0xA5, 1 << 20), 20),
            ("restore + memset 8 MiB", restore_then("memset", buffer, 0xA5, BIG), 3)]
    print_table([f"measurement (median of {args.batches} batches)", "calls a batch", "us each"],
                ((label, str(calls), f"{per_call_us(action, calls, args.batches):.1f}") for label, action, calls in rows))
    machine.restore(snapshot)


if __name__ == "__main__":
    main()
