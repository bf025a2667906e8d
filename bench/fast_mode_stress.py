"""Fast mode must compute what deterministic mode computes, whenever interrupts land.

Runs the TinyLlama job of the bundled firmware on the shared stories260K
checkpoint once in deterministic mode (the reference text), then --runs times
in fast mode with the guest's PIT reprogrammed to --hz after boot, so that
timer interrupts (and the stops that deliver them) land at host-timing-dependent
points. Every fast run's text must equal the reference. Also reports delivered
timer interrupts against the PIT periods that passed.

    python bench/fast_mode_stress.py [--runs 200] [--steps 24] [--hz 1000] [--temp 1.0]
Prints one Markdown table row per mode; exits 1 if any text differs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.cli.llama import _cmdline
from unikernel_sim.firmware import build_firmware
from unikernel_sim.machine import Machine
from markdown_table import print_table  # bench/markdown_table.py, beside this script

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PIT_HZ = 1_193_182
PIT_CONTROL, PIT_CHANNEL0 = 0x43, 0x40
CHANNEL0_RATE_GENERATOR = 0x34        # channel 0, lobyte/hibyte, mode 2
SEED = 12345


def run_once(kernel: str, deterministic: bool, steps: int, hz: int, temperature: float) -> tuple[str, int, int]:
    """(generated text, timer interrupts delivered, PIT periods elapsed) of one run."""
    machine = Machine(512, deterministic=deterministic)
    machine.load(kernel, cmdline=_cmdline(steps, temperature, 0.9, SEED, ""),
                 modules=[ModuleSpec(str(SHARED / "stories260K.bin"), "model"),
                          ModuleSpec(str(SHARED / "tok512.bin"), "tokenizer")])
    machine.add_breakpoint("tinyllama_job")
    stop = machine.run(timeout=120)
    assert stop.reason.name == "BREAKPOINT", stop.summary
    machine.remove_breakpoint("tinyllama_job")
    count = PIT_HZ // hz
    io = machine.board.io
    io.write(PIT_CONTROL, 1, CHANNEL0_RATE_GENERATOR)
    io.write(PIT_CHANNEL0, 1, count & 0xFF)
    io.write(PIT_CHANNEL0, 1, count >> 8)
    irqs_before, started_ns = machine.interrupts.irq_count, machine.clock.now_ns()
    stop = machine.run(timeout=600)
    assert stop.reason.name == "GUEST_EXIT", stop.summary
    periods = (machine.clock.now_ns() - started_ns) * hz // 1_000_000_000
    text = machine.serial.text().split("\nllama: ")[0]
    return text, machine.interrupts.irq_count - irqs_before, periods


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--hz", type=int, default=1000)
    parser.add_argument("--temp", type=float, default=1.0)
    args = parser.parse_args()
    if not (SHARED / "stories260K.bin").exists():
        print(f"skipped: {SHARED / 'stories260K.bin'} is absent", file=sys.stderr)
        return 0
    kernel = str(build_firmware())
    reference, _, _ = run_once(kernel, True, args.steps, args.hz, args.temp)
    differing, ratios, seconds = 0, [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        text, irqs, periods = run_once(kernel, False, args.steps, args.hz, args.temp)
        seconds.append(time.perf_counter() - started)
        differing += text != reference
        ratios.append(irqs / periods if periods else 1.0)
    print_table(["fast runs", "differing from deterministic", "timer IRQs / PIT periods (median, min)",
                 "s per run (median)"],
                [(f"{args.runs} ({args.steps} steps, temp {args.temp}, PIT {args.hz} Hz)", differing,
                  f"{statistics.median(ratios):.3f}, {min(ratios):.3f}", f"{statistics.median(seconds):.2f}")])
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
