"""What SeaBIOS leaves behind on QEMU's PC before GRUB runs, as far as a kernel's
boot information can see it: the APM entry point GRUB reports, the boot drive,
and an ACPI 1.0 RSDP with its RSDT.

Values are those of the GRUB 2.06 + QEMU 7.2 recording in tests/data/grub_reference
(512 MiB, booted from a CD). The RSDT lists no tables yet: a kernel finds a valid
RSDP and RSDT (checksums per ACPI 6.5 sections 5.2.5 and 5.2.7) and no MADT, FADT
or HPET, the state until the modern-PC devices arrive; a kernel that follows the
APM entry point finds no BIOS code there (unisim runs none).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# APM BIOS interface (APM 1.2 spec, table "Installation check"), as SeaBIOS reports it
APM_VERSION = 0x0102
APM_CODE_SEGMENT = 0xF000
APM_ENTRY_OFFSET = 0xD198
APM_DATA_SEGMENT = 0xF000
APM_FLAGS = 0x0003                       # 16-bit and 32-bit protected-mode interfaces
APM_SEGMENT_LENGTH = 0xFFF0

BOOT_DRIVE_CDROM = 0xE0                  # the El Torito drive number SeaBIOS gives a CD
NO_PARTITION = 0xFFFFFFFF

RSDP_ALIGN = 16
RSDP_ADDRESS = 0xF5A80                   # in the BIOS area a kernel searches (0xE0000-0xFFFFF)
RSDT_OFFSET_IN_TOP_RESERVED = 0x1AD8     # where SeaBIOS's RSDT sat in its top-of-RAM block
OEM_ID = b"BOCHS "
RSDT_OEM_TABLE_ID = b"BXPC    "
CREATOR_ID = b"BXPC"
ACPI_HEADER = struct.Struct("<4sIBB6s8sI4sI")          # ACPI 6.5 table 5.4, 36 bytes
RSDP_V1 = struct.Struct("<8sB6sBI")                     # ACPI 6.5 table 5.3, first 20 bytes


def apm_tag_payload() -> bytes:
    """Multiboot2 tag 10 (APM table) as GRUB 2.06 fills it on SeaBIOS."""
    return struct.pack("<HHIHHHHHH", APM_VERSION, APM_CODE_SEGMENT, APM_ENTRY_OFFSET, APM_CODE_SEGMENT,
                       APM_DATA_SEGMENT, APM_FLAGS, APM_SEGMENT_LENGTH, APM_SEGMENT_LENGTH, APM_SEGMENT_LENGTH)


def boot_device_payload() -> bytes:
    """Multiboot2 tag 5: BIOS drive, partition, sub-partition."""
    return struct.pack("<III", BOOT_DRIVE_CDROM, NO_PARTITION, NO_PARTITION)


def checksum_byte(data: bytes) -> int:
    """The byte that makes data (with a zero in its place) sum to 0 mod 256."""
    return (-sum(data)) & 0xFF


@dataclass(frozen=True)
class AcpiTables:
    rsdp_address: int
    rsdp: bytes                          # ACPI 1.0 RSDP, 20 bytes (what tag 14 copies)
    rsdt_address: int
    rsdt: bytes

    def chunks(self) -> list[tuple[int, bytes]]:
        return [(self.rsdp_address, self.rsdp), (self.rsdt_address, self.rsdt)]


def acpi_tables(top_reserved_base: int) -> AcpiTables:
    """An RSDP in the BIOS area and an empty RSDT in the reserved block at the top of RAM."""
    rsdt_address = top_reserved_base + RSDT_OFFSET_IN_TOP_RESERVED
    rsdt = bytearray(ACPI_HEADER.pack(b"RSDT", ACPI_HEADER.size, 1, 0, OEM_ID, RSDT_OEM_TABLE_ID, 1,
                                      CREATOR_ID, 1))
    rsdt[9] = checksum_byte(rsdt)
    rsdp = bytearray(RSDP_V1.pack(b"RSD PTR ", 0, OEM_ID, 0, rsdt_address))
    rsdp[8] = checksum_byte(rsdp)
    return AcpiTables(RSDP_ADDRESS, bytes(rsdp), rsdt_address, bytes(rsdt))
