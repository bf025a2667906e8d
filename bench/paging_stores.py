"""Where a page-table-heavy kernel's time goes: Unicorn itself, or our hooks (issue 13, item 3).

Two measurements, each in this one process, medians of --runs (interleaved):

1. A store loop on a bare Unicorn 2 engine (64-bit, no hooks): per iteration, no store,
   a store to a page that holds no code, a store to the page that holds the loop, a
   store into a second mapping made without execute permission (all without paging),
   and a store to a page the guest's own page tables mark no-execute (XD).
2. A 32-bit kernel with 4 KiB paging (its own page directory and 16 page tables over 64
   MiB, built at run time): every round stores to and loads from 8,192 pages, then
   remaps 256 of them (PTE rewrite + invlpg) and touches those. Run five ways: by
   Machine.run() in fast mode, the same with the soft TLB's reviews turned off (the
   tree before them: cpu/_vclock.c), in deterministic mode, by emu_start on the same
   engine (our hooks installed, no run loop), and on a bare engine given the same RAM
   and CPU state (no hooks at all).

    python bench/paging_stores.py [--runs 3] [--rounds 200] [--iterations 20000000]
"""
from __future__ import annotations

import argparse
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from keystone import KS_ARCH_X86, KS_MODE_64, Ks
from unicorn import UC_ARCH_X86, UC_MODE_32, UC_MODE_64, UC_PROT_READ, UC_PROT_WRITE, Uc
from unicorn.x86_const import UC_X86_REG_CR0, UC_X86_REG_CR3, UC_X86_REG_CR4

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interrupts.harness import IdtGuest, build_protected  # noqa: E402

from unikernel_sim.cpu.unicorn_compat import RUN_UNTIL_NEVER  # noqa: E402
from unikernel_sim.machine import Machine  # noqa: E402
from unikernel_sim.stops import StopReason  # noqa: E402
from markdown_table import print_table  # bench/markdown_table.py, beside this script

MIB = 1 << 20
CODE, DATA, SECOND_MAPPING = 0x1000, 0x8000, 0x100000
PAGE_DIRECTORY, PAGE_TABLES = 0x400000, 0x401000
TABLES = 16                                       # 16 x 4 MiB = 64 MiB in 4 KiB pages
TOUCH_START, TOUCH_END = 0x800000, 0x2800000      # 8,192 pages
REMAP_FIRST_PAGE, REMAP_PAGES = 0x2800, 256
HUGE_PAGE = 2 * MIB
NO_EXECUTE_PAGE = HUGE_PAGE                       # the second 2 MiB page: XD
PML4, PDPT, PD = 0x10000, 0x11000, 0x12000
CR4_PAE, CR0_PG_PE = 1 << 5, 0x80000001
MSR_EFER, EFER_LME, EFER_LMA, EFER_NXE = 0xC0000080, 1 << 8, 1 << 10, 1 << 11


# --- 1. the bare store loop ------------------------------------------------------------------
def store_loop(target: int | None, iterations: int) -> bytes:
    store = f"mov [{target:#x}], rcx\n" if target is not None else ""
    return bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(f"mov rcx, {iterations}\nloop:\n{store}dec rcx\njnz loop\nhlt",
                                                 CODE)[0])


def enable_paging(uc: Uc, no_execute: int) -> None:
    """Long-mode paging over the first 4 MiB in two 2 MiB pages, the one at no_execute
    with XD set (SDM vol. 3A, 4.5; EFER.NXE)."""
    directory = [0x83, 0x200083]
    directory[no_execute // HUGE_PAGE] |= 1 << 63
    uc.mem_write(PML4, struct.pack("<Q", PDPT | 3))
    uc.mem_write(PDPT, struct.pack("<Q", PD | 3))
    uc.mem_write(PD, struct.pack("<2Q", *directory))
    uc.reg_write(UC_X86_REG_CR3, PML4)
    uc.reg_write(UC_X86_REG_CR4, uc.reg_read(UC_X86_REG_CR4) | CR4_PAE)
    uc.msr_write(MSR_EFER, uc.msr_read(MSR_EFER) | EFER_LME | EFER_LMA | EFER_NXE)
    uc.reg_write(UC_X86_REG_CR0, uc.reg_read(UC_X86_REG_CR0) | CR0_PG_PE)


def bare_loop_seconds(target: int | None, iterations: int, separate_data_mapping: bool,
                      paged: bool = False) -> float:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 4 * MIB if paged else 0x10000)
    if separate_data_mapping:
        uc.mem_map(SECOND_MAPPING, 0x10000, UC_PROT_READ | UC_PROT_WRITE)
    if paged:
        enable_paging(uc, no_execute=target)
    uc.mem_write(CODE, store_loop(target, iterations))
    start = time.perf_counter()
    uc.emu_start(CODE, RUN_UNTIL_NEVER)
    return time.perf_counter() - start


STORE_CASES = {
    "no store": (None, False),
    "store to a data page (same mapping as the code)": (DATA, False),
    "store to the page the loop is in": (CODE + 0x800, False),
    "store to a mapping without execute permission": (SECOND_MAPPING, True),
    "store to a page the guest's page tables mark no-execute": (NO_EXECUTE_PAGE, False, True),
}


# --- 2. the 4 KiB-paging kernel ---------------------------------------------------------------
def paging_kernel(rounds: int) -> str:
    return f"""
        mov edi, {PAGE_TABLES:#x}
        xor eax, eax
    fill_tables:
        mov edx, eax
        shl edx, 12
        or edx, 3
        mov [edi + eax * 4], edx
        inc eax
        cmp eax, {TABLES * 1024}
        jb fill_tables
        mov edi, {PAGE_DIRECTORY:#x}
        xor eax, eax
    fill_directory:
        mov edx, eax
        shl edx, 12
        add edx, {PAGE_TABLES | 3:#x}
        mov [edi + eax * 4], edx
        inc eax
        cmp eax, {TABLES}
        jb fill_directory
    fill_large:
        mov edx, eax
        shl edx, 22
        or edx, 0x83
        mov [edi + eax * 4], edx
        inc eax
        cmp eax, 1024
        jb fill_large
        mov eax, {PAGE_DIRECTORY:#x}
        mov cr3, eax
        mov esi, {rounds}
    round:
        mov edi, {TOUCH_START:#x}
    touch:
        mov [edi], esi
        add ebx, [edi + 64]
        add edi, 4096
        cmp edi, {TOUCH_END:#x}
        jb touch
        xor ecx, ecx
    remap:
        lea eax, [ecx + esi]
        and eax, {REMAP_PAGES - 1}
        add eax, {REMAP_FIRST_PAGE:#x}
        shl eax, 12
        or eax, 3
        mov [{PAGE_TABLES:#x} + {REMAP_FIRST_PAGE * 4:#x} + ecx * 4], eax
        mov edx, ecx
        add edx, {REMAP_FIRST_PAGE:#x}
        shl edx, 12
        invlpg [edx]
        mov [edx], esi
        inc ecx
        cmp ecx, {REMAP_PAGES}
        jb remap
        dec esi
        jnz round
        mov al, 0
        out 0xf4, al
    """


def paging_image(rounds: int) -> str:
    image, _ = build_protected(IdtGuest(fault="nop", flags=0x2, after=paging_kernel(rounds)))
    path = Path(tempfile.mkdtemp()) / "paging.bin"
    path.write_bytes(image)
    return str(path)


def paging_seconds(path: str, how: str) -> float:
    machine = Machine(128, deterministic=how == "Machine.run, deterministic")
    machine.load(path)
    if how == "Machine.run, TLB reviews off":
        machine.clock.state.ctl_tlb_flush = 0             # cpu/_vclock.h: 0, no reviews
    if how.startswith("Machine.run"):
        start = time.perf_counter()
        stop = machine.run()
        elapsed = time.perf_counter() - start
        assert stop.reason is StopReason.GUEST_EXIT, stop.summary
        return elapsed
    if how == "emu_start, our hooks installed (no reviews: a run arms them)":
        start = time.perf_counter()
        machine.uc.emu_start(machine.rip, RUN_UNTIL_NEVER)
        elapsed = time.perf_counter() - start
        assert machine.loop.pending_stop is not None, "stopped before the debug exit"
        return elapsed
    bare = Uc(UC_ARCH_X86, UC_MODE_32)                     # the same RAM and CPU state, no hooks
    bare.mem_map(0, machine.ram.size)
    bare.mem_write(0, bytes(machine.uc.mem_read(0, 8 * MIB)))
    bare.context_restore(machine.uc.context_save())
    start = time.perf_counter()
    bare.emu_start(machine.rip, RUN_UNTIL_NEVER)           # ends at the debug-exit OUT: no hook for it
    elapsed = time.perf_counter() - start
    return elapsed


PAGING_CASES = ("Machine.run (fast mode)", "Machine.run, TLB reviews off", "Machine.run, deterministic",
                "emu_start, our hooks installed (no reviews: a run arms them)", "bare engine, no hooks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    loops = {name: [] for name in STORE_CASES}
    for _ in range(args.runs):
        for name, case in STORE_CASES.items():
            loops[name].append(bare_loop_seconds(case[0], args.iterations, *case[1:]))
    print_table([f"bare Unicorn, 64-bit loop (median of {args.runs})", "ns per iteration"],
                ((name, f"{statistics.median(samples) / args.iterations * 1e9:.2f}") for name, samples in loops.items()))
    path = paging_image(args.rounds)
    runs = {name: [] for name in PAGING_CASES}
    for _ in range(args.runs):
        for name in PAGING_CASES:
            runs[name].append(paging_seconds(path, name))
    bare = statistics.median(runs["bare engine, no hooks"])
    accesses = args.rounds * ((TOUCH_END - TOUCH_START) // 4096 * 2 + REMAP_PAGES * 2)
    medians = {name: statistics.median(samples) for name, samples in runs.items()}
    print()
    print_table([f"4 KiB-paging kernel, {args.rounds} rounds, {accesses / 1e6:.1f} M page-crossing accesses "
                 f"(median of {args.runs})", "seconds", "vs bare"],
                ((name, f"{median:.3f}", f"{median / bare:.3f}x") for name, median in medians.items()))


if __name__ == "__main__":
    main()
