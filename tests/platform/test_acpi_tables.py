"""The ACPI tables a kernel finds, read the way a kernel reads them, with a parser
written here from the ACPI 6.5 specification's tables (not unisim's builder), and
compared with what QEMU 7.2's `pc` machine gave the same probe under GRUB
(tests/data/grub_reference/modern_pc_qemu-7.2_pc.txt; RECIPE.md says how)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from unikernel_sim.run import boot

DATA = Path(__file__).resolve().parents[1] / "data" / "grub_reference"
RECORDING = DATA / "modern_pc_qemu-7.2_pc.txt"
BIOS_AREA = (0xE0000, 0x100000)


def recorded() -> dict[str, tuple[int, bytes]]:
    """{name: (address, bytes)} of the RSDP, FACS and every table the probe dumped."""
    found = {}
    for line in RECORDING.read_text().splitlines():
        parts = line.split()
        if parts[0] == "table":
            found[parts[1]] = (int(parts[2], 16), bytes.fromhex(parts[3]))
        elif parts[0] in ("rsdp", "facs"):
            found[parts[0]] = (int(parts[1], 16), bytes.fromhex(parts[2]))
    return found


@pytest.fixture(scope="module")
def ram():
    machine = boot(str(DATA / "probe.elf"), max_instructions=10_000).machine
    return machine.ram


def read_table(ram, address: int) -> bytes:
    """A table by its header's length field (table 5.4: offset 4, 4 bytes)."""
    length = struct.unpack("<I", ram.read(address + 4, 4))[0]
    return ram.read(address, length)


def find_rsdp(ram) -> int:
    """Section 5.2.5.1: "RSD PTR " on a 16-byte boundary in 0xE0000-0xFFFFF, checksum 0."""
    area = ram.read(BIOS_AREA[0], BIOS_AREA[1] - BIOS_AREA[0])
    for offset in range(0, len(area), 16):
        if area[offset:offset + 8] == b"RSD PTR " and sum(area[offset:offset + 20]) % 256 == 0:
            return BIOS_AREA[0] + offset
    raise AssertionError("no RSDP in the BIOS area")


def tables(ram) -> dict[str, tuple[int, bytes]]:
    rsdp_address = find_rsdp(ram)
    rsdp = ram.read(rsdp_address, 20)
    found = {"rsdp": (rsdp_address, rsdp)}
    rsdt_address = struct.unpack_from("<I", rsdp, 16)[0]
    rsdt = read_table(ram, rsdt_address)
    found["RSDT"] = (rsdt_address, rsdt)
    for (pointer,) in struct.iter_unpack("<I", rsdt[36:]):
        table = read_table(ram, pointer)
        found[table[:4].decode()] = (pointer, table)
    fadt = found["FACP"][1]
    facs_address, dsdt_address = struct.unpack_from("<II", fadt, 36)         # table 5.9
    found["facs"] = (facs_address, ram.read(facs_address, struct.unpack("<I", ram.read(facs_address + 4, 4))[0]))
    found["DSDT"] = (dsdt_address, read_table(ram, dsdt_address))
    return found


def test_every_checksum_is_valid(ram):
    for name, (_, data) in tables(ram).items():
        if name != "facs":                                           # the FACS has no checksum
            assert sum(data) % 256 == 0, name


def test_the_tables_are_byte_for_byte_qemus_but_the_dsdt(ram):
    ours, theirs = tables(ram), recorded()
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        if name != "DSDT":
            assert ours[name] == theirs[name], name


def test_the_madt_as_a_kernel_decodes_it(ram):
    """Section 5.2.12: local APIC address, flags, then type/length records."""
    madt = tables(ram)["APIC"][1]
    local_apic, flags = struct.unpack_from("<II", madt, 36)
    assert (local_apic, flags) == (0xFEE00000, 1)
    records, offset = [], 44
    while offset < len(madt):
        kind, length = madt[offset], madt[offset + 1]
        records.append((kind, madt[offset + 2:offset + length]))
        offset += length
    assert records[0] == (0, bytes([0, 0, 1, 0, 0, 0]))                          # processor 0, APIC 0, enabled
    assert records[1] == (1, struct.pack("<BBII", 0, 0, 0xFEC00000, 0))          # I/O APIC 0, GSI base 0
    overrides = [struct.unpack("<BBIH", body) for kind, body in records if kind == 2]
    assert overrides[0] == (0, 0, 2, 0)                                          # IRQ 0 -> GSI 2
    assert (0, 9, 9, 0x000D) in overrides                                        # IRQ 9 level, active high
    assert records[-1] == (4, bytes([0xFF, 0, 0, 1]))                           # LINT1 NMI on every CPU


def test_the_fadt_fields_shutdown_and_timing_code_use(ram):
    fadt = tables(ram)["FACP"][1]
    sci, smi_command, enable, disable = struct.unpack_from("<HIBB", fadt, 46)
    pm1a_event, _, pm1a_control, _, _, pm_timer = struct.unpack_from("<IIIIII", fadt, 56)
    assert (sci, smi_command, enable, disable) == (9, 0xB2, 0xF1, 0xF0)
    assert (pm1a_event, pm1a_control, pm_timer) == (0x600, 0x604, 0x608)
    assert fadt[108] == 0x32                                                     # RTC century index


def test_the_dsdt_names_the_sleep_states_as_qemus_does(ram):
    """AML (section 20.2.5.2): NameOp '_S5_' PackageOp ... with SLP_TYP 0 for S5,
    the same package bytes as in QEMU's own DSDT (recorded)."""
    ours = tables(ram)["DSDT"][1]
    theirs = recorded()["DSDT"][1]
    for name in (b"_S3_", b"_S4_", b"_S5_"):
        mine, qemus = ours.find(b"\x08" + name), theirs.find(b"\x08" + name)
        assert mine > 0 and qemus > 0, name
        length = 1 + 4 + 1 + ours[mine + 6]                # NameOp, name, PackageOp, PkgLength (counts itself)
        assert ours[mine:mine + length] == theirs[qemus:qemus + length], name


def test_the_hpet_table_points_at_the_hpet(ram):
    hpet = tables(ram)["HPET"][1]
    block_id, space = struct.unpack_from("<IB", hpet, 36)
    address = struct.unpack_from("<Q", hpet, 44)[0]
    assert (block_id >> 16, space, address) == (0x8086, 0, 0xFED00000)        # vendor, memory space


def test_unisim_info_acpi_prints_the_tables_the_guest_finds(capfd, ram):
    """The same addresses and decoded fields a guest reads from RAM."""
    from unikernel_sim.cli import main

    assert main(["info", "--acpi"]) == 0
    out = capfd.readouterr().out.splitlines()
    found = tables(ram)
    assert out[0] == f"RSDP at {found['rsdp'][0]:#x}: revision 0, OEM 'BOCHS ', RSDT at {found['RSDT'][0]:#x}"
    for name in ("FACP", "APIC", "HPET", "WAET", "RSDT", "DSDT"):
        assert any(line.startswith(f"{name} at {found[name][0]:#x}: {len(found[name][1])} bytes") for line in out)
    assert "  override: ISA IRQ 0 -> GSI 2, flags 0x0000" in out
    assert main(["info"]) == 64
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give a kernel image, or --acpi" in err[0]
