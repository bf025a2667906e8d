"""Fast-mode guest calls under a fast timer: the check that a call always ends at
its return address (a host-timer stop can make Unicorn skip the sentinel's code
hook; see guest_call.GuestCaller). Reports calls made, IRQs taken, failures.

    python bench/guest_call_stress.py [--hz 10000] [--seconds 60]
"""
from __future__ import annotations

import argparse
import time

from unikernel_sim.firmware import build_firmware
from unikernel_sim.guest_call import GuestCallError
from unikernel_sim.kernel_lib.scratch import GuestScratch
from unikernel_sim.pytest_plugin import boot_to_ready
from markdown_table import print_table  # bench/markdown_table.py, beside this script

TEXT = b"hello, unikernel " * 8


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hz", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    options = parser.parse_args()
    machine = boot_to_ready(str(build_firmware())).fresh()            # fast mode
    if machine.call("pit_init", options.hz) != 0:
        print(f"pit_init({options.hz}) refused")
        return 1
    text = GuestScratch.after_heap(machine).put_c_string(TEXT)
    irqs_before, calls, failures = machine.interrupts.irq_count, 0, 0
    deadline = time.monotonic() + options.seconds
    while time.monotonic() < deadline:
        try:
            if machine.call("strlen", text) != len(TEXT):
                failures += 1
                break
        except GuestCallError as error:
            print(str(error).splitlines()[0])
            failures += 1
            break
        calls += 1
    print_table(["calls", "IRQs", "failures"], [(calls, machine.interrupts.irq_count - irqs_before, failures)])
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
