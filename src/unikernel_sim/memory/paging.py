"""x86 page-table walker (Intel SDM vol. 3A, chapter 4).

Walks the guest's own tables in RAM for the three paging modes a kernel can be
in: 32-bit (CR4.PAE=0, with 4 MiB pages when CR4.PSE), PAE (3 levels) and
4-level long mode (EFER.LMA). Each step records the entry it read, so crash
reports can show which level is missing or forbids an access.
"""
from __future__ import annotations

from typing import Callable

from unikernel_sim.arch import CR0, CR4, EFER, PTE, PTE_ADDRESS_MASK_64
from unikernel_sim.records import Record, record_equal, record_repr

ADDRESS_MASK_64 = PTE_ADDRESS_MASK_64
# Plain ints for the walk: `int & IntFlag` goes through enum machinery (~1 us per
# operation), and interrupt delivery walks the tables several times per IRQ.
_P, _RW, _US, _PS, _NX = int(PTE.P), int(PTE.RW), int(PTE.US), int(PTE.PS), int(PTE.NX)
_PG, _PAE, _PSE, _LMA, _NXE = int(CR0.PG), int(CR4.PAE), int(CR4.PSE), int(EFER.LMA), int(EFER.NXE)


class WalkStep(Record):
    """One paging-structure entry a walk read, with its permission bits."""

    level: str           # "PML4E", "PDPTE", "PDE", "PTE"
    table: int           # physical address of the table
    index: int
    entry: int
    present: bool
    writable: bool
    user: bool
    no_execute: bool
    large: bool          # PS: this entry maps a page


class Walk:
    """One page-table walk: every entry read, and where it ended (SDM vol. 3A chapter 4)."""

    def __init__(self, virtual: int, mode: str) -> None:
        self.virtual = virtual
        self.mode = mode                              # "none", "32-bit", "PAE", "4-level"
        self.steps: list[WalkStep] = []
        self.physical: int | None = None              # None: not mapped
        self.page_size = 0
        self.fault_level: str | None = None           # the level whose entry is not present
        self.writable = True
        self.user = True
        self.executable = True
        self.error: str | None = None                 # e.g. "table outside guest RAM"

    def __repr__(self) -> str:
        return record_repr(self)

    def __eq__(self, other: object) -> bool:
        return record_equal(self, other)

    def moved_to(self, virtual: int, physical: int | None) -> "Walk":
        """This walk's answer for another address in the same page (a batch reuses one
        walk per page); the steps are shared, not copied."""
        moved = Walk.__new__(Walk)
        moved.__dict__.update(self.__dict__)
        moved.virtual, moved.physical = virtual, physical
        return moved


def paging_mode(cr0: int, cr4: int, efer: int) -> str:
    if not cr0 & _PG:
        return "none"
    if efer & _LMA:
        return "4-level"
    if cr4 & _PAE:
        return "PAE"
    return "32-bit"


def walk(
    virtual: int,
    cr0: int,
    cr3: int,
    cr4: int,
    efer: int,
    read_u64: Callable[[int], int | None],
) -> Walk:
    """Translate virtual through the tables at cr3; read_u64 returns None outside RAM."""
    mode = paging_mode(cr0, cr4, efer)
    result = Walk(virtual=virtual, mode=mode)
    if mode == "none":
        result.physical = virtual & 0xFFFFFFFF
        result.page_size = 4096
        return result
    if mode == "4-level":
        levels = [("PML4E", 39), ("PDPTE", 30), ("PDE", 21), ("PTE", 12)]
        table = cr3 & ADDRESS_MASK_64
        entry_size, index_bits = 8, 9
    elif mode == "PAE":
        levels = [("PDPTE", 30), ("PDE", 21), ("PTE", 12)]
        table = cr3 & 0xFFFFFFE0
        entry_size, index_bits = 8, 9
    else:
        levels = [("PDE", 22), ("PTE", 12)]
        table = cr3 & 0xFFFFF000
        entry_size, index_bits = 4, 10

    nx_enabled = bool(efer & _NXE)
    for number, (name, shift) in enumerate(levels):
        mask = (1 << (2 if (mode == "PAE" and name == "PDPTE") else index_bits)) - 1
        index = (virtual >> shift) & mask
        raw = read_u64(table + index * entry_size)
        if raw is None:
            result.error = f"{name} table at {table:#x} lies outside guest RAM"
            result.fault_level = name
            return result
        entry = raw & 0xFFFFFFFF if entry_size == 4 else raw
        present = bool(entry & _P)
        is_pdpte_pae = mode == "PAE" and name == "PDPTE"
        large = (
            present
            and name in ("PDPTE", "PDE")
            and not is_pdpte_pae
            and bool(entry & _PS)
            and (mode != "32-bit" or bool(cr4 & _PSE))
        )
        step = WalkStep(
            level=name,
            table=table,
            index=index,
            entry=entry,
            present=present,
            writable=bool(entry & _RW) or is_pdpte_pae,
            user=bool(entry & _US) or is_pdpte_pae,
            no_execute=nx_enabled and bool(entry & _NX),
            large=large,
        )
        result.steps.append(step)
        if not present:
            result.fault_level = name
            return result
        result.writable &= step.writable
        result.user &= step.user
        result.executable &= not step.no_execute
        if large or number == len(levels) - 1:
            page_size = 1 << shift
            if entry_size == 4:
                base = entry & 0xFFC00000 if large else entry & 0xFFFFF000
                if large:  # PSE-36: bits 13.. of the PDE hold physical bits 32..
                    base |= ((entry >> 13) & 0xFF) << 32
            else:
                base = entry & ADDRESS_MASK_64 & ~(page_size - 1)
            result.physical = base | (virtual & (page_size - 1))
            result.page_size = page_size
            return result
        table = (entry & ADDRESS_MASK_64) if entry_size == 8 else (entry & 0xFFFFF000)
    return result
