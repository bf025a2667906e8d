"""arch.py against the Intel SDM's own numbers (written here from the manual,
not read back from arch.py)."""
from __future__ import annotations

from unikernel_sim.arch import (
    CR0, CR4, EFER, MSR, PTE, RFLAGS, PageFaultError, Vector, flag_names, has_error_code, is_canonical, is_fault,
    short_name, vector_name,
)
from unikernel_sim.diagnostics import decode


def test_vectors_and_error_codes_follow_table_6_1():
    assert (Vector.DE, Vector.UD, Vector.DF, Vector.GP, Vector.PF, Vector.MF, Vector.XM) == (0, 6, 8, 13, 14, 16, 19)
    with_error_code = {8, 10, 11, 12, 13, 14, 17, 21}
    assert {v for v in range(32) if has_error_code(v)} == with_error_code
    assert is_fault(14) and not is_fault(3) and not is_fault(8)     # #BP is a trap, #DF an abort
    assert short_name(14) == "#PF" and vector_name(13) == "#GP (general protection)"
    assert short_name(0x80) == "INT 0x80" and vector_name(0x30) == "vector 0x30"


def test_register_bits_follow_the_sdm():
    assert (CR0.PE, CR0.WP, CR0.PG) == (1, 0x10000, 0x80000000)
    assert (CR4.PAE, CR4.OSFXSR, CR4.OSXSAVE) == (0x20, 0x200, 0x40000)
    assert (EFER.SCE, EFER.LME, EFER.LMA, EFER.NXE) == (1, 0x100, 0x400, 0x800)
    assert (RFLAGS.TF, RFLAGS.IF, RFLAGS.RF, RFLAGS.VM) == (0x100, 0x200, 0x10000, 0x20000)
    assert (PageFaultError.P, PageFaultError.W, PageFaultError.U, PageFaultError.I) == (1, 2, 4, 16)
    assert (PTE.P, PTE.RW, PTE.US, PTE.PS, PTE.NX) == (1, 2, 4, 0x80, 1 << 63)
    assert (MSR.EFER, MSR.LSTAR, MSR.SYSENTER_CS, MSR.TSC_AUX) == (0xC0000080, 0xC0000082, 0x174, 0xC0000103)


def test_complement_of_a_flag_keeps_the_bits_the_class_does_not_name():
    """Plain IntFlag would give ~RFLAGS.RF == 0x3effff and clear bit 40 below."""
    value = (1 << 40) | (1 << 3) | RFLAGS.RF | RFLAGS.IF
    assert value & ~RFLAGS.RF == (1 << 40) | (1 << 3) | 0x200
    assert 0xFFFF_FFFF & ~(RFLAGS.TF | RFLAGS.NT) == 0xFFFF_BEFF
    assert (1 << 64) - 1 & ~PTE.NX == (1 << 63) - 1


def test_flag_names_and_decoders():
    assert flag_names(0x80000011, CR0) == ["PE", "ET", "PG"]
    assert decode.rflags(0x3246) == ["PF", "ZF", "IF", "IOPL=3"]        # bit 1 is reserved, not named
    assert decode.page_fault_error(0x13) == "protection violation, write, supervisor mode, instruction fetch"
    assert decode.selector_error(0x40 * 8 + 2 + 1) == "IDT entry 0x40 (vector 0x40), external event"


def test_canonical_addresses():
    assert is_canonical(0x0000_7FFF_FFFF_FFFF) and is_canonical(0xFFFF_8000_0000_0000)
    assert not is_canonical(0x0000_8000_0000_0000) and not is_canonical(0xFFFF_7FFF_FFFF_FFFF)
