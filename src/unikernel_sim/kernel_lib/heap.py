"""Reading the guest's bump allocator through the kernel's own symbols
(heap_start, heap_end, heap_next and the counters in malloc_bump.c)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

HEADER_SIZE = 16
BLOCK_MAGIC = 0x4B4F4C42504D5542
HEAP_SIZE = 64 << 20
SYMBOLS = ("heap_start", "heap_end", "heap_next", "heap_allocations", "heap_failures", "heap_frees")


@dataclass(frozen=True)
class HeapStats:
    start: int
    end: int
    next: int
    allocations: int
    failures: int
    frees: int

    @property
    def used(self) -> int:
        return self.next - self.start

    @property
    def remaining(self) -> int:
        return self.end - self.next


class HeapInspector:
    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        self.addresses = {}
        for name in SYMBOLS:
            address = machine.symbols.address_of(name) if machine.symbols else None
            if address is None:
                raise KeyError(f"the kernel has no symbol {name}: not the reference firmware's heap")
            self.addresses[name] = address

    def _u64(self, name: str) -> int:
        data = self.machine.read_virtual(self.addresses[name], 8)
        return int.from_bytes(data, "little")

    def stats(self) -> HeapStats:
        return HeapStats(*(self._u64(name) for name in SYMBOLS))

    def block_size(self, pointer: int) -> int:
        """The payload size recorded in the header of the block at pointer."""
        header = self.machine.read_virtual(pointer - HEADER_SIZE, HEADER_SIZE)
        size, magic = int.from_bytes(header[:8], "little"), int.from_bytes(header[8:], "little")
        if magic != BLOCK_MAGIC:
            raise ValueError(f"{pointer:#x} is not a live heap block (magic {magic:#x})")
        return size
