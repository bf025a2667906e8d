"""Snapshot memory two ways on a bare Unicorn engine: Unicorn's copy-on-write regions
(what `Machine.snapshot` used before) against write-protected pages and a SIGSEGV
handler (memory/ram_snapshots.py, what it uses now).

Rows: restore + a short call that writes three pages (a stack push, a `lock inc`, a
`rep stosb`), medians of --batches x --calls; then one byte stored to each of N fresh
pages after a snapshot (microseconds per page stored, and per page restored). The
write-protected memory is checked against the snapshot after the runs.

    python bench/dirty_page_snapshots.py [--batches 5] [--calls 2000]
"""
from __future__ import annotations

import argparse
import time

from keystone import KS_ARCH_X86, KS_MODE_64, Ks
from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn.unicorn_const import UC_CTL_CONTEXT_CPU, UC_CTL_CONTEXT_MEMORY

from unikernel_sim.cpu.unicorn_compat import set_context_mode
from unikernel_sim.memory.ram_snapshots import RamSnapshots
from batches import per_call_us  # bench/batches.py, beside this script
from markdown_table import print_table  # bench/markdown_table.py, beside this script
from snapshot_stores import page_stores  # bench/snapshot_stores.py: the same store loop

RAM = 64 << 20
CALL_ADDRESS, STORES_ADDRESS = 0x1000, 0x2000
SHORT_CALL = ("mov rsp, 0x80000; push rax; mov qword ptr [0x200000], rax; lock inc qword ptr [0x200008]; "
              "mov rcx, 16; mov rdi, 0x300000; rep stosb; pop rax; hlt")


def assemble(text: str, address: int) -> bytes:
    return bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(text, address)[0])


def run(uc: Uc, code: bytes, address: int) -> None:
    uc.emu_start(address, address + len(code) - 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    call = assemble(SHORT_CALL, CALL_ADDRESS)

    unicorn = Uc(UC_ARCH_X86, UC_MODE_64)                      # Unicorn's copy-on-write snapshots
    unicorn.mem_map(0, RAM)
    unicorn.mem_write(CALL_ADDRESS, call)
    run(unicorn, call, CALL_ADDRESS)
    set_context_mode(unicorn, UC_CTL_CONTEXT_CPU | UC_CTL_CONTEXT_MEMORY)
    snapshot = unicorn.context_save()

    def unicorn_restore_and_call() -> None:
        unicorn.context_restore(snapshot)
        run(unicorn, call, CALL_ADDRESS)

    ours = Uc(UC_ARCH_X86, UC_MODE_64)                          # write-protected pages
    snapshots = RamSnapshots(ours)
    ours.mem_map_ptr(0, RAM, UC_PROT_ALL, snapshots.allocate(RAM))
    ours.mem_write(CALL_ADDRESS, call)
    run(ours, call, CALL_ADDRESS)
    context = ours.context_save()
    at_snapshot = bytes(ours.mem_read(0x200000, 16))
    level = snapshots.take()

    def our_restore_and_call() -> None:
        snapshots.restore(level)
        ours.context_restore(context)
        run(ours, call, CALL_ADDRESS)

    rows = [("restore + a call writing 3 pages (us)", f"{per_call_us(unicorn_restore_and_call, args.calls, args.batches):.1f}",
             f"{per_call_us(our_restore_and_call, args.calls, args.batches):.1f}")]
    snapshots.restore(level)
    assert bytes(ours.mem_read(0x200000, 16)) == at_snapshot, "a store was lost"
    for count in (64, 1024, 2048):
        stores = page_stores(count, STORES_ADDRESS)
        unicorn.context_restore(snapshot)
        unicorn.mem_write(STORES_ADDRESS, stores)
        start = time.perf_counter()
        run(unicorn, stores, STORES_ADDRESS)
        unicorn_us = (time.perf_counter() - start) * 1e6 / count
        snapshots.restore(level)
        ours.mem_write(STORES_ADDRESS, stores)
        start = time.perf_counter()
        run(ours, stores, STORES_ADDRESS)
        ours_us = (time.perf_counter() - start) * 1e6 / count
        restored_before = snapshots.stats().pages_restored
        start = time.perf_counter()
        snapshots.restore(level)
        elapsed = time.perf_counter() - start
        restore_us = elapsed * 1e6 / max(snapshots.stats().pages_restored - restored_before, 1)
        rows.append((f"{count} pages stored to once (us a page)", f"{unicorn_us:.1f}",
                     f"{ours_us:.1f} (restore {restore_us:.1f} a page)"))
    print_table(["measurement", "Unicorn's copy-on-write", "write-protected pages (RamSnapshots)"], rows)


if __name__ == "__main__":
    main()
