"""The ACPI tables SeaBIOS leaves on QEMU 7.2's `pc` machine (i440FX/PIIX4, 512 MiB,
one CPU), laid out where it leaves them: the RSDP in the BIOS area at 0xF59D0 (found
by the classic 16-byte scan of 0xE0000-0xFFFFF, copied into Multiboot2 tag 14), and
in the 128 KiB SeaBIOS reserves at the top of RAM: FACS, DSDT, FADT, MADT, HPET, WAET
and the RSDT. Byte layouts from the ACPI 6.5 specification (sections cited per
table); every field's value as recorded (tests/data/grub_reference/modern_pc_qemu-
7.2_pc.txt), so FACS, FADT, MADT, HPET, WAET, RSDT and RSDP are byte for byte QEMU's.

The DSDT is unisim's own: QEMU's 6.5 KB of AML describes devices unisim does not
have; this one holds what kernels look for without an AML interpreter, the sleep
packages \\_S3_, \\_S4_ and \\_S5_ (QEMU's values; PM1a_CNT.SLP_TYP for S5 is 0).

QEMU's RSDP is revision 0 (ACPI 1.0: RSDT only, no XSDT), so GRUB hands over tag 14
and no tag 15; so does unisim. Its FADT is revision 1 (116 bytes): no reset
register and IAPC_BOOT_ARCH = 0 - the reset is at 0xCF9 and the 8042 regardless.
"""
from __future__ import annotations

import struct

from unikernel_sim.records import Record

RSDP_ADDRESS = 0xF59D0                   # recorded on QEMU 7.2 `pc`, 512 MiB, CD boot
FACS_OFFSET, DSDT_OFFSET, FADT_OFFSET = 0x0000, 0x0040, 0x198C      # in SeaBIOS's top-of-RAM block
MADT_OFFSET, HPET_OFFSET, WAET_OFFSET, RSDT_OFFSET = 0x1A00, 0x1A78, 0x1AB0, 0x1AD8
OEM_ID = b"BOCHS "
OEM_TABLE_ID = b"BXPC    "
OEM_REVISION = 1
CREATOR_ID = b"BXPC"
CREATOR_REVISION = 1
HEADER = struct.Struct("<4sIBB6s8sI4sI")          # table 5.4: system description table header
RSDP_V1 = struct.Struct("<8sB6sBI")               # table 5.3: ACPI 1.0 part of the RSDP
CHECKSUM_OFFSET = 9

# FADT (section 5.2.9, table 5.9), revision 1 as QEMU builds it for PIIX4
SCI_INTERRUPT = 9
SMI_COMMAND_PORT = 0xB2
ACPI_ENABLE_VALUE, ACPI_DISABLE_VALUE = 0xF1, 0xF0
PM1A_EVENT_BLOCK, PM1A_CONTROL_BLOCK, PM_TIMER_BLOCK, GPE0_BLOCK = 0x600, 0x604, 0x608, 0xAFE0
PM1_EVENT_LENGTH, PM1_CONTROL_LENGTH, PM_TIMER_LENGTH, GPE0_LENGTH = 4, 2, 4, 4
C2_LATENCY = C3_LATENCY = 0x0FFF                  # > 100 / > 1000: C2/C3 not supported
RTC_CENTURY_INDEX = 0x32
FADT_FLAGS = 0x80A5                               # WBINVD, PROC_C1, SLP_BUTTON, RTC_S4, USE_PLATFORM_CLOCK
INTERRUPT_MODEL = 1                               # ACPI 1.0's INT_MODEL: APIC (now "reserved")

# MADT (section 5.2.12)
LOCAL_APIC_ADDRESS = 0xFEE00000
IOAPIC_ADDRESS = 0xFEC00000
MADT_PCAT_COMPAT = 1                              # dual 8259s present
LOCAL_APIC, IO_APIC, INTERRUPT_OVERRIDE, LOCAL_APIC_NMI = 0, 1, 2, 4
LOCAL_APIC_ENABLED = 1
POLARITY_HIGH, TRIGGER_LEVEL = 0x1, 0xC           # MPS INTI flags (table 5.26)
ALL_PROCESSORS = 0xFF
LINT1 = 1
ISA_OVERRIDES = ((0, 2, 0), (5, 5, POLARITY_HIGH | TRIGGER_LEVEL), (9, 9, POLARITY_HIGH | TRIGGER_LEVEL),
                 (10, 10, POLARITY_HIGH | TRIGGER_LEVEL), (11, 11, POLARITY_HIGH | TRIGGER_LEVEL))
# (ISA IRQ, GSI, flags): the PIT on pin 2; the PCI interrupt links (5, 9, 10, 11) level, active high

# HPET description table (IA-PC HPET specification 1.0a, section 3.2.4)
HPET_ADDRESS = 0xFED00000
HPET_EVENT_TIMER_BLOCK_ID = 0x8086A201            # the capabilities register's low half
GAS_SYSTEM_MEMORY = 0

WAET_PM_TIMER_GOOD = 0x2                          # Windows ACPI Emulated devices Table: reads need no retry

SLEEP_STATES = ((b"_S3_", 1), (b"_S4_", 2), (b"_S5_", 0))   # PM1a/PM1b SLP_TYP for each, as QEMU's DSDT
AML_NAME, AML_PACKAGE, AML_BYTE_PREFIX, AML_ZERO, AML_ONE = 0x08, 0x12, 0x0A, 0x00, 0x01


def checksum_byte(data: bytes) -> int:
    """The byte that makes data (with a zero in its place) sum to 0 mod 256."""
    return (-sum(data)) & 0xFF


def _table(signature: bytes, revision: int, body: bytes) -> bytes:
    table = bytearray(HEADER.pack(signature, HEADER.size + len(body), revision, 0, OEM_ID, OEM_TABLE_ID,
                                  OEM_REVISION, CREATOR_ID, CREATOR_REVISION) + body)
    table[CHECKSUM_OFFSET] = checksum_byte(table)
    return bytes(table)


def facs() -> bytes:
    """Section 5.2.10: signature, length 64, the rest zero (no waking vector yet)."""
    return struct.pack("<4sI", b"FACS", 64).ljust(64, b"\0")


def _aml_integer(value: int) -> bytes:
    if value in (0, 1):
        return bytes([AML_ZERO if value == 0 else AML_ONE])
    return bytes([AML_BYTE_PREFIX, value])


def dsdt() -> bytes:
    """Section 5.2.11.1 with AML (section 20): Name(\\_Sx_, Package(4){typ, typ, 0, 0})
    for S3, S4 and S5, the objects shutdown code looks up without an interpreter."""
    body = b""
    for name, sleep_type in SLEEP_STATES:
        elements = _aml_integer(sleep_type) * 2 + _aml_integer(0) * 2
        package = bytes([4]) + elements
        body += bytes([AML_NAME]) + name + bytes([AML_PACKAGE, 1 + len(package)]) + package
    return _table(b"DSDT", 1, body)


def fadt(facs_address: int, dsdt_address: int) -> bytes:
    """Section 5.2.9, the 116-byte revision-1 layout QEMU's `pc` builds."""
    body = struct.pack("<IIBBHIBBBB", facs_address, dsdt_address, INTERRUPT_MODEL, 0, SCI_INTERRUPT,
                       SMI_COMMAND_PORT, ACPI_ENABLE_VALUE, ACPI_DISABLE_VALUE, 0, 0)
    body += struct.pack("<IIIIIIII", PM1A_EVENT_BLOCK, 0, PM1A_CONTROL_BLOCK, 0, 0, PM_TIMER_BLOCK, GPE0_BLOCK, 0)
    body += bytes([PM1_EVENT_LENGTH, PM1_CONTROL_LENGTH, 0, PM_TIMER_LENGTH, GPE0_LENGTH, 0, 0, 0])
    body += struct.pack("<HHHHBBBBBHBI", C2_LATENCY, C3_LATENCY, 0, 0, 0, 0, 0, 0, RTC_CENTURY_INDEX, 0, 0,
                        FADT_FLAGS)
    return _table(b"FACP", 1, body)


def madt() -> bytes:
    """Section 5.2.12: one processor, the I/O APIC, the ISA overrides, LINT1 as NMI."""
    body = struct.pack("<II", LOCAL_APIC_ADDRESS, MADT_PCAT_COMPAT)
    body += struct.pack("<BBBBI", LOCAL_APIC, 8, 0, 0, LOCAL_APIC_ENABLED)
    body += struct.pack("<BBBBII", IO_APIC, 12, 0, 0, IOAPIC_ADDRESS, 0)
    for irq, gsi, flags in ISA_OVERRIDES:
        body += struct.pack("<BBBBIH", INTERRUPT_OVERRIDE, 10, 0, irq, gsi, flags)
    body += struct.pack("<BBBHB", LOCAL_APIC_NMI, 6, ALL_PROCESSORS, 0, LINT1)
    return _table(b"APIC", 1, body)


def hpet_table() -> bytes:
    """HPET specification 1.0a, table 3: block ID, base address (a memory GAS), number 0."""
    body = struct.pack("<IBBBBQBHB", HPET_EVENT_TIMER_BLOCK_ID, GAS_SYSTEM_MEMORY, 0, 0, 0, HPET_ADDRESS, 0, 0, 0)
    return _table(b"HPET", 1, body)


def waet() -> bytes:
    return _table(b"WAET", 1, struct.pack("<I", WAET_PM_TIMER_GOOD))


def rsdt(entries: list[int]) -> bytes:
    """Section 5.2.7: 32-bit pointers to the other tables (the FADT first)."""
    return _table(b"RSDT", 1, struct.pack(f"<{len(entries)}I", *entries))


def rsdp(rsdt_address: int) -> bytes:
    """Section 5.2.5.3, revision 0: the 20-byte ACPI 1.0 structure."""
    data = bytearray(RSDP_V1.pack(b"RSD PTR ", 0, OEM_ID, 0, rsdt_address))
    data[8] = checksum_byte(data)
    return bytes(data)


class AcpiTables(Record):
    """The ACPI tables as placed in guest memory, and the RSDP the boot information copies."""

    rsdp_address: int
    rsdp: bytes                          # what tag 14 copies
    tables: tuple[tuple[int, bytes], ...]  # (address, bytes) of FACS, DSDT, FADT, MADT, HPET, WAET, RSDT

    def chunks(self) -> list[tuple[int, bytes]]:
        return [(self.rsdp_address, self.rsdp), *self.tables]


def acpi_tables(top_reserved_base: int) -> AcpiTables:
    """Every table at its address for RAM whose reserved top block starts at top_reserved_base."""
    at = top_reserved_base
    facs_address, dsdt_address = at + FACS_OFFSET, at + DSDT_OFFSET
    fadt_address, madt_address = at + FADT_OFFSET, at + MADT_OFFSET
    hpet_address, waet_address, rsdt_address = at + HPET_OFFSET, at + WAET_OFFSET, at + RSDT_OFFSET
    tables = ((facs_address, facs()), (dsdt_address, dsdt()), (fadt_address, fadt(facs_address, dsdt_address)),
              (madt_address, madt()), (hpet_address, hpet_table()), (waet_address, waet()),
              (rsdt_address, rsdt([fadt_address, madt_address, hpet_address, waet_address])))
    return AcpiTables(RSDP_ADDRESS, rsdp(rsdt_address), tables)
