"""A timer kernel that idles (`sti; hlt` until each tick of the PIT at --hz, through the 8259)
in QEMU (TCG, booted by GRUB) and here, 32-bit.

Each side runs the kernel for --short and --long ticks; the difference of the wall times,
divided by the extra ticks, is what one tick costs with the boot (SeaBIOS and GRUB in QEMU,
Python and the loader here) taken out. QEMU's guest waits for each tick in host time; here
virtual time jumps over the wait (fast mode, as RunLoop._on_hlt does), so a tick costs its
handling only. Needs qemu-system-x86_64, grub-mkrescue, xorriso and mtools (see
bench/paging_qemu.py); the tests never run this.

    python bench/idle_timer_qemu.py [--runs 3] [--hz 1000] [--short 200] [--long 2200]
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from irq_cost import loaded_machine, timed_run  # noqa: E402
from irq_cost import guest as timer_guest  # noqa: E402
from markdown_table import print_table  # noqa: E402
from paging_qemu import GRUB_CFG, qemu_seconds  # noqa: E402

from interrupts.harness import build_protected  # noqa: E402


def iso_for(ticks: int, hz: int, folder: Path) -> Path:
    tree = folder / f"iso-{ticks}"
    (tree / "boot" / "grub").mkdir(parents=True)
    image, _ = build_protected(timer_guest(32, ticks, hz, "pit", body="idle"))
    (tree / "boot" / "kernel.bin").write_bytes(image)
    (tree / "boot" / "grub" / "grub.cfg").write_text(GRUB_CFG)
    iso = folder / f"idle-{ticks}.iso"
    subprocess.run(["grub-mkrescue", "-o", str(iso), str(tree)], check=True, capture_output=True)
    return iso


def unisim_seconds(ticks: int, hz: int) -> float:
    """Machine creation, load and the run to the guest's exit (the loader's share cancels out)."""
    start = time.perf_counter()
    machine, _ = loaded_machine(32, ticks, hz, False, "pit", body="idle")
    timed_run(machine)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hz", type=int, default=1000)
    parser.add_argument("--short", type=int, default=200)
    parser.add_argument("--long", type=int, default=2200)
    args = parser.parse_args()
    if args.hz <= 0 or args.runs <= 0 or not 0 < args.short < args.long:
        raise SystemExit("idle_timer_qemu.py: --hz and --runs must be positive, and 0 < --short < --long")
    if shutil.which("qemu-system-x86_64") is None or shutil.which("grub-mkrescue") is None:
        raise SystemExit("needs qemu-system-x86_64 and grub-mkrescue (apt-get install qemu-system-x86 grub-pc-bin "
                         "grub-common xorriso mtools)")
    extra = args.long - args.short
    samples: dict[str, list[float]] = {"QEMU 7.2 (TCG)": [], "unisim (fast mode)": []}
    with tempfile.TemporaryDirectory() as folder:
        isos = {n: iso_for(n, args.hz, Path(folder)) for n in (args.short, args.long)}
        for _ in range(args.runs):        # interleaved
            samples["QEMU 7.2 (TCG)"].append(qemu_seconds(isos[args.long]) - qemu_seconds(isos[args.short]))
            samples["unisim (fast mode)"].append(unisim_seconds(args.long, args.hz)
                                                 - unisim_seconds(args.short, args.hz))
    rows = [[side, f"{statistics.median(values) / extra * 1e6:.1f}"] for side, values in samples.items()]
    print(f"PIT at {args.hz} Hz, {args.short} / {args.long} ticks, medians of {args.runs}:")
    print_table(["", "host us per tick"], rows)


if __name__ == "__main__":
    main()
