"""Snapshot memory two ways on a bare Unicorn engine: Unicorn's copy-on-write regions
(what `Machine.snapshot` uses) against our own write-protected pages and a SIGSEGV
handler (bench/native/dirty_pages.c, a prototype the simulator does not use).

Rows: restore + a short call that writes three pages (a stack push, a `lock inc`, a
`rep stosb`), medians of --batches x --calls; then one byte stored to each of N fresh
pages after a snapshot (microseconds per page stored, and per page restored). The
prototype's memory is checked against the snapshot after the runs.

    python bench/dirty_page_snapshots.py [--batches 5] [--calls 2000]
"""
from __future__ import annotations

import argparse
import ctypes
import subprocess
import tempfile
import time
from pathlib import Path

from keystone import KS_ARCH_X86, KS_MODE_64, Ks
from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn.unicorn_const import UC_CTL_CONTEXT_CPU, UC_CTL_CONTEXT_MEMORY

from unikernel_sim.cpu.unicorn_compat import set_context_mode
from batches import per_call_us  # bench/batches.py, beside this script
from markdown_table import print_table  # bench/markdown_table.py, beside this script
from snapshot_stores import page_stores  # bench/snapshot_stores.py: the same store loop

RAM = 64 << 20
PAGE = 4096
CAPACITY = 8192                       # pages the prototype can save
CALL_ADDRESS, STORES_ADDRESS = 0x1000, 0x2000
PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS_NORESERVE = 3, 0x22 | 0x4000
SHORT_CALL = ("mov rsp, 0x80000; push rax; mov qword ptr [0x200000], rax; lock inc qword ptr [0x200008]; "
              "mov rcx, 16; mov rdi, 0x300000; rep stosb; pop rax; hlt")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]


def assemble(text: str, address: int) -> bytes:
    return bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(text, address)[0])


def build_prototype(directory: Path) -> ctypes.CDLL:
    library = directory / "dirty_pages.so"
    source = Path(__file__).resolve().parent / "native" / "dirty_pages.c"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    lib = ctypes.CDLL(str(library))
    lib.dirty_watch.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]
    lib.dirty_restore.restype = ctypes.c_uint64
    return lib


def anonymous(size: int) -> int:
    return _libc.mmap(None, size, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS_NORESERVE, -1, 0)


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

    with tempfile.TemporaryDirectory() as directory:
        lib = build_prototype(Path(directory))
        base = anonymous(RAM)
        pages = (ctypes.c_uint64 * CAPACITY)()
        store = anonymous(CAPACITY * PAGE)
        ours = Uc(UC_ARCH_X86, UC_MODE_64)                      # write-protected pages
        ours.mem_map_ptr(0, RAM, UC_PROT_ALL, base)
        ours.mem_write(CALL_ADDRESS, call)
        run(ours, call, CALL_ADDRESS)
        context = ours.context_save()
        at_snapshot = bytes(ours.mem_read(0x200000, 16))
        assert lib.dirty_watch(base, RAM, pages, store, CAPACITY) == 0 and lib.dirty_snapshot() == 0

        def our_restore_and_call() -> None:
            lib.dirty_restore()
            ours.context_restore(context)
            run(ours, call, CALL_ADDRESS)

        rows = [("restore + a call writing 3 pages (us)", f"{per_call_us(unicorn_restore_and_call, args.calls, args.batches):.1f}",
                 f"{per_call_us(our_restore_and_call, args.calls, args.batches):.1f}")]
        lib.dirty_restore()
        assert bytes(ours.mem_read(0x200000, 16)) == at_snapshot, "the prototype lost a store"
        for count in (64, 1024, 2048):
            stores = page_stores(count, STORES_ADDRESS)
            unicorn.context_restore(snapshot)
            unicorn.mem_write(STORES_ADDRESS, stores)
            start = time.perf_counter()
            run(unicorn, stores, STORES_ADDRESS)
            unicorn_us = (time.perf_counter() - start) * 1e6 / count
            lib.dirty_restore()
            ours.mem_write(STORES_ADDRESS, stores)
            start = time.perf_counter()
            run(ours, stores, STORES_ADDRESS)
            ours_us = (time.perf_counter() - start) * 1e6 / count
            start = time.perf_counter()
            restored = lib.dirty_restore()
            restore_us = (time.perf_counter() - start) * 1e6 / max(restored, 1)
            rows.append((f"{count} pages stored to once (us a page)", f"{unicorn_us:.1f}",
                         f"{ours_us:.1f} (restore {restore_us:.1f} a page)"))
    print_table(["measurement", "Unicorn's copy-on-write", "write-protected pages (prototype)"], rows)


if __name__ == "__main__":
    main()
