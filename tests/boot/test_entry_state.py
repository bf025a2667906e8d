"""The machine state at the kernel's first instruction, pinned byte for byte.

Oracle: Multiboot2 specification section 3.3 (I386 machine state) and the
Intel SDM vol. 3A section 3.4.5 segment-descriptor layout."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

import guestkit
from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.run import boot
from unikernel_sim.stops import StopReason

DUMP = 0x200000
STORE_STATE = f"""
    mov dword ptr [{DUMP:#x}], eax
    mov dword ptr [{DUMP + 4:#x}], ebx
    mov eax, cr0
    mov dword ptr [{DUMP + 8:#x}], eax
    mov eax, cr4
    mov dword ptr [{DUMP + 12:#x}], eax
    mov ecx, 0xC0000080
    rdmsr
    mov dword ptr [{DUMP + 16:#x}], eax
    mov dword ptr [{DUMP + 20:#x}], edx
    pushfd
    pop eax
    mov dword ptr [{DUMP + 24:#x}], eax
    mov word ptr [{DUMP + 28:#x}], cs
    mov word ptr [{DUMP + 30:#x}], ds
    mov word ptr [{DUMP + 32:#x}], es
    mov word ptr [{DUMP + 34:#x}], ss
    mov word ptr [{DUMP + 36:#x}], fs
    mov word ptr [{DUMP + 38:#x}], gs
    sgdt [{DUMP + 40:#x}]
    mov al, 0
    out 0xf4, al
"""


def decode_descriptor(raw: int) -> dict:
    """SDM vol. 3A figure 3-8."""
    limit = (raw & 0xFFFF) | ((raw >> 32) & 0xF0000)
    granularity = (raw >> 55) & 1
    return {
        "base": ((raw >> 16) & 0xFFFFFF) | (((raw >> 56) & 0xFF) << 24),
        "limit_bytes": ((limit << 12) | 0xFFF) + 1 if granularity else limit + 1,
        "type": (raw >> 40) & 0xF,
        "s": (raw >> 44) & 1,
        "present": (raw >> 47) & 1,
        "long": (raw >> 53) & 1,
        "default_32": (raw >> 54) & 1,
    }


@pytest.mark.parametrize("kind", ["flat", "elf32", "elf32-higher-half"])
def test_entry_state(make_guest, kind):
    options = {"elf": kind != "flat"}
    if kind == "elf32-higher-half":
        options["virtual_offset"] = 0xC0000000
    result = boot(make_guest(STORE_STATE, **options))
    assert result.stop.reason == StopReason.GUEST_EXIT, result.stop.summary
    ram = result.machine.ram
    dump = ram.read(DUMP, 46)
    eax, ebx, cr0, cr4, efer_lo, efer_hi, eflags = struct.unpack_from("<7I", dump)
    cs, ds, es, ss, fs, gs = struct.unpack_from("<6H", dump, 28)
    gdt_limit, gdt_base = struct.unpack_from("<HI", dump, 40)

    assert eax == 0x36D76289
    assert ebx == result.machine.kernel.boot_info_address
    assert ram.u32(ebx) == len(result.machine.kernel.boot_info), "EBX points at the boot information"
    assert ebx % 8 == 0
    assert cr0 == 0x00000011                 # PE set, PG clear (ET is hard-wired to 1)
    assert cr4 == 0
    assert (efer_hi << 32) | efer_lo == 0    # LME/LMA clear
    assert eflags == 0x00000046              # IF and VM clear; ZF and PF as GRUB leaves them
    assert (cs, ds, es, ss, fs, gs) == (0x10, 0x18, 0x18, 0x18, 0x18, 0x18)   # GRUB's selectors

    code = decode_descriptor(ram.u64(gdt_base + cs))
    assert code == {"base": 0, "limit_bytes": 1 << 32, "type": 0xA, "s": 1, "present": 1,
                    "long": 0, "default_32": 1}, "CS: flat 4 GiB 32-bit execute/read"
    for selector in (ds, es, ss, fs, gs):
        data = decode_descriptor(ram.u64(gdt_base + selector))
        assert data["base"] == 0 and data["limit_bytes"] == 1 << 32
        assert data["type"] & 0xA == 0x2 and data["s"] == 1 and data["present"] == 1  # data, writable
    assert gdt_limit >= max(cs, ds) + 7


LONG_MODE_SWITCH = """
    mov dword ptr [0x300000], 0x301003
    mov dword ptr [0x301000], 0x302003
    mov dword ptr [0x302000], 0x83
    mov dword ptr [0x302008], 0x200083
    mov dword ptr [0x303008], 0x0000ffff
    mov dword ptr [0x30300c], 0x00af9a00
    mov word ptr [0x303100], 15
    mov dword ptr [0x303102], 0x303000
    mov eax, 0x300000
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    lgdt [0x303100]
"""
LONG_MODE_CODE = """
    mov r8, 0x1122334455667788
    mov r15, 0x0123456789abcdef
    mov rax, 0xfedcba9876543210
    mov dx, 0xf4
    out dx, al
"""


def test_kernel_enters_long_mode_and_64_bit_registers_stay_readable(make_guest):
    base = guestkit.code_address()
    code32 = guestkit.assemble(LONG_MODE_SWITCH, base)
    long_entry = base + 0x200
    code32 += guestkit.far_jump(0x08, long_entry)
    code = code32.ljust(0x200, b"\x90") + guestkit.assemble(LONG_MODE_CODE, long_entry, bits=64)
    result = boot(make_guest(code))
    assert result.stop.reason == StopReason.GUEST_EXIT, result.stop.summary
    state = result.machine.cpu_state()
    assert state.long_mode
    assert state.gpr["r8"] == 0x1122334455667788
    assert state.gpr["r15"] == 0x0123456789ABCDEF
    assert state.gpr["rax"] == 0xFEDCBA9876543210
    assert long_entry < state.rip <= long_entry + 0x40


# --- against GRUB 2.06 on QEMU ----------------------------------------------------------------
DATA = Path(__file__).resolve().parents[1] / "data" / "grub_reference"
NOT_COMPARED = ("gdt-base", "esp")                 # where GRUB's own memory happened to be


def entry_dumps() -> dict[str, dict[str, str]]:
    """{probe: {field: value}} from entry_state_grub-2.06_qemu-7.2.txt."""
    dumps: dict[str, dict[str, str]] = {}
    current = None
    for line in (DATA / "entry_state_grub-2.06_qemu-7.2.txt").read_text().splitlines():
        if line.startswith("== "):
            current = dumps.setdefault(line[3:], {})
        elif current is not None and line != "end":
            name, _, value = line.partition(" ")
            current[name] = value
    return dumps


@pytest.mark.parametrize("probe", ["probe_entry.elf", "probe1_entry.elf"])
def test_entry_registers_and_gdt_as_grub_leaves_them(probe):
    """probe_entry.c saves every register before touching any (entry_state.S) and prints
    them with the GDT they select from; Multiboot2 and Multiboot 1 alike."""
    grub = entry_dumps()[probe]
    result = boot(str(DATA / probe), cmdline="probe cmdline",
                  modules=[ModuleSpec(str(DATA / "module.txt"), "module-one")], max_instructions=1_000_000)
    assert result.stop.reason == StopReason.GUEST_EXIT, result.stop.summary
    ours = dict(line.partition(" ")[::2] for line in result.serial.splitlines() if line != "end")
    assert {k: v for k, v in ours.items() if k not in NOT_COMPARED} == \
        {k: v for k, v in grub.items() if k not in NOT_COMPARED}


NO_GDT_OF_ITS_OWN = """
    mov dword ptr [0x300000 + 0x21 * 8], 0x00080000 + 0x1000
    mov dword ptr [0x300000 + 0x21 * 8 + 4], 0x00108E00
    mov word ptr [0x301000], 0x7ff
    mov dword ptr [0x301002], 0x300000
    lidt [0x301000]
    int 0x21
    mov al, 0
    out 0xf4, al
"""


def test_an_idt_gate_with_selector_8_faults_under_grubs_gdt(make_guest):
    """A kernel that fills its IDT with selector 0x08 but never loads a GDT of its own
    (a popular tutorial does) triple-faults on its first interrupt under GRUB + QEMU
    (recorded: #GP error 0x8, then #DF) because GRUB's descriptor 1 is null; so here."""
    result = boot(make_guest(NO_GDT_OF_ITS_OWN))
    assert result.stop.reason == StopReason.TRIPLE_FAULT
    assert [(step.vector, step.error_code) for step in result.stop.chain[:2]] == [(0x21, None), (13, 0x8)]
