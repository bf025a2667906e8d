"""The same 64-bit guest loop in machines made one after another in one process, with
and without cpu/engine.py's collection before a new engine (ENGINES_BETWEEN_COLLECTIONS).

Each machine is dropped after its run, as a bench or a test suite drops them; its engine
then lives until Python's cyclic collector runs. Each engine's translation buffer is
mapped below the last, and once one lies more than 2 GiB from libunicorn's code, the
generated code calls helpers indirectly (docs/unicorn-quirks.md). Each configuration
runs in a fresh interpreter (the buffers of one would move the other's).

    python bench/machines_in_turn.py [--machines 10] [--iterations 200000000]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from markdown_table import print_table  # bench/markdown_table.py, beside this script

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
sys.path[:0] = [{bench!r}, {tests!r}]
import irq_cost
from interrupts.harness import build_long
from unikernel_sim.cpu import engine
from unikernel_sim.machine import Machine
if {no_collection}:
    engine.ENGINES_BETWEEN_COLLECTIONS = engine._collect_at = 1 << 30
image, _ = build_long(irq_cost.guest(64, {iterations}, None))
path = Path(tempfile.mkdtemp()) / "loop.bin"
path.write_bytes(image)
seconds = []
for _ in range({machines}):
    machine = Machine(16)
    machine.load(str(path))
    start = time.perf_counter()
    machine.run()
    seconds.append(time.perf_counter() - start)
print(json.dumps(seconds))
"""


def run(machines: int, iterations: int, no_collection: bool) -> list[float]:
    code = CHILD.format(bench=str(ROOT / "bench"), tests=str(ROOT / "tests"), no_collection=no_collection,
                        iterations=iterations, machines=machines)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=200_000_000)
    args = parser.parse_args()
    rows = []
    for label, no_collection in (("collection before a new engine (default)", False),
                                 ("no collection (the tree before)", True)):
        seconds = run(args.machines, args.iterations, no_collection)
        rows.append((label, " ".join(f"{s:.2f}" for s in seconds), f"{statistics.median(seconds[:6]):.3f}",
                     f"{statistics.median(seconds[6:]):.3f}"))
    print_table([f"{args.iterations:,} iterations, machine by machine (s)", "each run", "median, 1-6",
                 f"median, 7-{args.machines}"], rows)


if __name__ == "__main__":
    main()
