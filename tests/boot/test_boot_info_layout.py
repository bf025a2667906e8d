"""The boot information, read back from guest RAM by a parser written here
from the Multiboot2 specification (section 3.6) and GRUB's multiboot2.h
structure layouts - independent of the builder under test."""
from __future__ import annotations

import struct
from pathlib import Path

from elftools.elf.elffile import ELFFile

from unikernel_sim.run import boot

MIB = 1 << 20


def parse_mbi(read, address: int) -> dict:
    total_size, reserved = struct.unpack("<II", read(address, 8))
    assert reserved == 0
    blob = read(address, total_size)
    tags: dict[int, list[bytes]] = {}
    order = []
    offset = 8
    while True:
        assert offset % 8 == 0, "every tag starts 8-byte aligned"
        tag_type, size = struct.unpack_from("<II", blob, offset)
        assert size >= 8 and offset + size <= total_size
        if tag_type == 0:
            assert size == 8 and offset + 8 == total_size, "end tag closes the structure"
            break
        tags.setdefault(tag_type, []).append(blob[offset:offset + size])
        order.append(tag_type)
        offset = (offset + size + 7) & ~7
    return {"total_size": total_size, "tags": tags, "order": order}


def cstring(data: bytes) -> str:
    assert data.endswith(b"\0")
    return data[:-1].decode()


def test_boot_information_structure(firmware_elf, tmp_path):
    module = tmp_path / "m.bin"
    module.write_bytes(b"module-bytes")
    result = boot(firmware_elf, cmdline="a b c", modules=[f"{module}=tokenizer v1"], memory_mb=128)
    machine = result.machine
    mbi = parse_mbi(machine.ram.read, machine.kernel.boot_info_address)
    tags = mbi["tags"]

    assert cstring(tags[1][0][8:]) == "a b c"
    assert cstring(tags[2][0][8:]).startswith("unikernel_sim")

    mod_start, mod_end = struct.unpack_from("<II", tags[3][0], 8)
    assert cstring(tags[3][0][16:]) == "tokenizer v1"
    assert machine.ram.read(mod_start, mod_end - mod_start) == b"module-bytes"

    mem_lower, mem_upper = struct.unpack_from("<II", tags[4][0], 8)
    assert (mem_lower, mem_upper) == (639, 127 * 1024 - 128)       # up to SeaBIOS's top 128 KiB

    mmap = tags[6][0]
    entry_size, entry_version = struct.unpack_from("<II", mmap, 8)
    assert (entry_size, entry_version) == (24, 0)
    entries = [struct.unpack_from("<QQII", mmap, off) for off in range(16, len(mmap), entry_size)]
    assert [(b, n, t) for b, n, t, _ in entries] == [
        (0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2), (MIB, 127 * MIB - 0x20000, 1),
        (128 * MIB - 0x20000, 0x20000, 2), (0xFFFC0000, 0x40000, 2), (0xFD_0000_0000, 0x3_0000_0000, 2)]

    # Framebuffer info: the 80x25 EGA text console (type 2) at 0xB8000.
    addr, pitch, width, height, bpp, fb_type = struct.unpack_from("<QIIIBB", tags[8][0], 8)
    assert (addr, pitch, width, height, bpp, fb_type) == (0xB8000, 160, 80, 25, 16, 2)

    (load_base,) = struct.unpack_from("<I", tags[21][0], 8)
    assert load_base == 0x100000

    # ELF sections: the kernel's own section headers, non-allocated ones loaded into RAM.
    num, entsize, shndx = struct.unpack_from("<III", tags[9][0], 8)
    with open(firmware_elf, "rb") as handle:
        elf = ELFFile(handle)
        assert (num, entsize, shndx) == (elf.num_sections(), elf["e_shentsize"], elf["e_shstrndx"])
        headers = tags[9][0][20:]
        assert len(headers) == num * entsize
        symtab_index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".symtab")
        sh_addr, = struct.unpack_from("<Q", headers, symtab_index * entsize + 16)
        symtab = elf.get_section(symtab_index)
        assert sh_addr != 0
        assert machine.ram.read(sh_addr, symtab["sh_size"]) == symtab.data()

    # GRUB 2.06's order and set on QEMU (tests/data/grub_reference: no VBE tag 7 for a text console).
    assert mbi["order"] == [21, 1, 2, 10, 3, 6, 9, 4, 5, 8, 14]      # this test boots with a module
    assert mbi["total_size"] == len(machine.kernel.boot_info)


def test_boot_information_lies_in_available_memory_above_kernel(firmware_elf):
    result = boot(firmware_elf)
    address = result.machine.kernel.boot_info_address
    kernel_end = max(s.paddr + s.memsz for s in result.machine.kernel.elf.segments)
    assert address % 4096 == 0 and address >= kernel_end
    assert Path(firmware_elf).exists()
