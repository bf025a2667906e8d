"""Host time of a guest that computes with interrupts disabled while a request waits (the
PIT's IRQ 0 unmasked at the 8259 at 1 kHz, `cli`), against the same loop with nothing
waiting, in fast and deterministic mode; medians of --runs, one process.

    python bench/pending_irq.py [--runs 3] [--iterations 50000000]
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

from unikernel_sim.machine import Machine  # noqa: E402
from unikernel_sim.stops import StopReason  # noqa: E402


def run_once(path: Path, deterministic: bool) -> float:
    machine = Machine(16, deterministic=deterministic)
    machine.load(str(path))
    start = time.perf_counter()
    stop = machine.run(timeout=300)
    elapsed = time.perf_counter() - start
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=50_000_000)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp())
    images = {}
    for waiting in (False, True):
        guest = IdtGuest(before=program_pit(1000) if waiting else "", fault="nop", flags=0x2,
                         after=compute_loop(args.iterations), handlers={0x08: "iretd"})
        images[waiting] = directory / f"pending-{waiting}.bin"
        images[waiting].write_bytes(build_protected(guest)[0])
    for deterministic in (False, True):
        seconds = {waiting: statistics.median(run_once(path, deterministic) for _ in range(args.runs))
                   for waiting, path in images.items()}
        mode = "deterministic" if deterministic else "fast"
        print(f"{mode}: {seconds[False]:.3f} s quiet, {seconds[True]:.3f} s with a request waiting "
              f"({seconds[True] / seconds[False]:.2f}x)")


if __name__ == "__main__":
    main()
