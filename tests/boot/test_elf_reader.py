"""Our ELF header reader (boot/elf_image.py, struct over the System V ABI layouts)
against pyelftools, the second parser: the same segments, sections and entry for
the reference firmware (ELF64), the GRUB-reference probes (ELF32, built by their
own recipe) and guestkit's higher-half ELF32 images."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_SH_TYPE_BASE

import guestkit
from unikernel_sim.boot.elf_image import read_elf

DATA = Path(__file__).resolve().parents[1] / "data" / "grub_reference"


def reference(data: bytes) -> dict:
    elf = ELFFile(io.BytesIO(data))
    segments = [(index, seg["p_paddr"], seg["p_vaddr"], seg["p_filesz"], seg["p_memsz"], seg["p_flags"])
                for index, seg in enumerate(elf.iter_segments())
                if seg["p_type"] == "PT_LOAD" and seg["p_memsz"]]
    sections = [(sec.name, ENUM_SH_TYPE_BASE.get(sec["sh_type"], sec["sh_type"]), sec["sh_flags"], sec["sh_addr"],
                 sec["sh_offset"], sec["sh_size"], sec["sh_link"]) for sec in elf.iter_sections()]
    return {"class": elf.elfclass, "machine": elf["e_machine"], "type": elf["e_type"], "entry": elf["e_entry"],
            "segments": segments, "sections": sections, "shentsize": elf["e_shentsize"],
            "shstrndx": elf["e_shstrndx"]}


def ours(data: bytes) -> dict:
    image = read_elf(data, "test")
    return {"class": image.elf_class, "machine": image.machine, "type": image.elf_type, "entry": image.entry,
            "segments": [(s.index, s.paddr, s.vaddr, s.filesz, s.memsz, s.flags) for s in image.segments],
            "sections": [(s.name, s.sh_type, s.sh_flags, s.sh_addr, s.sh_offset, s.sh_size, s.sh_link)
                         for s in image.sections],
            "shentsize": image.section_entry_size, "shstrndx": image.shstrndx}


def elf_files() -> list[Path]:
    return sorted(DATA.glob("*.elf"))


@pytest.mark.parametrize("path", elf_files(), ids=lambda path: path.name)
def test_grub_reference_probes_read_as_pyelftools_reads_them(path):
    data = path.read_bytes()
    assert ours(data) == reference(data)


def test_the_firmware_reads_as_pyelftools_reads_it(unisim_firmware):
    data = Path(unisim_firmware).read_bytes()
    assert ours(data) == reference(data)
    assert all(s.data == data[o:o + s.filesz] for s, o in zip(
        read_elf(data, "test").segments,
        [seg["p_offset"] for seg in ELFFile(io.BytesIO(data)).iter_segments()
         if seg["p_type"] == "PT_LOAD" and seg["p_memsz"]]))


@pytest.mark.parametrize("virtual_offset", [0, 0xC0000000])
def test_guestkit_elf32_images_read_as_pyelftools_reads_them(virtual_offset):
    data = guestkit.elf32_image(b"\xf4" * 64, virtual_offset=virtual_offset)
    assert ours(data) == reference(data)
