"""What SeaBIOS leaves behind on QEMU's PC before GRUB runs, as far as a kernel's
boot information can see it: the APM entry point GRUB reports and the boot drive
(the ACPI tables are boot/acpi_tables.py).

Values are those of the GRUB 2.06 + QEMU 7.2 recording in tests/data/grub_reference
(512 MiB, booted from a CD); a kernel that follows the APM entry point finds no
BIOS code there (unisim runs none).
"""
from __future__ import annotations

import struct

# APM BIOS interface (APM 1.2 spec, table "Installation check"), as SeaBIOS reports it
APM_VERSION = 0x0102
APM_CODE_SEGMENT = 0xF000
APM_ENTRY_OFFSET = 0xD198
APM_DATA_SEGMENT = 0xF000
APM_FLAGS = 0x0003                       # 16-bit and 32-bit protected-mode interfaces
APM_SEGMENT_LENGTH = 0xFFF0

BOOT_DRIVE_CDROM = 0xE0                  # the El Torito drive number SeaBIOS gives a CD
NO_PARTITION = 0xFFFFFFFF


def apm_tag_payload() -> bytes:
    """Multiboot2 tag 10 (APM table) as GRUB 2.06 fills it on SeaBIOS."""
    return struct.pack("<HHIHHHHHH", APM_VERSION, APM_CODE_SEGMENT, APM_ENTRY_OFFSET, APM_CODE_SEGMENT,
                       APM_DATA_SEGMENT, APM_FLAGS, APM_SEGMENT_LENGTH, APM_SEGMENT_LENGTH, APM_SEGMENT_LENGTH)


def boot_device_payload() -> bytes:
    """Multiboot2 tag 5: BIOS drive, partition, sub-partition."""
    return struct.pack("<III", BOOT_DRIVE_CDROM, NO_PARTITION, NO_PARTITION)
