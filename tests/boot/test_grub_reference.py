"""The boot information against an independent record: what GRUB 2.06 handed the
same probe kernel on QEMU 7.2 (tests/data/grub_reference/RECIPE.md says how it was
recorded; QEMU is not needed here).

Every tag but the loader's name must be byte for byte what GRUB gave."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.run import boot

DATA = Path(__file__).resolve().parents[1] / "data" / "grub_reference"
RECORDING = DATA / "grub-2.06_qemu-7.2_512M.txt"
MULTIBOOT2_MAGIC = 0x36D76289
TAG_LOAD_BASE, TAG_CMDLINE, TAG_LOADER_NAME, TAG_MODULE, TAG_BASIC_MEMINFO = 21, 1, 2, 3, 4
TAG_BOOTDEV, TAG_MMAP, TAG_FRAMEBUFFER, TAG_ELF_SECTIONS, TAG_APM, TAG_ACPI_OLD = 5, 6, 8, 9, 10, 14


def parse_dump(text: str) -> tuple[int, list[tuple[int, bytes]]]:
    """(magic, [(tag type, payload)]) from the probe's serial output."""
    magic, tags = None, []
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["magic"]:
            magic = int(fields[1], 16)
        elif fields[:1] == ["tag"]:
            payload = bytes.fromhex(fields[3]) if len(fields) > 3 else b""
            assert len(payload) + 8 == int(fields[2], 16), line
            tags.append((int(fields[1], 16), payload))
    assert magic is not None, "no magic line"
    return magic, tags


@pytest.fixture(scope="module")
def dumps():
    grub = parse_dump(RECORDING.read_text(errors="replace"))
    result = boot(str(DATA / "probe.elf"), cmdline="probe cmdline",
                  modules=[ModuleSpec(str(DATA / "module.txt"), "module-one")], max_instructions=10_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    return grub, parse_dump(result.serial)


def payload(tags, tag_type: int) -> bytes:
    found = [data for kind, data in tags if kind == tag_type]
    assert len(found) == 1, (tag_type, [kind for kind, _ in tags])
    return found[0]


def test_what_already_agrees_with_grub(dumps):
    (grub_magic, grub), (magic, ours) = dumps
    assert magic == grub_magic == MULTIBOOT2_MAGIC
    # ELF sections: the headers with the addresses GRUB gave the non-allocated sections it
    # loaded (packed after the image at their own alignment), and the module on the next page
    for tag_type in (TAG_LOAD_BASE, TAG_CMDLINE, TAG_FRAMEBUFFER, TAG_ELF_SECTIONS, TAG_MODULE, TAG_APM,
                     TAG_BOOTDEV, TAG_MMAP, TAG_BASIC_MEMINFO, TAG_ACPI_OLD):
        assert payload(ours, tag_type) == payload(grub, tag_type), tag_type


def test_a_segment_at_0xff000_loads_as_under_grub(capfd):
    """probe_low.elf (probe.c linked by probe_low.ld: the header's segment at 0xFF000, the
    code at 1 MiB): GRUB reports load base 0xFF000 and places the module as usual."""
    grub = parse_dump((DATA / "grub-2.06_qemu-7.2_512M_segment_at_0xff000.txt").read_text())
    result = boot(str(DATA / "probe_low.elf"), cmdline="probe cmdline",
                  modules=[ModuleSpec(str(DATA / "module.txt"), "module-one")], max_instructions=10_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    ours = parse_dump(result.serial)
    assert [kind for kind, _ in ours[1]] == [kind for kind, _ in grub[1]]
    for (kind, data), (_, theirs) in zip(ours[1], grub[1]):
        if kind != TAG_LOADER_NAME:
            assert data == theirs, kind
    assert "0xff000..0xff018" in result.machine.kernel.header.warnings[0]


def test_tag_set_and_order_match_grub(dumps):
    (_, grub), (_, ours) = dumps
    assert [kind for kind, _ in ours] == [kind for kind, _ in grub] == [21, 1, 2, 10, 3, 6, 9, 4, 5, 8, 14, 0]


def test_only_the_loader_name_differs(dumps):
    (_, grub), (_, ours) = dumps
    differing = [kind for (kind, data), (_, theirs) in zip(ours, grub) if data != theirs]
    assert differing == [TAG_LOADER_NAME]
    assert payload(grub, TAG_LOADER_NAME).startswith(b"GRUB 2.06")


def test_the_rsdp_in_the_tag_is_the_one_in_the_bios_area(dumps):
    """The RSDP a kernel finds by searching the BIOS area is the one in tag 14 (the
    tables themselves: tests/platform/test_acpi_tables.py)."""
    (_, _), (_, ours) = dumps
    rsdp = payload(ours, TAG_ACPI_OLD)
    machine = boot(str(DATA / "probe.elf"), max_instructions=10_000).machine
    bios_area = machine.ram.read(0xE0000, 0x20000)
    found = [offset for offset in range(0, len(bios_area), 16) if bios_area[offset:offset + 8] == b"RSD PTR "]
    assert len(found) == 1 and bios_area[found[0]:found[0] + 20] == rsdp


# --- the header walk: accept what GRUB accepts, refuse what it refuses ---------------------
HEADER_OFFSET = 0x1000                   # probe.elf's .multiboot2 section in the file
HEADER_ROOM = 32                         # the section and the padding before .text
WALK_RECORDING = DATA / "header_walk.txt"


def _end(size: int = 8, flags: int = 0) -> bytes:
    return struct.pack("<HHI", 0, flags, size)


def header_variants() -> dict[str, bytes]:
    """probe.elf with its header replaced: (header_length, tags) per variant."""
    unknown = 0x63
    shapes = {
        "end_size0": (24, _end(size=0)),
        "end_flags": (24, _end(flags=1)),
        "no_end_in_length": (16, _end()),
        "end_past_length": (20, _end()),
        "unknown_required": (32, struct.pack("<HHI", unknown, 0, 8) + _end()),
        "unknown_optional": (32, struct.pack("<HHI", unknown, 1, 8) + _end()),
        "tag_size_unaligned": (32, struct.pack("<HHI", unknown, 1, 4) + _end()),
    }
    original = (DATA / "probe.elf").read_bytes()
    variants = {}
    for name, (length, tags) in shapes.items():
        magic = 0xE85250D6
        header = struct.pack("<IIII", magic, 0, length, (-(magic + length)) & 0xFFFFFFFF) + tags
        assert len(header) <= HEADER_ROOM
        image = bytearray(original)
        image[HEADER_OFFSET:HEADER_OFFSET + len(header)] = header
        variants[name] = bytes(image)
    return variants


def grub_outcomes() -> dict[str, str]:
    outcomes = {}
    for line in WALK_RECORDING.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, outcome = line.split(None, 1)
            outcomes[name] = outcome
    return outcomes


@pytest.mark.parametrize("name", sorted(grub_outcomes()))
def test_the_header_walk_follows_grub(capfd, tmp_path, name):
    from unikernel_sim.cli import main

    path = tmp_path / f"{name}.elf"
    path.write_bytes(header_variants()[name])
    code = main(["boot", str(path), "--max-instructions", "2000000"])
    out, err = capfd.readouterr()
    if grub_outcomes()[name] == "booted":
        assert code == 0 and out.startswith("magic 36d76289"), err
        if name != "unknown_optional":
            assert "unisim: warning:" in err                  # accepted, but said what is off
    else:
        assert code == 68 and "tag type 99" in err and "not marked optional" in err


# --- Multiboot 1 -------------------------------------------------------------------------
MB1_RECORDING = DATA / "grub-2.06_qemu-7.2_512M_multiboot1.txt"
MB1_INFO = struct.Struct("<IIIIIIIIIIIIIIIIIIIIHHHHQIIIBB6s")     # specification 3.3, 116 bytes


def parse_mb1_dump(text: str) -> dict:
    fields = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in ("magic", "info", "cmdline", "mods", "modcmd", "mmap", "loader", "apm"):
            fields[parts[0]] = parts[1] if parts[0] == "magic" else bytes.fromhex(parts[1] if len(parts) > 1 else "")
    return {**fields, "magic": int(fields["magic"], 16), "info": MB1_INFO.unpack(fields["info"])}


def test_a_multiboot1_kernel_gets_what_grub_gives_it():
    grub = parse_mb1_dump(MB1_RECORDING.read_text(errors="replace"))
    result = boot(str(DATA / "probe1.elf"), cmdline="probe1 cmdline",
                  modules=[ModuleSpec(str(DATA / "module.txt"), "module-one")], max_instructions=10_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    ours = parse_mb1_dump(result.serial)
    assert ours["magic"] == grub["magic"] == 0x2BADB002
    g, o = grub["info"], ours["info"]
    assert o[0] == g[0]                          # flags: memory, boot device, ..., VBE, framebuffer
    assert o[4] == g[4] == 0x10078               # the command line right after GRUB's 120-byte structure
    assert o[1:4] == g[1:4]                      # mem_lower, mem_upper, boot_device
    assert o[5] == g[5] == 1                     # mods_count
    assert o[7:9] == g[7:9] and o[10] == g[10]    # ELF sections: num, size (addr differs), shndx
    assert o[11] == g[11]                        # mmap_length
    assert o[-11:] == g[-11:]                    # VBE mode 3 and the framebuffer: the EGA text console
    for key in ("cmdline", "modcmd", "mmap"):
        assert ours[key] == grub[key], key
    assert ours["mods"][:8] == grub["mods"][:8]  # module start and end: the page after the kernel
    assert grub["loader"].startswith(b"GRUB 2.06") and ours["loader"].startswith(b"unikernel_sim")


def test_info_shows_a_multiboot1_header(capfd):
    from unikernel_sim.cli import main

    assert main(["info", str(DATA / "probe1.elf")]) == 0
    out = capfd.readouterr().out
    assert "multiboot (version 1) header: offset 0x1000, flags 0x00000003 (page-align modules, memory " \
           "information), checksum valid" in out


# --- CPU models -------------------------------------------------------------------------------
@pytest.mark.parametrize("model,recording", [("qemu64", "cpuid_qemu-7.2_qemu64.txt"),
                                             ("haswell", "cpuid_qemu-7.2_Haswell.txt")])
def test_cpu_models_answer_cpuid_as_qemu_did(model, recording):
    """The CPUID probe under --cpu MODEL prints what it printed under QEMU's -cpu MODEL."""
    result = boot(str(DATA / "probe_cpuid.elf"), cpu=model, max_instructions=10_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    expected = [line for line in (DATA / recording).read_text().splitlines() if line.startswith("cpuid ")]
    assert result.serial.splitlines() == expected


def test_the_default_model_and_qemu64_show_the_apic():
    def leaf1_edx(**options) -> int:
        serial = boot(str(DATA / "probe_cpuid.elf"), max_instructions=10_000_000, **options).serial
        line = next(line for line in serial.splitlines() if line.startswith("cpuid 00000001 00000000"))
        return int(line.split()[-1], 16)

    apic = 1 << 9
    assert leaf1_edx(cpu="qemu64") & apic and leaf1_edx() & apic


# --- PCI configuration space -------------------------------------------------------------
def test_pci_bus_0_reads_as_qemus_pc_did():
    """probe_pci enumerates bus 0 through 0xCF8/0xCFC (dwords, words, BAR sizing with all
    ones and restore, an absent function) and prints the same lines as under QEMU 7.2."""
    result = boot(str(DATA / "probe_pci.elf"), max_instructions=20_000_000)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    recorded = [line for line in (DATA / "pci_qemu-7.2_pc_net-none.txt").read_text().splitlines()
                if line and not line.startswith("#")]
    assert result.serial.splitlines() == recorded
    assert "pci 02.0 11111234" in result.serial                 # std VGA, BAR0 at 0xFD000000


def test_0xcf9_resets_and_a_dword_at_0xcf8_does_not(make_guest):
    latch_only = "mov dx, 0xcf8\nmov eax, 0x80001000\nout dx, eax\nin eax, dx\nmov dx, 0x3f8\nout dx, al\n" \
                 "mov al, 0\nout 0xf4, al"
    result = boot(make_guest(latch_only))
    assert result.stop.reason.value == "guest-exit" and result.serial_bytes == b"\x00"   # latch low byte
    reset = boot(make_guest("mov dx, 0xcf9\nmov al, 6\nout dx, al\nhlt"))
    assert reset.stop.reason.value == "reset" and "0xCF9" in reset.stop.summary
