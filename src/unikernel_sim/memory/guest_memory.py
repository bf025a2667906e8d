"""Guest memory as the CPU sees it: virtual addresses translated through the
guest's own page tables (SDM vol. 3A chapter 4, memory/paging.py), over
physical RAM. Reports, guest calls, delivery and the debugger read and write
through it; nothing here changes CPU state."""
from __future__ import annotations

from unicorn import Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import MSR
from unikernel_sim.memory import paging
from unikernel_sim.memory.ram import Ram


class GuestMemory:
    def __init__(self, uc: Uc, ram: Ram) -> None:
        self.uc = uc
        self.ram = ram

    def translate(self, virtual: int) -> paging.Walk:
        """Walk the guest's page tables for virtual (identity when paging is off)."""
        uc, ram = self.uc, self.ram
        return paging.walk(
            virtual, uc.reg_read(x86.UC_X86_REG_CR0), uc.reg_read(x86.UC_X86_REG_CR3),
            uc.reg_read(x86.UC_X86_REG_CR4), uc.msr_read(MSR.EFER),
            lambda address: ram.u64(address) if ram.contains(address, 8) else None,
        )

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
