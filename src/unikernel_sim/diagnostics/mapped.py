"""Which virtual ranges the guest's page tables map (present leaf entries),
coalesced, for naming "what the tables actually map" in reports."""
from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import x86_const as x86

from unikernel_sim.arch import MSR, PTE, PTE_ADDRESS_MASK_64
from unikernel_sim.memory.paging import paging_mode

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

MAX_ENTRIES = 1 << 20


def mapped_ranges(machine: "Machine") -> list[tuple[int, int]] | None:
    """[(start, end)] of mapped virtual addresses in 4-level mode; None in other modes."""
    uc = machine.uc
    mode = paging_mode(uc.reg_read(x86.UC_X86_REG_CR0), uc.reg_read(x86.UC_X86_REG_CR4), uc.msr_read(MSR.EFER))
    if mode != "4-level":
        return None
    ranges: list[list[int]] = []
    budget = [MAX_ENTRIES]

    def table(address: int) -> list[int]:
        if not machine.ram.contains(address, 4096):
            return []
        data = machine.ram.read(address, 4096)
        return [int.from_bytes(data[i:i + 8], "little") for i in range(0, 4096, 8)]

    def add(start: int, size: int) -> None:
        if ranges and ranges[-1][1] == start:
            ranges[-1][1] = start + size
        else:
            ranges.append([start, start + size])

    def walk(address: int, level: int, base: int) -> None:
        shift = 12 + 9 * level
        for index, entry in enumerate(table(address)):
            budget[0] -= 1
            if budget[0] < 0 or not entry & PTE.P:
                continue
            virtual = base | (index << shift)
            if level == 3 and index >= 256:
                virtual |= 0xFFFF << 48                      # sign-extend the canonical upper half
            if level == 0 or (level in (1, 2) and entry & PTE.PS):
                add(virtual, 1 << shift)
            else:
                walk(entry & PTE_ADDRESS_MASK_64, level - 1, virtual)

    walk(uc.reg_read(x86.UC_X86_REG_CR3) & PTE_ADDRESS_MASK_64, 3, 0)
    return [(start, end) for start, end in ranges]


def format_ranges(ranges: list[tuple[int, int]], limit: int = 4) -> str:
    parts = [f"{start:#x}-{end - 1:#x} ({(end - start) >> 20} MiB)" if end - start >= 1 << 20
             else f"{start:#x}-{end - 1:#x}" for start, end in ranges[:limit]]
    more = f" and {len(ranges) - limit} more ranges" if len(ranges) > limit else ""
    return ", ".join(parts) + more if parts else "nothing"
