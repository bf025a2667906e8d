"""What the SSE alignment guard costs on the TinyLlama job: stories260K, 256 greedy
steps, fast mode, with the guard as by default ("hardware") or switched off.

    python bench/alignment_cost.py --mode hardware|check|off [--deterministic]
Time it as a whole process, the two modes interleaved (docs/performance.md).
Prints the number of site executions the C check looked at.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.cli.llama import _cmdline
from unikernel_sim.firmware import build_firmware
from unikernel_sim.run import boot

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("hardware", "check", "off"), default="hardware")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args()
    result = boot(str(build_firmware()), modules=[ModuleSpec(str(SHARED / "stories260K.bin"), "model"),
                                                   ModuleSpec(str(SHARED / "tok512.bin"), "tokenizer")],
                  cmdline=_cmdline(args.steps, 0.0, 0.9, 42, ""), alignment=args.mode,
                  deterministic=args.deterministic)
    guard = result.machine.alignment
    print(f"{result.stop.summary}; {len(guard.sites)} sites checked at run time, {guard.checked} executions checked")


if __name__ == "__main__":
    main()
