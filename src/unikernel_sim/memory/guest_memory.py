"""Guest memory as the CPU sees it: virtual addresses translated through the
guest's own page tables (SDM vol. 3A chapter 4, memory/paging.py), over
physical RAM. Reports, guest calls, delivery and the debugger read and write
through it; nothing here changes CPU state."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from unicorn import Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import MSR
from unikernel_sim.memory import paging
from unikernel_sim.memory.ram import Ram

PAGE_MASK = 0xFFF                   # the smallest page: larger ones are walked per 4 KiB, still right


class GuestMemory:
    def __init__(self, uc: Uc, ram: Ram) -> None:
        self.uc = uc
        self.ram = ram
        self._batch: tuple[tuple[int, int, int, int], dict[int, paging.Walk]] | None = None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Within it, the control registers are read once and each page is walked once:
        an interrupt delivery reads the IDT and writes a frame word by word, and nothing
        changes the page tables meanwhile (it took nine walks of ~4 register reads each)."""
        if self._batch is not None:
            yield
            return
        self._batch = (self._paging_registers(), {})
        try:
            yield
        finally:
            self._batch = None

    def _paging_registers(self) -> tuple[int, int, int, int]:
        uc = self.uc
        return (uc.reg_read(x86.UC_X86_REG_CR0), uc.reg_read(x86.UC_X86_REG_CR3),
                uc.reg_read(x86.UC_X86_REG_CR4), uc.msr_read(MSR.EFER))

    def _walk(self, virtual: int, registers: tuple[int, int, int, int]) -> paging.Walk:
        ram = self.ram
        return paging.walk(virtual, *registers, lambda address: ram.u64(address) if ram.contains(address, 8) else None)

    def translate(self, virtual: int) -> paging.Walk:
        """Walk the guest's page tables for virtual (identity when paging is off)."""
        if self._batch is None:
            return self._walk(virtual, self._paging_registers())
        registers, walks = self._batch
        page, offset = virtual & ~PAGE_MASK, virtual & PAGE_MASK
        walk = walks.get(page)
        if walk is None:
            walk = walks[page] = self._walk(page, registers)
        return walk.moved_to(virtual, None if walk.physical is None else walk.physical + offset)

    def _physical_chunks(self, virtual: int, length: int) -> list[tuple[int, int]] | None:
        chunks = []
        done = 0
        while done < length:
            walk = self.translate(virtual + done)
            if walk.physical is None:
                return None
            chunk = min(length - done, walk.page_size - (walk.physical % walk.page_size))
            if not self.ram.contains(walk.physical, chunk):
                return None
            chunks.append((walk.physical, chunk))
            done += chunk
        return chunks

    def read(self, virtual: int, length: int) -> bytes | None:
        """Bytes at a guest virtual address, or None where unmapped or outside RAM."""
        chunks = self._physical_chunks(virtual, length)
        if chunks is None:
            return None
        return b"".join(self.ram.read(address, size) for address, size in chunks)

    def write(self, virtual: int, data: bytes) -> bool:
        """Write through the guest's page tables; False (nothing written) where unmapped."""
        chunks = self._physical_chunks(virtual, len(data))
        if chunks is None:
            return False
        offset = 0
        for address, size in chunks:
            self.ram.write(address, data[offset:offset + size])
            offset += size
        return True

    def c_string(self, virtual: int, limit: int = 4096) -> bytes | None:
        """The zero-terminated bytes at virtual (without the zero), at most limit;
        None if the first byte is unmapped."""
        out = bytearray()
        while len(out) < limit:
            byte = self.read(virtual + len(out), 1)
            if byte is None:
                return bytes(out) if out else None
            if byte == b"\0":
                break
            out += byte
        return bytes(out)
