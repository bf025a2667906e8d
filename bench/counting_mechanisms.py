"""What exact instruction counting could cost in deterministic mode: three
Unicorn mechanisms on raw Unicorn (no run loop), on the run-loop benchmark's
worst case, a 4-instruction integer loop (`imul; add; dec; jnz`).

  raw            emu_start, no hook
  insn-hook      C UC_HOOK_CODE on every instruction (what deterministic mode uses today)
  block-size     C UC_HOOK_BLOCK adding the block's byte size (a lower bound on any
                 block hook's cost; bytes are not instructions)
  block-icount   C UC_HOOK_BLOCK asking uc_ctl(UC_CTL_TB_REQUEST_CACHE) for the
                 executing block's instruction count: exact (the translation block
                 itself answers, so a count can never be stale), one hash lookup a block

Each counting case checks its count against the loop's known instruction count.
The hooks are compiled from the C below with the system gcc into a temporary
directory (bench only; nothing here is used by the simulator).

    python bench/counting_mechanisms.py [--runs 5] [--iterations 20000000]
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from unicorn import UC_ARCH_X86, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_MODE_32, Uc
from unicorn.unicorn_const import UC_CTL_IO_READ_WRITE, UC_CTL_TB_REQUEST_CACHE
from unicorn.unicorn_py3.unicorn import uclib
from markdown_table import print_table  # bench/markdown_table.py, beside this script

# uc_ctl's control word: type | (argument count << 26) | (direction << 30) (unicorn.h, UC_CTL)
REQUEST_CACHE_CONTROL = UC_CTL_TB_REQUEST_CACHE | (2 << 26) | (UC_CTL_IO_READ_WRITE << 30)
CODE_ADDRESS = 0x1000
LOOP_BODY_INSTRUCTIONS = 4
SETUP_INSTRUCTIONS = 2             # mov ecx, N; xor eax, eax

HOOKS_C = f"""
#include <stdint.h>
struct uc_tb {{ uint64_t pc; uint16_t icount; uint16_t size; }};   /* unicorn.h */
typedef int (*uc_ctl_fn)(void *, int, ...);
struct counter {{ uc_ctl_fn ctl; uint64_t count; }};

void count_instruction(void *uc, uint64_t address, uint32_t size, void *data)
{{
    ((struct counter *)data)->count++;
}}

void count_block_bytes(void *uc, uint64_t address, uint32_t size, void *data)
{{
    ((struct counter *)data)->count += size;
}}

void count_block_instructions(void *uc, uint64_t address, uint32_t size, void *data)
{{
    struct counter *c = data;
    struct uc_tb tb;
    if (c->ctl(uc, {REQUEST_CACHE_CONTROL}, address, &tb) == 0)
        c->count += tb.icount;
}}
"""


class Counter(ctypes.Structure):
    _fields_ = [("ctl", ctypes.c_void_p), ("count", ctypes.c_uint64)]


def loop_code(iterations: int) -> bytes:
    # mov ecx, N / xor eax, eax / work: imul eax, eax, 3 / add eax, ecx / dec ecx / jnz work / hlt
    return (b"\xb9" + iterations.to_bytes(4, "little") + b"\x31\xc0"
            + b"\x6b\xc0\x03" + b"\x01\xc8" + b"\x49" + b"\x75\xf8" + b"\xf4")


def run_case(lib: ctypes.CDLL | None, hook: str | None, code: bytes) -> tuple[float, int]:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    uc.mem_write(CODE_ADDRESS, code)
    counter = Counter(ctl=ctypes.cast(uclib.uc_ctl, ctypes.c_void_p).value)
    if hook is not None:
        handle = ctypes.c_size_t()
        kind = UC_HOOK_CODE if hook == "count_instruction" else UC_HOOK_BLOCK
        status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), kind,
                                   ctypes.cast(getattr(lib, hook), ctypes.c_void_p), ctypes.byref(counter),
                                   ctypes.c_uint64(1), ctypes.c_uint64(0))
        assert status == 0, status
    start = time.perf_counter()
    uc.emu_start(CODE_ADDRESS, CODE_ADDRESS + len(code) - 1)      # stop before the hlt
    return time.perf_counter() - start, counter.count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch, "hooks.c")
        source.write_text(HOOKS_C)
        library = Path(scratch, "hooks.so")
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
        lib = ctypes.CDLL(str(library))
        code = loop_code(args.iterations)
        expected = SETUP_INSTRUCTIONS + LOOP_BODY_INSTRUCTIONS * args.iterations
        cases = {"raw": None, "insn-hook": "count_instruction", "block-size": "count_block_bytes",
                 "block-icount": "count_block_instructions"}
        times: dict[str, list[float]] = {name: [] for name in cases}
        counts: dict[str, int] = {}
        for _ in range(args.runs):
            for name, hook in cases.items():
                seconds, counts[name] = run_case(lib, hook, code)
                times[name].append(seconds)
    assert counts["insn-hook"] == expected, (counts["insn-hook"], expected)
    assert counts["block-icount"] == expected, (counts["block-icount"], expected)
    raw = statistics.median(times["raw"])
    medians = {name: statistics.median(times[name]) for name in cases}
    print_table([f"case (median of {args.runs}, {expected:,} instructions)", "seconds", "vs raw", "count"],
                ((name, f"{median:.3f}", f"{median / raw:.2f}x", "-" if name == "raw" else f"{counts[name]:,}")
                 for name, median in medians.items()))


if __name__ == "__main__":
    main()
