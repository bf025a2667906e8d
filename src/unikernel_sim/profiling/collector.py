"""Attach the C profiler to a machine and read its tables back.

The profiler counts instructions, never time: it turns on the clock's per-block
instruction count (cpu/_vclock.c), so a profile is exact in deterministic mode and in
fast mode alike (fast mode's interrupts land elsewhere, so its profile of the same
kernel may differ by the handlers' share). Its block hook is added after the clock's,
so it sees each block's count; stops inside a block are handed back by the clock
(VirtualClock.on_partial) and taken off again.
"""
from __future__ import annotations

import collections
import ctypes
from typing import TYPE_CHECKING

from unicorn import UC_HOOK_BLOCK
from unicorn.x86_const import UC_X86_REG_RSP

from unikernel_sim.cpu import _vclock
from unikernel_sim.cpu.unicorn_compat import add_native_hook, delete_native_hook, native_function_address
from unikernel_sim.profiling.profile import Block, Node, Profile

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

_lib = ctypes.CDLL(_vclock.__file__)
_lib.profile_new.restype = ctypes.c_void_p
_lib.profile_new.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                             ctypes.POINTER(ctypes.c_uint64), ctypes.c_uint64,
                             ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64),
                             ctypes.POINTER(ctypes.c_int32), ctypes.c_uint64]
_lib.profile_free.argtypes = [ctypes.c_void_p]
_lib.profile_uncount.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
for _name in ("profile_node_count", "profile_failed", "profile_too_deep", "profile_block_count"):
    getattr(_lib, _name).restype = ctypes.c_uint64
    getattr(_lib, _name).argtypes = [ctypes.c_void_p]
_lib.profile_nodes.argtypes = [ctypes.c_void_p] + [ctypes.c_void_p] * 4
_lib.profile_blocks.argtypes = [ctypes.c_void_p] + [ctypes.c_void_p] * 4
_HOOK = ctypes.cast(_lib.profile_block, ctypes.c_void_p)
FUNCTION_KINDS = ("STT_FUNC", "STT_NOTYPE")      # C functions, and assembly entry labels


class Profiler:
    """Counts from construction until result(); close() (or the machine's end) frees it."""

    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        entries: dict[int, str] = {}
        for symbol in machine.symbols.symbols:
            if symbol.kind in FUNCTION_KINDS and symbol.address not in entries:
                entries[symbol.address] = symbol.name
        self.functions = list(entries.values())
        index = {address: n for n, address in enumerate(entries)}
        sized = sorted((s.address, s.address + s.size, index[s.address]) for s in machine.symbols.symbols
                       if s.kind in FUNCTION_KINDS and s.size and s.address in index)
        length = max(1, len(sized))
        self._ranges = ((ctypes.c_uint64 * length)(*(r[0] for r in sized)),
                        (ctypes.c_uint64 * length)(*(r[1] for r in sized)),
                        (ctypes.c_int32 * length)(*(r[2] for r in sized)))     # alive while C reads them
        addresses = (ctypes.c_uint64 * max(1, len(entries)))(*entries)
        clock = machine.clock
        clock.start_counting()
        self.start_instructions = clock.instructions
        self._profile = _lib.profile_new(ctypes.addressof(clock.state), native_function_address("uc_reg_read"),
                                         UC_X86_REG_RSP, addresses, len(entries), *self._ranges, len(sized))
        if not self._profile:
            raise MemoryError("the profiler could not allocate its tables")
        self._hook = add_native_hook(machine.uc, UC_HOOK_BLOCK, _HOOK, ctypes.c_void_p(self._profile), 1, 0)
        machine.uc.ctl_flush_tb()                # code translated before would not call the hook
        self.partial_runs: collections.Counter = collections.Counter()   # (block, instructions run) -> times
        clock.on_partial = self._on_partial

    def _on_partial(self, block: int, counted: int, ran: int) -> None:
        _lib.profile_uncount(self._profile, block, counted - ran)
        self.partial_runs[(block, ran)] += 1

    def result(self) -> Profile:
        """The profile so far (the machine stands between runs)."""
        p = self._profile
        count = _lib.profile_node_count(p)
        parents, functions = (ctypes.c_uint32 * count)(), (ctypes.c_int32 * count)()
        selfs, calls = (ctypes.c_uint64 * count)(), (ctypes.c_uint64 * count)()
        _lib.profile_nodes(p, parents, functions, selfs, calls)
        nodes = [Node(parents[i], functions[i], selfs[i], calls[i]) for i in range(count)]
        used = _lib.profile_block_count(p)
        addresses, runs = (ctypes.c_uint64 * used)(), (ctypes.c_uint64 * used)()
        counts, sizes = (ctypes.c_uint64 * used)(), (ctypes.c_uint64 * used)()
        _lib.profile_blocks(p, addresses, runs, counts, sizes)
        blocks = [Block(addresses[i], sizes[i], counts[i], runs[i]) for i in range(used)]
        problems = []
        if _lib.profile_failed(p):
            problems.append("the profiler ran out of memory: counts after that are missing")
        if _lib.profile_too_deep(p):
            problems.append(f"{_lib.profile_too_deep(p)} calls deeper than 4096 frames were not recorded")
        return Profile(functions=self.functions, nodes=nodes, blocks=blocks,
                       partial_runs=dict(self.partial_runs),
                       instructions=self.machine.clock.instructions - self.start_instructions,
                       deterministic=self.machine.clock.deterministic, problems=problems)

    def close(self) -> None:
        if self._profile:
            delete_native_hook(self.machine.uc, self._hook)
            self.machine.clock.on_partial = None
            _lib.profile_free(self._profile)
            self._profile = None

    # --- source lines --------------------------------------------------------------------
    def per_line(self, profile: Profile) -> dict[str, int]:
        """Instructions per source line (DWARF), or per address where there is none."""
        from unikernel_sim.diagnostics.debug_info import debug_info_of

        info = debug_info_of(self.machine)

        def line_of(address: int) -> str | None:
            found = info.source_line(address) if info is not None else None
            if found is not None:
                return str(found)
            symbol = self.machine.symbols.lookup(address)
            return None if symbol is None else f"{symbol[0].name}+{symbol[1]:#x}"

        return profile.per_line(self._decode_block, line_of)

    def _decode_block(self, address: int, size: int, count: int) -> list[int]:
        """The addresses of a block's instructions. 32- and 64-bit code are told apart by
        which decoding covers exactly the block's bytes with its instruction count."""
        from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs

        code = self.machine.memory.read(address, size) or b""
        for mode in (CS_MODE_64, CS_MODE_32):
            decoded = [(at, length) for at, length, _, _ in Cs(CS_ARCH_X86, mode).disasm_lite(code, address)]
            decoded = decoded[:count]
            if len(decoded) == count and sum(length for _, length in decoded) == size:
                return [at for at, _ in decoded]
        return [at for at, _ in decoded]
