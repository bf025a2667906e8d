"""Guest memory the host may use for arguments (strings, buffers): a bump
region the guest never allocates from (by default the 16 MiB after the
firmware's heap, inside its identity map). Reset it when the machine is
restored; it is part of guest RAM, so snapshots cover it."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

SCRATCH_SIZE = 16 << 20
ALIGN = 16


class GuestScratch:
    def __init__(self, machine: "Machine", start: int, size: int = SCRATCH_SIZE) -> None:
        if not machine.ram.contains(start, size):
            raise ValueError(f"scratch {start:#x}+{size:#x} is not in guest RAM")
        self.machine = machine
        self.start = start
        self.end = start + size
        self.next = start

    @classmethod
    def after_heap(cls, machine: "Machine") -> "GuestScratch":
        from unikernel_sim.kernel_lib.heap import HeapInspector

        return cls(machine, HeapInspector(machine).stats().end)

    def reset(self) -> None:
        self.next = self.start

    def alloc(self, size: int, align: int = ALIGN) -> int:
        address = (self.next + align - 1) // align * align
        if address + size > self.end:
            raise MemoryError(f"guest scratch exhausted ({size} bytes wanted)")
        self.next = address + size
        return address

    def put_bytes(self, data: bytes, align: int = ALIGN, offset: int = 0) -> int:
        """Copy data to fresh scratch memory (at an address = offset mod align); returns it."""
        address = self.alloc(len(data) + offset, align) + offset
        self.machine.ram.write(address, data)
        return address

    def put_c_string(self, text: str | bytes) -> int:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return self.put_bytes(data + b"\0")

    def read(self, address: int, length: int) -> bytes:
        return self.machine.ram.read(address, length)

    def read_c_string(self, address: int, limit: int = 1 << 20) -> bytes:
        return self.machine.ram.c_string(address, limit)
