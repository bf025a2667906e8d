"""The bump allocator's semantics in plain Python: the oracle the guest's
malloc_bump.c is checked against (see its header comment for the rules).

Written from the contract, not from the C: sizes round up to 16 with a
16-byte header per block; malloc(0) takes 16; only the last block can be
given back; requests that do not fit (or exceed the heap) fail with None."""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 16
HEADER = 16


def round_up(size: int) -> int:
    return -(-max(size, 1) // ALIGN) * ALIGN


@dataclass
class HeapModel:
    start: int
    end: int
    next: int = 0
    allocations: int = 0
    failures: int = 0
    frees: int = 0
    blocks: dict[int, int] = field(default_factory=dict)   # pointer -> payload size (live)

    def __post_init__(self) -> None:
        if self.next == 0:
            self.next = self.start

    def _last_pointer(self) -> int | None:
        for pointer, size in self.blocks.items():
            if pointer + size == self.next:
                return pointer
        return None

    def malloc(self, size: int) -> int | None:
        if size > self.end - self.start:
            self.failures += 1
            return None
        payload = round_up(size)
        if HEADER + payload > self.end - self.next:
            self.failures += 1
            return None
        pointer = self.next + HEADER
        self.next = pointer + payload
        self.blocks[pointer] = payload
        self.allocations += 1
        return pointer

    def calloc(self, count: int, size: int) -> int | None:
        total = count * size
        if total >= 1 << 64:
            self.failures += 1
            return None
        return self.malloc(total)

    def free(self, pointer: int) -> None:
        if pointer == 0:
            return
        self.frees += 1
        if pointer in self.blocks and pointer + self.blocks[pointer] == self.next:
            self.next = pointer - HEADER
            del self.blocks[pointer]

    def realloc(self, pointer: int, size: int) -> int | None:
        if pointer == 0:
            return self.malloc(size)
        if size == 0:
            self.free(pointer)
            return None
        if size > self.end - self.start:
            self.failures += 1
            return None
        payload = round_up(size)
        if pointer + self.blocks[pointer] == self.next and payload <= self.end - pointer:
            self.next = pointer + payload
            self.blocks[pointer] = payload
            self.allocations += 1
            return pointer
        moved = self.malloc(size)
        if moved is None:
            return None
        self.free(pointer)
        return moved
