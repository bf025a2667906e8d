"""Run-loop overhead against raw Unicorn on a compute-bound guest.

Cases (median of --runs, all measured in this one process):
  bare         a Unicorn engine with no hooks at all, given the same RAM and CPU state
  raw          emu_start straight from the entry state, no run loop, IF=0 (our hooks installed)
  loop         Machine.run() (fast mode), IF=0: what the run loop costs
  timer-1khz   Machine.run() fast mode with the PIT at 1 kHz and IRQ 0 handled
  determ       Machine.run(deterministic=True), IF=0: per-instruction counting in C

    python bench/run_loop_overhead.py [--runs 5] [--iterations 100000000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interrupts.harness import IdtGuest, build_protected, compute_loop, program_pit  # noqa: E402

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc  # noqa: E402

from unikernel_sim.cpu.unicorn_compat import RUN_UNTIL_NEVER  # noqa: E402
from unikernel_sim.machine import Machine  # noqa: E402
from unikernel_sim.stops import StopReason  # noqa: E402
from markdown_table import print_table  # bench/markdown_table.py, beside this script

IMAGE_SPAN = 8 << 20                    # the guest, its tables and stacks lie below 8 MiB
TIMER_HANDLER = "push eax\nmov al, 0x20\nout 0x20, al\npop eax\niretd"


def guest(iterations: int, timer: bool) -> IdtGuest:
    return IdtGuest(before=program_pit(1000) if timer else "", fault="nop", flags=0x202 if timer else 0x2,
                    after=compute_loop(iterations), handlers={8: TIMER_HANDLER})


def run_case(path: str, case: str) -> float:
    machine = Machine(deterministic=case == "determ")
    machine.load(path)
    if case == "bare":
        bare = Uc(UC_ARCH_X86, UC_MODE_64)
        bare.mem_map(0, machine.ram.size)
        bare.mem_write(0, bytes(machine.uc.mem_read(0, IMAGE_SPAN)))
        bare.context_restore(machine.uc.context_save())
        start = time.perf_counter()
        bare.emu_start(machine.rip, RUN_UNTIL_NEVER)       # ends at the debug-exit OUT: no hook for it
        return time.perf_counter() - start
    start = time.perf_counter()
    if case == "raw":
        machine.uc.emu_start(machine.rip, RUN_UNTIL_NEVER)
        pending = machine.loop.pending_stop
        assert pending is not None and pending.reason is StopReason.GUEST_EXIT, "stopped before the debug exit"
    else:
        stop = machine.run()
        assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=100_000_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    images = {}
    for timer in (False, True):
        image, _ = build_protected(guest(args.iterations, timer))
        path = folder / f"compute-{timer}.bin"
        path.write_bytes(image)
        images[timer] = str(path)
    cases = {"bare": images[False], "raw": images[False], "loop": images[False], "timer-1khz": images[True], "determ": images[False]}
    results = {name: [] for name in cases}
    for _ in range(args.runs):                # interleaved, so drift hits every case alike
        for name, path in cases.items():
            results[name].append(run_case(path, name))
    bare = statistics.median(results["bare"])
    instructions = 4 * args.iterations
    medians = {name: statistics.median(samples) for name, samples in results.items()}
    print_table([f"case (median of {args.runs}, {instructions / 1e6:.0f} M guest instructions)", "seconds", "vs bare"],
                ((name, f"{median:.3f}", f"{median / bare:.3f}x") for name, median in medians.items()))


if __name__ == "__main__":
    main()
