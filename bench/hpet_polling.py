"""Host time of a calibration loop: the guest polls the HPET's main counter until 10 ms of
its ticks have passed, in deterministic mode (virtual time moves with instructions, so the
loop makes as many reads as 10 ms of instructions allow), with the counter's reads served
in C (cpu/hpet_counter.py) and in Python (the device's handler), interleaved.

    python bench/hpet_polling.py [--runs 5] [--milliseconds 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interrupts.harness import IdtGuest, build_protected  # noqa: E402

from markdown_table import print_table  # noqa: E402  bench/markdown_table.py, beside this script
from unikernel_sim.machine import Machine  # noqa: E402
from unikernel_sim.stops import StopReason  # noqa: E402

TICKS_PER_MS = 100_000                  # the HPET's 100 MHz


def polling_guest(milliseconds: int) -> IdtGuest:
    poll = f"""
        mov dword ptr [0xfed00010], 1
        mov ebx, [0xfed000f0]
    again:
        mov eax, [0xfed000f0]
        sub eax, ebx
        cmp eax, {milliseconds * TICKS_PER_MS}
        jb again
        mov al, 0
        out 0xf4, al
    """
    return IdtGuest(before="", fault="nop", flags=0x2, after=poll, handlers={})


def run_once(image: Path, c_reads: bool) -> tuple[float, int]:
    machine = Machine(16, deterministic=True)
    machine.load(str(image))
    machine.loop.hpet_counter.state.served = int(c_reads)
    start = time.perf_counter()
    stop = machine.run(timeout=600)
    seconds = time.perf_counter() - start
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    return seconds, machine.instructions or 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--milliseconds", type=int, default=10)
    args = parser.parse_args()
    c_times, python_times, counts = [], [], set()
    with tempfile.TemporaryDirectory() as directory:
        image = Path(directory) / "polling.bin"
        image.write_bytes(build_protected(polling_guest(args.milliseconds))[0])
        for _ in range(args.runs):
            seconds, instructions = run_once(image, True)
            c_times.append(seconds)
            counts.add(instructions)
            seconds, instructions = run_once(image, False)
            python_times.append(seconds)
            counts.add(instructions)
    c, py = statistics.median(c_times), statistics.median(python_times)
    print_table([f"{args.milliseconds} ms of HPET polling, deterministic (median of {args.runs})", "host seconds"],
                [("counter reads in Python", f"{py:.3f}"), ("counter reads in C", f"{c:.3f}"),
                 ("ratio", f"{py / c:.1f}x"), ("guest instructions (the same in every run)",
                                             ", ".join(str(n) for n in sorted(counts)))])


if __name__ == "__main__":
    main()
