"""Heap exhaustion crash: a fault inside the allocator while its bump pointer
has passed the heap's end (the reference firmware's heap symbols)."""
from __future__ import annotations

from unikernel_sim.diagnostics.checkers import Hint

ALLOCATOR_FUNCTIONS = ("malloc", "calloc", "realloc", "free")


def check(evidence) -> Hint | None:
    machine = evidence.machine
    if evidence.fault_rip is None or evidence.function_at(evidence.fault_rip) not in ALLOCATOR_FUNCTIONS:
        return None
    next_address = evidence.symbol_u64("heap_next")
    end = evidence.symbol_u64("heap_end")
    if next_address is None or end is None or next_address <= end:
        return None
    where = evidence.where(evidence.fault_rip)
    return Hint("heap-exhaustion",
                f"heap exhaustion: {where} faulted with the bump pointer at {next_address:#x}, "
                f"{next_address - end} bytes past the heap end {end:#x} (no bounds check?)", where)
