"""Tiny guests for tests and experiments: assemble with keystone and wrap the
code in a Multiboot2 image (a flat binary with an address tag, or an ELF32).

Keystone 0.9.2 quirks worked around here (each checked against capstone):
- Intel-syntax ``lgdt``/``sgdt``/``lidt``/``sidt`` in 32-bit mode get a 0x66
  prefix (a 16-bit operand size, so only 24 bits of the base are loaded); the
  AT&T spelling assembles correctly, so ``assemble`` rewrites them.
- far ``jmp sel:off`` is refused in both syntaxes: use ``far_jump()``'s bytes.
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

from unikernel_sim.boot.multiboot2_header import (
    ARCH_I386, HEADER_MAGIC, TAG_ADDRESS, TAG_END, TAG_ENTRY_ADDRESS, TAG_INFORMATION_REQUEST,
)

DEFAULT_LOAD_ADDRESS = 0x100000
CODE_OFFSET = 0x1000
_DESCRIPTOR_TABLE_INSN = re.compile(r"\b(lgdt|sgdt|lidt|sidt)\s+\[\s*(0x[0-9a-fA-F]+|\d+)\s*\]")


def assemble(source: str, address: int, bits: int = 32) -> bytes:
    """Assemble Intel-syntax source (labels allowed) for a CPU in `bits` mode at `address`."""
    from keystone import KS_ARCH_X86, KS_MODE_16, KS_MODE_32, KS_MODE_64, Ks

    mode = {16: KS_MODE_16, 32: KS_MODE_32, 64: KS_MODE_64}[bits]
    lines = [_fix_descriptor_table_insn(line) if bits == 32 else line for line in _split(source)]
    encoding, _ = Ks(KS_ARCH_X86, mode).asm("\n".join(lines), address)
    if not encoding and any(line.strip() and not line.strip().endswith(":") for line in lines):
        # keystone answers some syntax it cannot parse (`mov dword [x], 1`) with nothing at all
        raise ValueError(f"keystone assembled nothing from: {lines[0].strip()!r} ...")
    return bytes(encoding or b"")


def _fix_descriptor_table_insn(line: str) -> str:
    match = _DESCRIPTOR_TABLE_INSN.fullmatch(line)
    if not match:
        return line
    opcode = {"lgdt": 0x15, "sgdt": 0x05, "lidt": 0x1D, "sidt": 0x0D}[match.group(1)]
    encoded = bytes([0x0F, 0x01, opcode]) + struct.pack("<I", int(match.group(2), 0))
    return ".byte " + ", ".join(f"{b:#x}" for b in encoded)


def _split(source: str) -> list[str]:
    lines = []
    for raw in source.splitlines():
        code = raw.split("#", 1)[0].strip()
        lines.extend(part.strip() for part in code.split(";") if part.strip())
    return lines


def far_jump(selector: int, offset: int, bits: int = 32) -> bytes:
    """``jmp far selector:offset`` (opcode EA; ptr16:32 in 32-bit code)."""
    if bits == 16:
        return b"\xea" + struct.pack("<HH", offset, selector)
    return b"\xea" + struct.pack("<IH", offset, selector)


def multiboot2_header(tags: list[bytes], *, architecture: int = ARCH_I386,
                      checksum_delta: int = 0) -> bytes:
    """A header with the given tag bodies (each already 8-byte padded) and an end tag."""
    body = b"".join(tags) + struct.pack("<HHI", TAG_END, 0, 8)
    length = 16 + len(body)
    checksum = (-(HEADER_MAGIC + architecture + length) + checksum_delta) & 0xFFFFFFFF
    return struct.pack("<IIII", HEADER_MAGIC, architecture, length, checksum) + body


def header_tag(tag_type: int, body: bytes, flags: int = 0) -> bytes:
    data = struct.pack("<HHI", tag_type, flags, 8 + len(body)) + body
    return data + b"\0" * (-len(data) % 8)


def information_request(types: list[int], optional: bool = False) -> bytes:
    return header_tag(TAG_INFORMATION_REQUEST, struct.pack(f"<{len(types)}I", *types), int(optional))


def flat_image(code: bytes, *, load_address: int = DEFAULT_LOAD_ADDRESS, bss: int = 0,
               extra_tags: list[bytes] = ()) -> bytes:
    """A flat binary: [Multiboot2 header with address + entry tags][padding][code].

    The code starts at load_address + 0x1000 (file offset 0x1000)."""
    code_offset = CODE_OFFSET
    entry = load_address + code_offset
    end = load_address + code_offset + len(code)
    tags = [
        header_tag(TAG_ADDRESS, struct.pack("<IIII", load_address, load_address, end, end + bss)),
        header_tag(TAG_ENTRY_ADDRESS, struct.pack("<I", entry)),
        *extra_tags,
    ]
    header = multiboot2_header(tags)
    return header + b"\0" * (code_offset - len(header)) + code


def elf32_image(code: bytes, *, load_address: int = DEFAULT_LOAD_ADDRESS, virtual_offset: int = 0,
                extra_tags: list[bytes] = (), machine: int = 3, bss: int = 0) -> bytes:
    """A minimal ELF32 executable with one PT_LOAD: [ELF hdr][PHDR][MB2 header][code at 0x1000].

    virtual_offset > 0 makes a higher-half image: p_vaddr = p_paddr + offset and
    e_entry virtual, as a kernel linked at 0xC0100000 with AT() LMAs."""
    header = multiboot2_header(list(extra_tags))
    ehdr_size, phdr_size = 52, 32
    mb_offset = 0x58                                   # 8-byte aligned, after the 52 + 32 header bytes
    code_offset = CODE_OFFSET
    file_size = code_offset + len(code)
    paddr = load_address
    vaddr = load_address + virtual_offset
    entry = vaddr + code_offset
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + b"\0" * 8
    ehdr = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, entry, ehdr_size, 0, 0,
                               ehdr_size, phdr_size, 1, 0, 0, 0)
    phdr = struct.pack("<IIIIIIII", 1, 0, vaddr, paddr, file_size, file_size + bss, 7, 0x1000)
    image = bytearray(ehdr + phdr)
    image += b"\0" * (mb_offset - len(image)) + header
    image += b"\0" * (code_offset - len(image)) + code
    return bytes(image)


def code_address(load_address: int = DEFAULT_LOAD_ADDRESS) -> int:
    """Where flat_image() and elf32_image() put the code (physical address)."""
    return load_address + CODE_OFFSET


# --- COM1 snippets shared by tests and benchmarks (32-bit, Intel syntax) ---------------
WAIT_FOR_BYTE = """
    mov dx, 0x3fd
wait_rx: in al, dx
    test al, 1
    jz wait_rx
    mov dx, 0x3f8
    in al, dx
"""
"""Poll LSR until a byte was received and read it into AL."""


def serial_flood(lines: int, line_bytes: int = 64, first_char: int = 0x41) -> str:
    """Print lines of line_bytes (a newline last) the way a polling driver does: LSR
    until THRE before every THR write; then exit through the debug port. Line n
    holds first_char + (count & 0x1f) for count from line_bytes - 1 down to 1."""
    return f"""
        mov ebx, {lines}
    next_line:
        mov ecx, {line_bytes - 1}
    next_byte:
        mov dx, 0x3fd
    wait_thre:
        in al, dx
        test al, 0x20
        jz wait_thre
        mov dx, 0x3f8
        mov al, cl
        and al, 0x1f
        add al, {first_char}
        out dx, al
        dec ecx
        jnz next_byte
        mov dx, 0x3f8
        mov al, 10
        out dx, al
        dec ebx
        jnz next_line
        mov al, 0
        out 0xf4, al
    """


def serial_flood_output(lines: int, line_bytes: int = 64, first_char: int = 0x41) -> bytes:
    """What serial_flood prints (computed here, not by the guest)."""
    line = bytes(first_char + (count & 0x1F) for count in range(line_bytes - 1, 0, -1)) + b"\n"
    return line * lines


# A pytest file of two tests calling strlen from the plugin's booted snapshot: what a
# session-wide pytest option (--unisim-profile, --unisim-coverage) must see as two calls.
TWO_STRLEN_CALLS = ("def test_a(unisim_machine, unisim_scratch):\n"
                    "    assert unisim_machine.call('strlen', unisim_scratch.put_c_string('hello')) == 5\n"
                    "def test_b(unisim_machine, unisim_scratch):\n"
                    "    assert unisim_machine.call('strlen', unisim_scratch.put_c_string('hi there')) == 8\n")


def run_pytest(test_file: Path, *options: str) -> subprocess.CompletedProcess:
    """pytest on test_file in a child process from its folder: no cache, no xdist, no
    bytecode written; output captured as text."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           str(test_file), *options], capture_output=True, text=True, cwd=test_file.parent,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=300)
