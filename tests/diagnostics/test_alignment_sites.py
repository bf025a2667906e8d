"""The alignment guard's site finder without the capstone package: capstone's C library
in lite mode (cpu/x86_lite_decoder.py) and the memory operand read from its text,
against the capstone package itself in detail mode (operands as structures) as the
oracle, on the firmware and on keystone-assembled addressing modes."""
from __future__ import annotations

import pytest
from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs
from keystone import KS_ARCH_X86, KS_MODE_32, KS_MODE_64, Ks
from unicorn import x86_const as x86

from unikernel_sim.cpu import alignment_guard
from unikernel_sim.cpu.alignment_guard import (
    _SEGMENT_BASES, UNALIGNED_OK, Site, find_sites, operand_address, requires_alignment,
)
from unikernel_sim.cpu.x86_lite_decoder import LiteDecoder

ADDRESS = 0x200000

FORMS_64 = [
    "movaps xmm0, [rax]", "movaps xmm1, [rax + rbx*4 + 0x10]", "movaps xmm2, [rip + 0x100]",
    "movaps [rsp - 0x20], xmm3", "movdqa xmm4, fs:[rax + 8]", "movdqa xmm5, gs:[0x10]", "addps xmm0, [rcx]",
    "pxor xmm1, [rdx + 0x30]", "movaps xmm0, [0x1000]", "movaps xmm0, [eax + ecx*2 - 4]", "movaps xmm0, [rbx*8]",
    "movdqa [r12 + r13*2 + 0x7fffffff], xmm1", "mulpd xmm7, [r15 - 0x80000000]", "movntdq [rdi], xmm2",
    "movaps xmm0, [rbp + rsi]", "movups xmm0, [rax]", "movq xmm0, [rax]", "vmovaps xmm0, [rax]",
    "paddd xmm3, [rip - 0x40]", "andps xmm1, [rsp + 0x18]",
]
FORMS_32 = [
    "movaps xmm0, [eax]", "movaps xmm1, [ebx + esi*4 + 0x10]", "movaps xmm2, [0x80001000]",
    "movdqa xmm3, fs:[eax]", "movaps [esp - 0x20], xmm3", "pxor xmm1, [edx*2 + 0x30]", "movups xmm0, [eax]",
]


def detailed_sites(regions, bits: int) -> list[Site]:
    """The oracle: every instruction decoded in detail, its m128 operand as capstone's structure."""
    detailed = Cs(CS_ARCH_X86, CS_MODE_64 if bits == 64 else CS_MODE_32)
    detailed.detail = True
    sites = []
    for start, code, whole in regions:
        found, decoded = [], 0
        for instruction in detailed.disasm(code, start):
            decoded += instruction.size
            index = requires_alignment(instruction)
            if index is not None:
                found.append(_site(instruction, instruction.operands[index], bits))
        if whole and decoded != len(code):
            continue
        sites.extend(found)
    return sites


def _site(instruction, operand, bits: int) -> Site:
    memory = operand.mem

    def unicorn_id(register: int) -> int:
        return 0 if register == 0 else getattr(x86, f"UC_X86_REG_{instruction.reg_name(register).upper()}")

    base_name = instruction.reg_name(memory.base) if memory.base else None
    segment = instruction.reg_name(memory.segment) if memory.segment else None
    mask = (1 << 64) - 1 if bits == 64 and not (base_name or "r").startswith("e") else 0xFFFFFFFF
    fixed = None
    if memory.index == 0 and (memory.base == 0 or base_name == "rip") and segment not in _SEGMENT_BASES:
        fixed = operand_address(instruction, operand, lambda register: 0) & mask
    return Site(instruction.address, f"{instruction.mnemonic} {instruction.op_str}",
                0 if base_name == "rip" else unicorn_id(memory.base), unicorn_id(memory.index),
                _SEGMENT_BASES.get(segment or "", 0), memory.disp, memory.scale, mask, fixed)


def comparable(site: Site) -> tuple:
    """What the C check computes with: the displacement only under the address mask."""
    return (site.address, site.text, site.base_reg, site.index_reg, site.segment_base_reg,
            site.displacement & site.address_mask, site.scale if site.index_reg else 1, site.address_mask,
            site.fixed_operand)


@pytest.mark.parametrize("bits,forms", [(64, FORMS_64), (32, FORMS_32)], ids=["64-bit", "32-bit"])
def test_addressing_modes_read_from_text_as_capstone_detail_reads_them(bits, forms):
    assembler = Ks(KS_ARCH_X86, KS_MODE_64 if bits == 64 else KS_MODE_32)
    regions = [(ADDRESS + 0x100 * i, bytes(assembler.asm(form, ADDRESS + 0x100 * i)[0]), True)
               for i, form in enumerate(forms)]
    expected = detailed_sites(regions, bits)
    assert expected, "the oracle found no site"
    assert [comparable(s) for s in find_sites(regions, bits)] == [comparable(s) for s in expected]
    skipped = {form.split()[0] for form in forms} & (UNALIGNED_OK | {"vmovaps"})
    assert skipped                                          # the corpus has forms that must not be sites


def test_the_firmware_sites_are_capstone_details(firmware_elf):
    from unikernel_sim.machine import Machine

    machine = Machine()
    machine.load(firmware_elf)
    kernel = machine.kernel
    regions, bits = alignment_guard.code_regions(kernel.elf, machine.symbols, kernel.entry, machine.ram.read,
                                                 kernel.layout.image_end)
    ours = find_sites(regions, bits)
    assert len(ours) > 10
    assert [comparable(s) for s in ours] == [comparable(s) for s in detailed_sites(regions, bits)]


@pytest.mark.parametrize("bits", [32, 64])
def test_the_lite_decoder_is_capstones_own(firmware_elf, bits):
    """The C library alone decodes the firmware's bytes as the package's disasm_lite does."""
    data = open(firmware_elf, "rb").read()[0x1000:0x21000]
    decoder = LiteDecoder(bits)
    assert not decoder.uses_package
    package = Cs(CS_ARCH_X86, CS_MODE_64 if bits == 64 else CS_MODE_32)
    assert list(decoder.disasm_lite(data, 0x100000)) == list(package.disasm_lite(data, 0x100000))


def test_find_keeps_what_the_package_would_keep(firmware_elf):
    """find() reads the decoded array as one buffer: for every function of the firmware,
    the same instructions with the needle in their operand text as the package's
    disasm_lite, and the same number of bytes decoded."""
    from unikernel_sim.machine import Machine

    machine = Machine()
    machine.load(firmware_elf)
    kernel = machine.kernel
    regions, bits = alignment_guard.code_regions(kernel.elf, machine.symbols, kernel.entry, machine.ram.read,
                                                 kernel.layout.image_end)
    package, ours = Cs(CS_ARCH_X86, CS_MODE_64), LiteDecoder(bits)
    kept = 0
    for start, code, _whole in regions:
        expected = list(package.disasm_lite(code, start))
        decoded, found = ours.find(code, start, b"xmmword ptr")
        assert decoded == sum(insn[1] for insn in expected)
        assert found == [insn for insn in expected if "xmmword ptr" in insn[3]]
        kept += len(found)
    assert kept > 10                                        # the firmware has SSE code


def _firmware_regions(firmware_elf):
    from unikernel_sim.machine import Machine

    machine = Machine()
    machine.load(firmware_elf)
    kernel = machine.kernel
    return alignment_guard.code_regions(kernel.elf, machine.symbols, kernel.entry, machine.ram.read,
                                        kernel.layout.image_end)


@pytest.mark.parametrize("capacity", [256, 1])
def test_find_all_in_one_c_call_keeps_what_the_package_would_keep(firmware_elf, monkeypatch, capacity):
    """cpu/_lite_scan.c decodes every region in one call and copies out the matches: the
    package's disasm_lite over each region is the oracle, for all the firmware's
    functions at once, a region that is no code from its first byte, one that stops
    being code half-way, and a match buffer too small (it asks again with room)."""
    from unikernel_sim.cpu import x86_lite_decoder

    monkeypatch.setattr(x86_lite_decoder, "FIRST_MATCH_CAPACITY", capacity)
    regions, bits = _firmware_regions(firmware_elf)
    movaps = b"\x0f\x28\x04\x24"                                    # movaps xmm0, [rsp]
    regions = [(start, code) for start, code, _whole in regions]
    regions += [(0x5000, b"\xff\xff\xff\xff"), (0x6000, movaps + b"\x06" + movaps), (0x7000, b"")]
    package, ours = Cs(CS_ARCH_X86, CS_MODE_64), LiteDecoder(bits)
    assert not ours.uses_package
    found = ours.find_all(regions, b"xmmword ptr")
    expected = []
    for start, code in regions:
        instructions = list(package.disasm_lite(code, start))
        expected.append((sum(insn[1] for insn in instructions),
                         [insn for insn in instructions if "xmmword ptr" in insn[3]]))
    assert found == expected
    assert sum(len(matches) for _decoded, matches in found) > 10
    assert found[-3:] == [(0, []), (4, [(0x6000, 4, "movaps", "xmm0, xmmword ptr [rsp]")]), (0, [])]


def test_the_background_search_answers_as_the_search_in_turn(firmware_elf):
    """SiteSearch on its helper thread (the loader's path) and find_sites give the same
    sites in the same order; what the search raises reaches the caller of result()."""
    from unikernel_sim.cpu import x86_lite_decoder

    regions, bits = _firmware_regions(firmware_elf)
    background = alignment_guard.SiteSearch(regions, bits)
    assert background._thread is not None                          # it did run on a thread
    assert background.result() == find_sites(regions, bits)

    def broken_run(self):
        raise MemoryError("no room for the decoded array")

    original = x86_lite_decoder.FindAll.run
    x86_lite_decoder.FindAll.run = broken_run
    try:
        failing = alignment_guard.SiteSearch(regions, bits)
        with pytest.raises(MemoryError, match="no room"):
            failing.result()
    finally:
        x86_lite_decoder.FindAll.run = original


def test_a_machine_loaded_with_the_guard_off_searches_nothing(firmware_elf):
    from unikernel_sim.machine import Machine

    machine = Machine(alignment="off")
    machine.load(firmware_elf)
    assert machine.alignment.sites == {}
    on = Machine()
    on.load(firmware_elf)
    assert len(on.alignment.sites) > 10
