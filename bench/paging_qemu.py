"""The 4 KiB-paging kernel of bench/paging_stores.py in QEMU (TCG, booted by GRUB) and here.

Each side runs the kernel with --short and --long rounds; the difference of the wall
times, divided by the extra rounds, is the cost of one round with the boot (SeaBIOS and
GRUB in QEMU, Python and the loader here) taken out. Needs qemu-system-x86_64,
grub-mkrescue, xorriso and mtools (apt-get install qemu-system-x86 grub-pc-bin
grub-common xorriso mtools); the tests never run this.

    python bench/paging_qemu.py [--runs 3] [--short 100] [--long 1100]

unisim runs twice: as it is, and with the soft TLB's reviews turned off (cpu/_vclock.c).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paging_stores import paging_image, paging_seconds  # noqa: E402
from markdown_table import print_table  # bench/markdown_table.py, beside this script

GRUB_CFG = 'set timeout=0\nset default=0\nmenuentry "paging" {\n  multiboot2 /boot/kernel.bin\n  boot\n}\n'
QEMU = ["qemu-system-x86_64", "-m", "512M", "-display", "none", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
DEBUG_EXIT_STATUS = 1                  # QEMU exits with (value << 1) | 1; the kernel writes 0


def iso_for(rounds: int, folder: Path) -> Path:
    tree = folder / f"iso-{rounds}"
    (tree / "boot" / "grub").mkdir(parents=True)
    shutil.copy(paging_image(rounds), tree / "boot" / "kernel.bin")
    (tree / "boot" / "grub" / "grub.cfg").write_text(GRUB_CFG)
    iso = folder / f"paging-{rounds}.iso"
    subprocess.run(["grub-mkrescue", "-o", str(iso), str(tree)], check=True, capture_output=True)
    return iso


def qemu_seconds(iso: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([*QEMU, "-cdrom", str(iso)], capture_output=True, timeout=600)
    elapsed = time.perf_counter() - start
    if result.returncode != DEBUG_EXIT_STATUS:
        raise SystemExit(f"QEMU exited with {result.returncode}: {result.stderr.decode()[-300:]}")
    return elapsed


SIDES = {"unisim": "Machine.run (fast mode)", "unisim, TLB reviews off": "Machine.run, TLB reviews off"}


def unisim_seconds(rounds: int, side: str = "unisim") -> float:
    return paging_seconds(paging_image(rounds), SIDES[side])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=1100)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    isos = {rounds: iso_for(rounds, folder) for rounds in (args.short, args.long)}
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.runs):                         # interleaved
        for rounds in (args.short, args.long):
            samples.setdefault(("qemu", rounds), []).append(qemu_seconds(isos[rounds]))
            for side in SIDES:
                samples.setdefault((side, rounds), []).append(unisim_seconds(rounds, side))
    extra = args.long - args.short
    per_round, rows = {}, []
    for side in ("qemu", *SIDES):
        short, long = (statistics.median(samples[(side, r)]) for r in (args.short, args.long))
        per_round[side] = (long - short) / extra * 1e3
        rows.append((side, f"{short:.3f}", f"{long:.3f}", f"{per_round[side]:.3f}"))
    print_table([f"side (median of {args.runs})", f"{args.short} rounds, s", f"{args.long} rounds, s",
                 "ms per round"], rows)
    print()
    for side in SIDES:
        print(f"{side} / QEMU per round: {per_round[side] / per_round['qemu']:.2f}x")


if __name__ == "__main__":
    main()
