"""One guest, three timer sources at 1 kHz: the PIT through the 8259, the local APIC
timer, and the PIT through the I/O APIC (8259 masked). A compute loop runs under the
timer; time it as a whole process per source, interleaved (docs/performance.md).

    python bench/timer_sources.py --source pit|lapic|ioapic [--iterations 200000000]
Prints the interrupts delivered and the guest's run time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interrupts.harness import IdtGuest, build_protected, compute_loop, program_pit  # noqa: E402

from unikernel_sim.machine import Machine  # noqa: E402
from unikernel_sim.stops import StopReason  # noqa: E402

LAPIC_1KHZ = 62499                        # divide 16: (62,499 + 1) x 16 ns = 1 ms
PIC_EOI = "push eax\nmov al, 0x20\nout 0x20, al\npop eax\niretd"
LAPIC_EOI = "mov dword ptr [0xfee000b0], 0\niretd"
PIT_1KHZ_SETUP = program_pit(1000).rsplit("\nmov al, 0xfe", 1)[0] + "\n"     # the 8259 left masked
SETUP = {
    "pit": program_pit(1000),
    "lapic": ("mov dword ptr [0xfee003e0], 3\nmov dword ptr [0xfee00320], 0x20040\n"
              f"mov dword ptr [0xfee00380], {LAPIC_1KHZ}"),
    "ioapic": ("mov dword ptr [0xfec00000], 0x15\nmov dword ptr [0xfec00010], 0\n"
               "mov dword ptr [0xfec00000], 0x14\nmov dword ptr [0xfec00010], 0x30\n" + PIT_1KHZ_SETUP),
}
HANDLERS = {"pit": {0x08: PIC_EOI}, "lapic": {0x40: LAPIC_EOI}, "ioapic": {0x30: LAPIC_EOI}}


def guest(source: str, iterations: int) -> IdtGuest:
    return IdtGuest(before=SETUP[source], fault="nop", flags=0x202, handlers=HANDLERS[source],
                    after=compute_loop(iterations))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=sorted(SETUP), default="pit")
    parser.add_argument("--iterations", type=int, default=200_000_000)
    args = parser.parse_args()
    image, _ = build_protected(guest(args.source, args.iterations))
    with tempfile.NamedTemporaryFile(suffix=".bin") as handle:
        handle.write(image)
        handle.flush()
        machine = Machine(16)
        machine.load(handle.name)
        start = time.perf_counter()
        stop = machine.run()
        elapsed = time.perf_counter() - start
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    print(f"{args.source}: {machine.interrupts.irq_count} interrupts in {elapsed:.2f} s "
          f"({machine.interrupts.irq_count / elapsed:.0f}/s)")


if __name__ == "__main__":
    main()
