"""CPUID as a guest sees it, checked against the SDM (vol. 2A, CPUID, tables 3-10
and 3-11): leaf 1 advertises the local APIC while IA32_APIC_BASE enables it (and
not after a global disable, as QEMU answers), and everything a 64-bit kernel
checks before entering long mode stays set."""
from __future__ import annotations

import struct

from unikernel_sim.run import boot

RESULTS = 0x200000
CR4_OSXSAVE = 1 << 18

EDX_FPU, EDX_TSC, EDX_MSR, EDX_PAE, EDX_CX8, EDX_APIC = 0, 4, 5, 6, 8, 9
EDX_PGE, EDX_CMOV, EDX_FXSR, EDX_SSE, EDX_SSE2 = 13, 15, 24, 25, 26
ECX_SSE3, ECX_SSSE3, ECX_SSE41, ECX_SSE42, ECX_POPCNT, ECX_XSAVE, ECX_OSXSAVE = 0, 9, 19, 20, 23, 26, 27
ECX_RDRAND = 30
EXT_EDX_LM = 29

# Leaf 1 with CR4.OSXSAVE clear, then set; leaf 0 and 0x80000001 around it.
PROBE = f"""
    mov eax, 1
    cpuid
    mov [{RESULTS:#x}], ecx
    mov [{RESULTS + 4:#x}], edx
    mov eax, cr4
    or eax, {CR4_OSXSAVE:#x}
    mov cr4, eax
    mov eax, 1
    cpuid
    mov [{RESULTS + 8:#x}], ecx
    mov [{RESULTS + 12:#x}], edx
    xor eax, eax
    cpuid
    mov [{RESULTS + 16:#x}], ebx
    mov [{RESULTS + 20:#x}], edx
    mov [{RESULTS + 24:#x}], ecx
    mov eax, 0x80000001
    cpuid
    mov [{RESULTS + 28:#x}], edx
    hlt
"""


def bit(value: int, number: int) -> bool:
    return bool(value >> number & 1)


def test_leaf1_has_the_apic_and_osxsave_follows_cr4(make_guest):
    result = boot(make_guest(PROBE))
    assert result.stop.reason.value == "halt"
    ecx_off, edx_off, ecx_on, edx_on, *vendor_words, ext_edx = struct.unpack(
        "<8I", result.machine.ram.read(RESULTS, 32))

    assert bit(edx_off, EDX_APIC) and bit(edx_on, EDX_APIC)
    for feature in (EDX_FPU, EDX_TSC, EDX_MSR, EDX_PAE, EDX_CX8, EDX_PGE, EDX_CMOV, EDX_FXSR, EDX_SSE,
                    EDX_SSE2):
        assert bit(edx_off, feature), f"leaf 1 EDX bit {feature} missing"
    for feature in (ECX_SSE3, ECX_SSSE3, ECX_SSE41, ECX_SSE42, ECX_POPCNT):   # x86-64-v2
        assert bit(ecx_off, feature), f"leaf 1 ECX bit {feature} missing"

    assert bit(ecx_off, ECX_XSAVE)
    assert not bit(ecx_off, ECX_OSXSAVE)          # CR4.OSXSAVE clear at hand-off
    assert bit(ecx_on, ECX_OSXSAVE)               # "the OS has set CR4.OSXSAVE"
    assert ecx_on & ~(1 << ECX_OSXSAVE) == ecx_off and edx_on == edx_off

    assert struct.pack("<3I", *vendor_words) == b"GenuineIntel"     # other leaves are QEMU's
    assert bit(ext_edx, EXT_EDX_LM)


def test_rdrand_is_advertised_only_outside_deterministic_mode(make_guest):
    """RDRAND's values come from the host; deterministic mode hides it so that a kernel
    that checks CPUID seeds itself from something that replays."""
    path = make_guest(PROBE)
    fast = struct.unpack("<I", boot(path).machine.ram.read(RESULTS, 4))[0]
    deterministic = struct.unpack("<I", boot(path, deterministic=True).machine.ram.read(RESULTS, 4))[0]
    assert bit(fast, ECX_RDRAND)
    assert not bit(deterministic, ECX_RDRAND)
    assert deterministic == fast & ~(1 << ECX_RDRAND)


def test_the_apic_bit_follows_the_global_enable_in_ia32_apic_base(make_guest):
    """SDM vol. 3A 11.4.3: clearing IA32_APIC_BASE bit 11 disables the local APIC;
    QEMU then reports CPUID.01H:EDX.APIC = 0, and so does unisim."""
    result = boot(make_guest(f"""
        mov ecx, 0x1b
        rdmsr
        and eax, 0xfffff7ff
        wrmsr
        mov eax, 1
        cpuid
        mov [{RESULTS:#x}], edx
        hlt
    """))
    assert not bit(result.machine.ram.u32(RESULTS), EDX_APIC)
