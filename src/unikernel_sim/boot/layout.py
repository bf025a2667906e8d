"""Where things go in guest physical memory, and the memory map the guest sees.

The map is what SeaBIOS reports through GRUB on QEMU's PC (recorded in
tests/data/grub_reference): conventional memory up to the EBDA at 639 KiB, the
BIOS area reserved, the legacy VGA window absent, extended memory from 1 MiB to
128 KiB below the end of RAM, that last block reserved (SeaBIOS keeps its ACPI
tables there), the BIOS ROM at the top of the 4 GiB space, and the window QEMU
reserves at 1012 GiB. Everything the loader places
(segments, modules, boot information, the hand-off stub) is claimed here, so
overlaps and out-of-RAM placements are caught with the names of both parties.
"""
from __future__ import annotations

from unikernel_sim.errors import ImageError
from unikernel_sim.records import Record

PAGE = 4096
EBDA_START = 0x9FC00
CONVENTIONAL_END = 0xA0000
BIOS_ROM_START = 0xF0000
EXTENDED_START = 0x100000
TOP_RESERVED_SIZE = 0x20000          # SeaBIOS's block at the end of RAM (ACPI tables, ...)
BIOS_ROM_HIGH = 0xFFFC0000           # the BIOS ROM mapped below 4 GiB
FOUR_GIB = 1 << 32
HYPERTRANSPORT_BASE = 0xFD_0000_0000  # QEMU (7.1+) reserves 1012-1024 GiB: the AMD HyperTransport window
HYPERTRANSPORT_SIZE = 0x3_0000_0000

MEMORY_AVAILABLE = 1
MEMORY_RESERVED = 2


class MemoryRegion(Record):
    """One memory-map entry as the boot information reports it (Multiboot2 tag 6 types)."""

    base: int
    length: int
    type: int

    @property
    def end(self) -> int:
        return self.base + self.length


def top_reserved_base(ram_size: int) -> int:
    """Where SeaBIOS's reserved block at the end of RAM starts."""
    return ram_size - TOP_RESERVED_SIZE


def memory_map(ram_size: int) -> list[MemoryRegion]:
    """The E820-style map of a PC with ram_size bytes (at least 2 MiB)."""
    top = top_reserved_base(ram_size)
    return [
        MemoryRegion(0, EBDA_START, MEMORY_AVAILABLE),
        MemoryRegion(EBDA_START, CONVENTIONAL_END - EBDA_START, MEMORY_RESERVED),
        MemoryRegion(BIOS_ROM_START, EXTENDED_START - BIOS_ROM_START, MEMORY_RESERVED),
        MemoryRegion(EXTENDED_START, top - EXTENDED_START, MEMORY_AVAILABLE),
        MemoryRegion(top, TOP_RESERVED_SIZE, MEMORY_RESERVED),
        MemoryRegion(BIOS_ROM_HIGH, FOUR_GIB - BIOS_ROM_HIGH, MEMORY_RESERVED),
        MemoryRegion(HYPERTRANSPORT_BASE, HYPERTRANSPORT_SIZE, MEMORY_RESERVED),
    ]


def basic_memory_kib(memory: list[MemoryRegion]) -> tuple[int, int]:
    """(mem_lower, mem_upper) in KiB as Multiboot 1 and 2 report them: conventional
    memory below the EBDA, and the available region from 1 MiB up to its first hole
    (as the BIOS's INT 15h E801 answer counts it)."""
    upper = next((r for r in memory if r.base == EXTENDED_START and r.type == MEMORY_AVAILABLE), None)
    upper_end = upper.end if upper is not None else EXTENDED_START
    return EBDA_START // 1024, (upper_end - EXTENDED_START) // 1024


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


class Placement(Record):
    """A named range of guest physical memory the loader has used."""

    start: int
    end: int
    name: str


class PhysicalLayout:
    def __init__(self, ram_size: int, where: str) -> None:
        self.ram_size = ram_size
        self.where = where
        self.available = [r for r in memory_map(ram_size) if r.type == MEMORY_AVAILABLE]
        self.placements: list[Placement] = []
        self.image_end = EXTENDED_START      # set by the loader once the kernel is claimed

    def claim(self, start: int, size: int, name: str, *, anywhere_below_1mib: bool = False) -> Placement:
        """Reserve [start, start+size) for name; ImageError if it does not fit.
        anywhere_below_1mib: the part below 1 MiB may lie anywhere there, reserved or
        not (GRUB 2.06 loads kernel segments at 0x500, 0x9FC00, 0xA0000, 0xFF000...)."""
        end = start + max(size, 1)
        if end > self.ram_size:
            raise ImageError(
                f"{name} at {start:#x}..{end:#x} lies outside guest RAM "
                f"({self.ram_size // (1 << 20)} MiB ends at {self.ram_size:#x})",
                where=self.where,
                hint=f"give the machine more memory (--memory {max(2, -(-end // (1 << 20)) + 1)}) "
                "or link the kernel lower",
            )
        checked_start = max(start, EXTENDED_START) if anywhere_below_1mib else start
        if checked_start < end and not any(r.base <= checked_start and end <= r.end for r in self.available):
            raise ImageError(
                f"{name} at {start:#x}..{end:#x} is not in available memory "
                f"(the BIOS area {EBDA_START:#x}..{EXTENDED_START:#x} is reserved)",
                where=self.where,
                hint="link the kernel at or above 1 MiB (0x100000)",
            )
        for other in self.placements:
            if start < other.end and other.start < end:
                raise ImageError(
                    f"{name} at {start:#x}..{end:#x} overlaps {other.name} at "
                    f"{other.start:#x}..{other.end:#x}",
                    where=self.where,
                )
        placement = Placement(start, end, name)
        self.placements.append(placement)
        return placement

    def highest_end(self) -> int:
        return max((p.end for p in self.placements), default=EXTENDED_START)

    def place(self, size: int, name: str, *, above: int | None = None, align: int = PAGE,
              below: int | None = None) -> int:
        """Claim the lowest aligned free range of size bytes at or above `above`
        (default: the end of the kernel image), first fit, as low as possible: a kernel
        that identity-maps only its first megabytes can still read what it is given."""
        candidate = align_up(self.image_end if above is None else above, align)
        limit = self.ram_size if below is None else below
        size = max(size, 1)           # an empty module still gets an address of its own
        while candidate + size <= limit:
            region = next((r for r in self.available if r.base <= candidate < r.end), None)
            if region is None:
                nxt = [r.base for r in self.available if r.base > candidate]
                if not nxt:
                    break
                candidate = align_up(min(nxt), align)
                continue
            clash = next((p for p in self.placements if candidate < p.end and p.start < candidate + size), None)
            if clash is not None:
                candidate = align_up(clash.end, align)
                continue
            if candidate + size > region.end:
                candidate = align_up(region.end, align)
                continue
            self.claim(candidate, size, name)
            return candidate
        raise ImageError(
            f"no room for {name} ({size} bytes) in {self.ram_size // (1 << 20)} MiB of guest RAM",
            where=self.where,
            hint="give the machine more memory with --memory",
        )
