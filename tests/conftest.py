"""Shared fixtures: the reference firmware build and tiny assembled guests."""
from __future__ import annotations

import pytest

import guestkit


@pytest.fixture(scope="session")
def firmware_elf(unisim_firmware) -> str:
    return unisim_firmware


@pytest.fixture
def make_guest(tmp_path):
    """Write a Multiboot2 image of 32-bit code (Intel syntax) and return its path.

    make_guest(source, elf=False, name="guest.bin", **image_options)"""
    counter = {"n": 0}

    def make(source: str | bytes, *, elf: bool = False, suffix: bytes = b"", **options) -> str:
        load = options.get("load_address", guestkit.DEFAULT_LOAD_ADDRESS)
        code = source if isinstance(source, bytes) else guestkit.assemble(source, guestkit.code_address(load))
        code += suffix
        image = guestkit.elf32_image(code, **options) if elf else guestkit.flat_image(code, **options)
        counter["n"] += 1
        path = tmp_path / f"guest{counter['n']}.{'elf' if elf else 'bin'}"
        path.write_bytes(image)
        return str(path)

    return make
