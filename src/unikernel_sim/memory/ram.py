"""Guest physical RAM: one Unicorn mapping from address 0 to the configured size.

The memory is our own (memory/ram_snapshots.py), mapped with uc_mem_map_ptr, so
that snapshots write-protect it instead of using Unicorn's copy-on-write regions.

The whole range is RAM, including the legacy 640 KiB - 1 MiB window, so VGA
text memory at 0xB8000 is plain RAM the host reads after a slice (no memory
hook on every write). The boot information's memory map is what tells the
guest which parts to use. Accesses past the end fault in Unicorn
(UC_ERR_*_UNMAPPED), which the run loop reports as "access outside guest RAM".
"""
from __future__ import annotations

import struct

from unicorn import UC_ERR_NOMEM, UC_PROT_ALL, Uc, UcError

from unikernel_sim.errors import HostLimitError
from unikernel_sim.memory.ram_snapshots import RamSnapshots

MIB = 1 << 20
KIB = 1 << 10
MIN_MEMORY_MB = 2
MAX_MEMORY_MB = 3072          # stays below the 32-bit PCI/APIC hole, so boot info addresses fit u32


class Ram:
    def __init__(self, uc: Uc, size: int) -> None:
        self.uc = uc
        self.size = size
        self.snapshots = RamSnapshots(uc)
        # Where guest physical 0 lives in this process: C code reads guest memory there
        # (page walks, IDT gates) instead of through uc_mem_read's region lookups.
        self.host_address = self.map_memory(0, size, UC_PROT_ALL, what="guest RAM")

    def map_memory(self, base: int, size: int, perms: int, *, what: str) -> int:
        """Map size bytes at physical base from memory the snapshots cover (guest RAM,
        the VGA framebuffer); their host address. HostLimitError when the host refuses them."""
        try:
            host = self.snapshots.allocate(size)
            self.uc.mem_map_ptr(base, size, perms, host)
            return host
        except (OSError, UcError) as error:
            if isinstance(error, UcError) and error.errno != UC_ERR_NOMEM:
                raise
            raise HostLimitError(f"the host refused {size >> 20} MiB for {what} (out of memory, or ulimit -v)",
                                 hint="give a smaller --memory, or raise the limit") from None

    def contains(self, address: int, length: int = 1) -> bool:
        return 0 <= address and address + length <= self.size

    def read(self, address: int, length: int) -> bytes:
        return bytes(self.uc.mem_read(address, length))

    def write(self, address: int, data: bytes) -> None:
        self.uc.mem_write(address, bytes(data))

    def fill(self, address: int, length: int, value: int = 0) -> None:
        self.uc.mem_write(address, bytes([value]) * length)

    def u8(self, address: int) -> int:
        return self.read(address, 1)[0]

    def u16(self, address: int) -> int:
        return struct.unpack("<H", self.read(address, 2))[0]

    def u32(self, address: int) -> int:
        return struct.unpack("<I", self.read(address, 4))[0]

    def u64(self, address: int) -> int:
        return struct.unpack("<Q", self.read(address, 8))[0]

    def write_u32(self, address: int, value: int) -> None:
        self.write(address, struct.pack("<I", value & 0xFFFFFFFF))

    def write_u64(self, address: int, value: int) -> None:
        self.write(address, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def c_string(self, address: int, limit: int = 4096) -> bytes:
        """The zero-terminated bytes at address (without the zero), at most limit."""
        out = bytearray()
        while len(out) < limit and self.contains(address + len(out)):
            chunk = self.read(address + len(out), min(256, self.size - address - len(out)))
            end = chunk.find(0)
            if end >= 0:
                out += chunk[:end]
                break
            out += chunk
        return bytes(out[:limit])
