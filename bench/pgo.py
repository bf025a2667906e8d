"""Boot 1 against boot N: the TinyLlama job on the generic firmware and on the firmware
rebuilt with the profile of a training run of the same job (unikernel_sim/pgo.py).

    python bench/pgo.py [--steps 256] [--train-steps 64] [--runs 3]
Instructions per token come from deterministic runs (stable across machines); wall time
per token from fast-mode runs, medians of --runs, interleaved; the generated text must be
the same on both kernels. Needs ../shared/data (stories260K.bin, tok512.bin).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.cli.llama import _cmdline
from unikernel_sim.firmware import build_firmware
from unikernel_sim.pgo import build_pgo_firmware
from unikernel_sim.profiling.collector import Profiler
from unikernel_sim.run import boot
from markdown_table import print_table  # bench/markdown_table.py, beside this script

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODULES = [ModuleSpec(str(DATA / "stories260K.bin"), "model"), ModuleSpec(str(DATA / "tok512.bin"), "tokenizer")]
PROMPT = "Once upon a time"


def run(kernel: str, steps: int, deterministic: bool, on_loaded=()):
    return boot(kernel, modules=MODULES, cmdline=_cmdline(steps, 0.0, 0.9, 1, PROMPT), deterministic=deterministic,
                on_loaded=on_loaded)


def story(serial: str) -> list[str]:
    """The generated lines (the boot log before them names load addresses, which differ)."""
    lines = serial.splitlines()
    end = next(n for n, line in enumerate(lines) if line.startswith("llama:"))
    start = next(n for n, line in enumerate(lines) if line.startswith(PROMPT))
    return lines[start:end]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    generic = str(build_firmware())
    started = time.perf_counter()
    guided, hot = build_pgo_firmware(lambda kernel, on_loaded: run(kernel, args.train_steps, True, on_loaded).machine)
    guided = str(guided)
    loop_seconds = time.perf_counter() - started
    counted, copies = {}, {}
    for name, kernel in (("generic", generic), ("pgo", guided)):
        profilers = []
        result = run(kernel, args.steps, True, [lambda machine: profilers.append(Profiler(machine))])
        counted[name] = (result.machine.clock.instructions, story(result.serial))
        rows = {row.name: row.self for row in profilers[0].result().per_function()}
        copies[name] = rows.get("memcpy", 0) + rows.get("memset", 0)
    assert counted["generic"][1] == counted["pgo"][1], "the profile-guided firmware generated other text"
    walls = {"generic": [], "pgo": []}
    for _ in range(args.runs):
        for name, kernel in (("generic", generic), ("pgo", guided)):
            start = time.perf_counter()
            run(kernel, args.steps, False)
            walls[name].append(time.perf_counter() - start)
    print_table(["firmware", "instructions / token", "of which memcpy + memset",
                 f"wall ms / token (fast mode, median of {args.runs})"],
                ((name, f"{counted[name][0] / args.steps / 1e6:.3f} M", f"{copies[name] / args.steps:,.0f}",
                  f"{statistics.median(walls[name]) / args.steps * 1e3:.2f}") for name in ("generic", "pgo")))
    print(f"instructions pgo/generic {counted['pgo'][0] / counted['generic'][0]:.3f}, wall "
          f"{statistics.median(walls['pgo']) / statistics.median(walls['generic']):.3f}; same text: yes; "
          f"the loop (instrumented build, {args.train_steps}-step training run, rebuild): {loop_seconds:.1f} s; "
          f"fast paths: {hot or 'none'}")


if __name__ == "__main__":
    main()
