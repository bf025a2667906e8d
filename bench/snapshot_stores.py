"""What the first store to a page costs after a Unicorn 2.1.4 snapshot restore with memory.

Unicorn's memory snapshots are copy-on-write: after a context with memory is saved (or
restored), the first guest store to each page gives that page a region of its own, and
each new region costs more than the last (the memory map is rebuilt and RAM offsets are
searched over the regions already made). Worse again on an engine that once unmapped a
region: Unicorn then searches every block for a free RAM offset. This is why the probes
use a machine's own RAM instead of a region of their own (cpu/engine.py, ProbeEngine),
and what a guest call that wrote many pages after `Machine.restore` paid before the
machine's snapshots became write protection (memory/ram_snapshots.py;
bench/dirty_page_snapshots.py compares the two).

A bare engine with 64 MiB of RAM stores one byte to each of N pages (a fresh engine per
row): without any snapshot, after a snapshot restore, and after a restore on an engine
that mapped, ran and unmapped a 64 KiB region first. Prints microseconds per page.

    python bench/snapshot_stores.py [--pages 64,256,1024,2048]
"""
from __future__ import annotations

import argparse
import time

from keystone import KS_ARCH_X86, KS_MODE_64, Ks
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn.unicorn_const import UC_CTL_CONTEXT_CPU, UC_CTL_CONTEXT_MEMORY

from unikernel_sim.cpu.unicorn_compat import set_context_mode
from markdown_table import print_table  # bench/markdown_table.py, beside this script

CODE_ADDRESS = 0x1000
FIRST_PAGE = 0x400000
PAGE = 4096


def page_stores(pages: int, address: int = CODE_ADDRESS) -> bytes:
    """Code at address that stores one byte to each of `pages` pages from FIRST_PAGE, then
    halts (bench/dirty_page_snapshots.py runs the same loop)."""
    text = f"mov rcx, {pages}; mov rdi, {FIRST_PAGE}; l: mov byte ptr [rdi], 1; add rdi, {PAGE}; dec rcx; jnz l; hlt"
    return bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(text, address)[0])


def us_per_page(pages: int, *, restored: bool, unmapped_first: bool = False) -> float:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    if unmapped_first:
        uc.mem_map(0, 0x10000)
        uc.mem_write(CODE_ADDRESS, b"\x90\xf4")
        uc.emu_start(CODE_ADDRESS, CODE_ADDRESS + 1)
        uc.mem_unmap(0, 0x10000)
    uc.mem_map(0, 64 << 20)
    code = page_stores(pages)
    uc.mem_write(CODE_ADDRESS, code)
    if restored:
        set_context_mode(uc, UC_CTL_CONTEXT_CPU | UC_CTL_CONTEXT_MEMORY)
        uc.context_restore(uc.context_save())
    start = time.perf_counter()
    uc.emu_start(CODE_ADDRESS, CODE_ADDRESS + len(code) - 1)
    return (time.perf_counter() - start) * 1e6 / pages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", default="64,256,1024,2048")
    args = parser.parse_args()
    rows = ((str(n), f"{us_per_page(n, restored=False):.1f}", f"{us_per_page(n, restored=True):.1f}",
             f"{us_per_page(n, restored=True, unmapped_first=True):.1f}")
            for n in (int(text) for text in args.pages.split(",")))
    print_table(["pages stored to once", "no snapshot (us/page)", "after a restore", "after a restore, a region "
                 "unmapped before"], rows)


if __name__ == "__main__":
    main()
