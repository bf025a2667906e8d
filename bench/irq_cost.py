"""Host time per delivered IRQ: a compute loop under the PIT (or the local APIC timer, the PIT
through the I/O APIC, HPET timer 0 under legacy replacement through the 8259, HPET timer 0
routed to I/O APIC pin 2 without legacy replacement, the RTC's periodic interrupt through the
slave 8259 with the handler reading register C; --hz a power of two from 8 to 8192 for it) at
--hz, in 32-bit protected mode and in 64-bit long mode, against the same loop with the
timer off, in one process.

    python bench/irq_cost.py [--mode 32|64] [--hz 10000] [--iterations 300000000] [--runs 3] [--deterministic]
                             [--source pit|lapic|ioapic|hpet|hpet-ioapic|rtc] [--one-machine | --alternate | --idle]
Prints, per mode, the loop's time without and with the timer, the IRQs delivered and
(with - without) / IRQs, the median over interleaved pairs: what one interrupt costs the
host, run loop included. --one-machine: both columns on one machine (a snapshot restored,
the 8259 masked or not); --alternate: both in one run, phases of --iterations each, masked
and unmasked in turn (the least noisy). --idle: a guest that idles with `sti; hlt` until
each of --iterations interrupts, timed whole: host time per interrupt with the hlt woken
in C and through the run loop.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interrupts.harness import (  # noqa: E402
    IdtGuest, build_long, build_protected, compute_loop, program_hpet_legacy, program_hpet_routed, program_pit,
)

from unikernel_sim.machine import Machine  # noqa: E402
from unikernel_sim.stops import StopReason  # noqa: E402

EOI_32 = "push eax\nmov al, 0x20\nout 0x20, al\npop eax\niretd"
EOI_64 = "push rax\nmov al, 0x20\nout 0x20, al\npop rax\niretq"
APIC_EOI_32 = "mov dword ptr [0xfee000b0], 0\niretd"
APIC_EOI_64 = "push rax\nmov eax, 0xfee000b0\nmov dword ptr [rax], 0\npop rax\niretq"   # no 64-bit disp32 reaches it
APIC_TIMER_VECTOR = 0x40
APIC_DIVIDE_16 = 3                      # divide configuration 0b0011: the 1 GHz bus clock / 16
APIC_NS_PER_TICK = 16
IOAPIC_PIT_VECTOR = 0x30
RTC_VECTOR = 0x70                       # IRQ 8 at the slave 8259's BIOS vector base
RTC_EOI_32 = "push eax\nmov al, 0x0c\nout 0x70, al\nin al, 0x71\nmov al, 0x20\nout 0xa0, al\nout 0x20, al\npop eax\niretd"
RTC_EOI_64 = RTC_EOI_32.replace("eax", "rax").replace("iretd", "iretq")
IRQ8_UNMASKED = "in al, 0x21\nand al, 0xfb\nout 0x21, al\nin al, 0xa1\nand al, 0xfe\nout 0xa1, al\n"


def rtc_periodic(hz: int) -> str:
    """The RTC's periodic interrupt at hz (register A's rate: 32,768 >> (rate - 1) Hz) and
    IRQ 8 unmasked at both 8259s."""
    rate = 16 - hz.bit_length() + 1
    if hz & (hz - 1) or not 3 <= rate <= 13:
        raise SystemExit("--hz for the RTC: a power of two from 8 to 8192")
    return (IRQ8_UNMASKED + f"mov al, 0x0a\nout 0x70, al\nmov al, {0x20 | rate:#x}\nout 0x71, al\n"
            "mov al, 0x0b\nout 0x70, al\nmov al, 0x42\nout 0x71, al")


def store32(address: int, value: int, mode: int) -> str:
    """A dword store to an APIC register (above 2 GiB: in 64-bit mode through a register)."""
    if mode == 32:
        return f"mov dword ptr [{address:#x}], {value:#x}\n"
    return f"mov eax, {address:#x}\nmov dword ptr [rax], {value:#x}\n"


def apic_timer(hz: int, mode: int = 32) -> str:
    """The local APIC timer periodic at hz (LVT timer vector 0x40, bit 17 periodic)."""
    count = 1_000_000_000 // APIC_NS_PER_TICK // hz - 1
    return (store32(0xFEE003E0, APIC_DIVIDE_16, mode) + store32(0xFEE00320, 0x20000 | APIC_TIMER_VECTOR, mode)
            + store32(0xFEE00380, count, mode))


def pit_through_ioapic(hz: int, mode: int = 32) -> str:
    """The PIT at hz through I/O APIC pin 2 (vector 0x30, edge, fixed, CPU 0), the 8259 masked."""
    return (store32(0xFEC00000, 0x15, mode) + store32(0xFEC00010, 0, mode) + store32(0xFEC00000, 0x14, mode)
            + store32(0xFEC00010, IOAPIC_PIT_VECTOR, mode) + program_pit(hz).rsplit("\nmov al, 0xfe", 1)[0])


def phase_loop(iterations: int, bits: int) -> str:
    """compute_loop's four instructions, iterations times a phase, phases without end: the
    guest's first instruction (`phase_top`, where --alternate breaks) begins each one."""
    return compute_loop(iterations, bits).split("mov al, 0")[0] + "jmp phase_top\n"


def idle_loop(wakes: int, bits: int) -> str:
    """`sti; hlt` wakes times (each interrupt ends one), then the debug exit."""
    c = "ecx" if bits == 32 else "rcx"
    return f"mov {c}, {wakes}\nidle:\nsti\nhlt\ndec {c}\njnz idle\nmov al, 0\nout 0xf4, al\n"


def guest(mode: int, iterations: int, hz: int | None, source: str = "pit", body: str = "compute") -> IdtGuest:
    """The timer guest: body "compute" (compute_loop), "phases" (phase_loop) or "idle"
    (idle_loop, iterations wake-ups)."""
    loop = {"compute": compute_loop, "phases": phase_loop, "idle": idle_loop}[body](iterations, mode)
    top = "phase_top:\nnop" if body == "phases" else "nop"
    apic_eoi = APIC_EOI_32 if mode == 32 else APIC_EOI_64
    if source == "ioapic":
        return IdtGuest(before=pit_through_ioapic(hz, mode) if hz else "", fault=top, flags=0x202 if hz else 0x2,
                        after=loop, handlers={IOAPIC_PIT_VECTOR: apic_eoi})
    if source == "rtc":
        return IdtGuest(before=rtc_periodic(hz) if hz else "", fault=top, flags=0x202 if hz else 0x2,
                        after=loop,
                        handlers={RTC_VECTOR: RTC_EOI_32 if mode == 32 else RTC_EOI_64})
    if source == "hpet-ioapic":
        return IdtGuest(before=program_hpet_routed(hz, mode, vector=IOAPIC_PIT_VECTOR) if hz else "", fault=top,
                        flags=0x202 if hz else 0x2, after=loop,
                        handlers={IOAPIC_PIT_VECTOR: apic_eoi})
    if source == "lapic":
        return IdtGuest(before=apic_timer(hz, mode) if hz else "", fault=top, flags=0x202 if hz else 0x2,
                        after=loop, handlers={APIC_TIMER_VECTOR: apic_eoi})
    program = program_hpet_legacy(hz, mode) if source == "hpet" and hz else program_pit(hz) if hz else ""
    return IdtGuest(before=program, fault=top, flags=0x202 if hz else 0x2,
                    after=loop,
                    handlers={8: EOI_32 if mode == 32 else EOI_64})


def loaded_machine(mode: int, iterations: int, hz: int | None, deterministic: bool,
                   source: str, body: str = "compute") -> tuple[Machine, int]:
    """A machine with the timer guest loaded, and the address where its loop starts."""
    build = build_protected if mode == 32 else build_long
    image, loop_start = build(guest(mode, iterations, hz, source, body))
    with tempfile.NamedTemporaryFile(suffix=".bin") as handle:
        handle.write(image)
        handle.flush()
        machine = Machine(16, deterministic=deterministic)
        machine.load(handle.name)
    return machine, loop_start


def timed_run(machine: Machine, ends: StopReason = StopReason.GUEST_EXIT) -> float:
    """Seconds of one Machine.run to the guest's exit (or to the stop `ends` names)."""
    start = time.perf_counter()
    stop = machine.run()
    elapsed = time.perf_counter() - start
    if stop.reason is not ends:
        raise SystemExit(f"irq_cost.py: the timer guest stopped with {stop.summary}, not {ends.value}")
    return elapsed


def run_once(mode: int, iterations: int, hz: int | None, deterministic: bool = False,
             source: str = "pit") -> tuple[float, int]:
    machine, _ = loaded_machine(mode, iterations, hz, deterministic, source)
    return timed_run(machine), machine.interrupts.irq_count


PIC_MASTER_MASK, PIC_SLAVE_MASK = 0x21, 0xA1


def one_machine_pairs(mode: int, iterations: int, hz: int, runs: int, deterministic: bool,
                      source: str) -> tuple[list[float], list[float], list[int]]:
    """The timer image on one machine, snapshot once the loop runs; each pair restores it
    and runs the rest with every 8259 line masked, then unmasked. One engine and one
    translation buffer for both columns: separate machines differ by a few % in the
    loop's own speed (where their code lands), as much as the timer costs."""
    if source in ("lapic", "ioapic", "hpet-ioapic"):
        raise SystemExit(f"--one-machine masks the 8259: not for --source {source}")
    machine, loop_start = loaded_machine(mode, iterations, hz, deterministic, source)
    machine.add_breakpoint(loop_start)          # a budget would leave fast mode counting for good
    assert machine.run().reason is StopReason.BREAKPOINT
    machine.remove_breakpoint(loop_start)
    start_state = machine.snapshot()
    quiet, loaded, irqs = [], [], []
    for _ in range(runs):
        for masked in (True, False):
            machine.restore(start_state)
            if masked:
                machine.board.io.write(PIC_MASTER_MASK, 1, 0xFF)
                machine.board.io.write(PIC_SLAVE_MASK, 1, 0xFF)
            delivered = machine.interrupts.irq_count
            (quiet if masked else loaded).append(timed_run(machine))
            if not masked:
                irqs.append(machine.interrupts.irq_count - delivered)
    return quiet, loaded, irqs


def alternating_phases(mode: int, iterations: int, hz: int, runs: int, deterministic: bool,
                       source: str) -> tuple[list[float], list[float], list[int]]:
    """One machine, one run of phases of `iterations` each, the 8259 masked in one phase and
    as the guest left it in the next, `runs` pairs. Phases of tens of ms put both columns in
    the same stretch of host time, so the host's slow swings (+-4 % from one second-long run
    to the next) fall on both alike; the pairs' restores and whole runs are not needed."""
    if source in ("lapic", "ioapic", "hpet-ioapic"):
        raise SystemExit(f"--alternate masks the 8259: not for --source {source}")
    machine, phase_top = loaded_machine(mode, iterations, hz, deterministic, source, body="phases")
    machine.add_breakpoint(phase_top)
    assert machine.run().reason is StopReason.BREAKPOINT
    guest_masks = [machine.board.io.read(port, 1) for port in (PIC_MASTER_MASK, PIC_SLAVE_MASK)]
    quiet, loaded, irqs = [], [], []
    timed_run(machine, StopReason.BREAKPOINT)         # the phase's code translated, caches warm
    for _ in range(runs):
        for masked in (True, False):
            for port, mask in zip((PIC_MASTER_MASK, PIC_SLAVE_MASK), guest_masks):
                machine.board.io.write(port, 1, 0xFF if masked else mask)
            delivered = machine.interrupts.irq_count
            (quiet if masked else loaded).append(timed_run(machine, StopReason.BREAKPOINT))
            if not masked:
                irqs.append(machine.interrupts.irq_count - delivered)
    return quiet, loaded, irqs


def idle_pairs(mode: int, wakes: int, hz: int, runs: int, deterministic: bool, source: str) -> None:
    """An idle guest (`sti; hlt` until each interrupt): host time per interrupt with the hlt
    woken in C (cpu/hlt_sites.py) and through the run loop (RunLoop._on_hlt), interleaved."""
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(runs):
        for in_c in (True, False):
            machine, _ = loaded_machine(mode, wakes, hz, deterministic, source, body="idle")
            machine.loop.hlt_sites.enabled = in_c
            elapsed = timed_run(machine)
            seconds[in_c].append(elapsed / machine.interrupts.irq_count)
    c, run_loop = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(f"{source}, {mode}-bit, idle at {hz} Hz, {wakes} wake-ups: {c * 1e6:.2f} us per IRQ with the hlt woken "
          f"in C, {run_loop * 1e6:.1f} us through the run loop ({run_loop / c:.0f}x; medians of {runs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", type=int, choices=(32, 64), action="append")
    parser.add_argument("--hz", type=int, default=10_000)
    parser.add_argument("--iterations", type=int, default=300_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--source", choices=("pit", "lapic", "ioapic", "hpet", "hpet-ioapic", "rtc"), default="pit")
    parser.add_argument("--one-machine", action="store_true",
                        help="both columns on one machine: restore a snapshot, 8259 masked / unmasked")
    parser.add_argument("--idle", action="store_true",
                        help="an idle guest (sti; hlt), --iterations wake-ups: the hlt woken in C / by the run loop")
    parser.add_argument("--alternate", action="store_true",
                        help="both columns in one run: --runs pairs of phases of --iterations each, "
                             "8259 masked / unmasked")
    args = parser.parse_args()
    if args.hz <= 0 or args.iterations <= 0 or args.runs <= 0:
        raise SystemExit("irq_cost.py: --hz, --iterations and --runs must be positive")
    for mode in args.mode or [32, 64]:
        if args.idle:
            idle_pairs(mode, args.iterations, args.hz, args.runs, args.deterministic, args.source)
            continue
        quiet, loaded, irqs = [], [], []
        if args.one_machine:
            quiet, loaded, irqs = one_machine_pairs(mode, args.iterations, args.hz, args.runs, args.deterministic,
                                                    args.source)
        if args.alternate:
            quiet, loaded, irqs = alternating_phases(mode, args.iterations, args.hz, args.runs, args.deterministic,
                                                     args.source)
        for _ in range(0 if args.one_machine or args.alternate else args.runs):     # interleaved: without, with
            quiet.append(run_once(mode, args.iterations, None, args.deterministic, args.source)[0])
            seconds, count = run_once(mode, args.iterations, args.hz, args.deterministic, args.source)
            loaded.append(seconds)
            irqs.append(count)
        without, with_timer = statistics.median(quiet), statistics.median(loaded)
        count = statistics.median(irqs)
        # pair by pair: runs drift (up to 1.7x while dropped machines kept their translation
        # buffers and pushed later ones out of call reach: bench/machines_in_turn.py), which
        # medians of the two columns taken apart turn into tens of us per IRQ either way
        pairs = [(w - q) / n for q, w, n in zip(quiet, loaded, irqs)]
        per_irq = statistics.median(pairs)
        spread = (f", pairs' quartiles {statistics.quantiles(pairs)[0] * 1e6:.1f} / "
                  f"{statistics.quantiles(pairs)[2] * 1e6:.1f} us" if len(pairs) >= 4 else "")
        cost = statistics.median(w / q - 1 for q, w in zip(quiet, loaded))
        print(f"{args.source}, {mode}-bit: {without:.3f} s without the timer, {with_timer:.3f} s with {count:.0f} IRQs at "
              f"{args.hz} Hz: {per_irq * 1e6:.2f} us per IRQ ({cost * 100:.1f} % slower; medians of the pairs{spread})")


if __name__ == "__main__":
    main()
