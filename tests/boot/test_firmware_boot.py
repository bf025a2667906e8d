"""The reference firmware's own printout proves what the loader handed over."""
from __future__ import annotations

import re
import zlib

import pytest

from unikernel_sim.run import boot
from unikernel_sim.stops import StopReason

MIB = 1 << 20
EXIT_NO_HEAP = 7          # firmware/kernel_lib/cpu/debug_exit_codes.h


def parse_printout(text: str) -> dict:
    out = {"mmap": [], "modules": []}
    for line in text.splitlines():
        if m := re.fullmatch(r"mmap: base=(0x[0-9a-f]+) length=(0x[0-9a-f]+) type=(\d+)", line):
            out["mmap"].append((int(m[1], 16), int(m[2], 16), int(m[3])))
        elif m := re.fullmatch(r"module: start=(0x[0-9a-f]+) end=(0x[0-9a-f]+) crc32=(0x[0-9a-f]+) string=(.*)", line):
            out["modules"].append((int(m[1], 16), int(m[2], 16), int(m[3], 16), m[4]))
        elif line.startswith("cmdline: "):
            out["cmdline"] = line[len("cmdline: "):]
        elif line.startswith("boot loader: "):
            out["loader"] = line[len("boot loader: "):]
        elif m := re.fullmatch(r"meminfo: lower=(\d+) upper=(\d+)", line):
            out["meminfo"] = (int(m[1]), int(m[2]))
    return out


@pytest.mark.parametrize("memory_mb", [32, 128, 512])
def test_memory_map_equals_configured_ram(firmware_elf, memory_mb):
    result = boot(firmware_elf, memory_mb=memory_mb, deterministic=True)
    assert result.stop.reason == StopReason.GUEST_EXIT
    # The 64 MiB heap needs more than 32 MiB: the firmware says so and refuses to start.
    assert result.exit_code == (EXIT_NO_HEAP if memory_mb == 32 else 0)
    info = parse_printout(result.serial)
    available = [(base, length) for base, length, kind in info["mmap"] if kind == 1]
    # As GRUB reports SeaBIOS's map on QEMU (tests/data/grub_reference): 639 KiB conventional
    # memory, extended memory from 1 MiB up to the 128 KiB SeaBIOS keeps at the end of RAM.
    top_reserved = 128 * 1024
    assert available == [(0, 0x9FC00), (MIB, memory_mb * MIB - MIB - top_reserved)]
    assert sum(length for _, length in available) == memory_mb * MIB - MIB - top_reserved + 0x9FC00
    regions = sorted(info["mmap"])
    for (base, length, _), (next_base, _, _) in zip(regions, regions[1:]):
        assert base + length <= next_base, "memory map entries overlap"
    assert info["meminfo"] == (639, memory_mb * 1024 - 1024 - 128)


def test_command_line_and_loader_name(firmware_elf):
    cmdline = "console=ttyS0 steps=64 prompt=Once upon a time ünïcode"
    result = boot(firmware_elf, cmdline=cmdline)
    info = parse_printout(result.serial)
    assert info["cmdline"] == cmdline
    assert info["loader"] == "unikernel_sim 0.1.0"


def test_modules_bytes_strings_and_placement(firmware_elf, tmp_path):
    payloads = {
        "weights.bin": bytes(range(256)) * 1000 + b"tail",
        "tok.bin": b"tokenizer",
        "empty.bin": b"",
    }
    specs = []
    for name, data in payloads.items():
        (tmp_path / name).write_bytes(data)
        specs.append(f"{tmp_path / name}={name.split('.')[0]} extra=words")
    result = boot(firmware_elf, modules=specs)
    modules = parse_printout(result.serial)["modules"]
    assert len(modules) == 3
    kernel_end = max(seg.paddr + seg.memsz for seg in result.machine.kernel.elf.segments)
    previous_end = kernel_end
    for (start, end, crc, string), (name, data) in zip(modules, payloads.items()):
        assert end - start == len(data)
        assert crc == zlib.crc32(data)
        assert string == f"{name.split('.')[0]} extra=words"
        assert start % 4096 == 0, "modules are page-aligned"
        assert start >= previous_end, "modules lie above the kernel without overlap"
        previous_end = max(end, start + 1)


def test_cli_boot_streams_serial_and_exits_zero(firmware_elf, capfd):
    from unikernel_sim.cli import main

    code = main(["boot", firmware_elf, "--cmdline", "from the cli"])
    out, err = capfd.readouterr()
    assert code == 0
    assert "cmdline: from the cli\n" in out
    assert out.startswith("unikernel_sim reference firmware\n")
    assert err == ""


def test_heap_refusal_is_explained(firmware_elf):
    result = boot(firmware_elf, memory_mb=32)
    assert ("heap: no available memory region holds 64 MiB above the kernel and modules "
            "inside the 32 MiB identity map\n") in result.serial


@pytest.mark.parametrize("memory_mb,cmdline,mapped_mb", [(1024, "job=idle", 1024), (1024, "job=idle mem=600", 600),
                                                          (3072, "job=idle", 3072), (130, "job=idle", 130)])
def test_the_identity_map_covers_ram_and_nothing_past_it(firmware_elf, memory_mb, cmdline, mapped_mb):
    """Read back the page tables as the SDM lays them out (vol. 3A, 4.5: CR3 -> PML4[0] ->
    PDPT[j] -> PD entries with PS=1, 2 MiB each): present exactly up to the end of RAM (or
    mem=, rounded up to 2 MiB)."""
    import struct

    from unicorn.x86_const import UC_X86_REG_CR3

    from unikernel_sim.pytest_plugin import boot_to_ready

    machine = boot_to_ready(firmware_elf, cmdline=cmdline, memory_mb=memory_mb).fresh()
    cr3 = machine.uc.reg_read(UC_X86_REG_CR3) & ~0xFFF
    pml4 = struct.unpack_from("<Q", machine.ram.read(cr3, 8))[0]
    present = []
    for j in range(4):
        pdpte = struct.unpack_from("<Q", machine.ram.read((pml4 & ~0xFFF) + 8 * j, 8))[0]
        for entry in struct.unpack("<512Q", machine.ram.read(pdpte & 0x000FFFFFFFFFF000, 4096)):
            present.append(bool(entry & 1))
            if entry & 1:
                assert entry & 0x80 and (entry & 0x000FFFFFFFE00000) == (len(present) - 1) << 21
    pages = -(-mapped_mb // 2)
    assert present == [True] * pages + [False] * (2048 - pages)
