"""Reaching the Multiboot i386 entry state from a UC_MODE_64 engine.

Multiboot2 section 3.3 (I386 machine state): 32-bit protected mode, paging
off, CS a flat 4 GiB 32-bit code segment, DS/ES/FS/GS/SS flat 4 GiB data
segments, A20 on, EFLAGS.IF and VM clear, EAX = 0x36d76289, EBX = the boot
information's physical address. ESP is undefined; we leave it at the top of the
stub's scratch page so that a kernel that pushes before loading its own stack
does not fault.

What the specification leaves open is as GRUB 2.06 leaves it on QEMU (recorded by
tests/data/grub_reference/probe_entry.c, both Multiboot versions): CS = 0x10 and
the data segments 0x18 in a GDT of [null, null, flat code, flat data (accessed)]
with limit 0x20, EFLAGS 0x46, IDTR limit 0 base 0, TR and LDTR 0. It matters: a
kernel that builds its IDT with selector 0x08 without loading its own GDT finds a
null descriptor there and triple-faults on its first interrupt under GRUB - and
here. Not reproduced: the GDT's address (GRUB's is 0x10B0, unisim's in its stub
page) and ESP (GRUB's 0x7FF00).

Unicorn starts a UC_MODE_64 engine in "paging-less long mode" (CR0.PG=0 but
EFER.LMA=1), and writing CS only stores a selector. The recipe (docs/unicorn-quirks.md, Q0):
turn paging on over an identity map so that the next PG 1->0 transition is a
real one, then let the emulated CPU itself run a stub that loads a GDT,
far-returns into a 32-bit code segment (compatibility mode), clears CR0.PG
(which clears EFER.LMA), clears EFER and CR4 and loads the data segments.
"""
from __future__ import annotations

import struct
from typing import Callable

from unicorn import Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import CR0, CR4, MSR, PTE
from unikernel_sim.records import Record

CODE32_SELECTOR = 0x10
DATA32_SELECTOR = 0x18
FLAT_CODE32 = 0x00CF9A000000FFFF     # base 0, limit 4 GiB, 32-bit, execute/read
FLAT_DATA32 = 0x00CF93000000FFFF     # base 0, limit 4 GiB, read/write, accessed (as GRUB's)
GDT_ENTRIES = (0, 0, FLAT_CODE32, FLAT_DATA32)
GDT_LIMIT = 0x20                     # GRUB's: one byte past its four descriptors
PTE_PRESENT_WRITABLE = int(PTE.P | PTE.RW)          # plain ints: an IntFlag `|` per entry cost 3 ms
PDE_HUGE_PRESENT_WRITABLE = int(PTE.P | PTE.RW | PTE.PS)
CR0_PE_ET = CR0.PE | CR0.ET
EFLAGS_AT_ENTRY = 0x46                   # ZF, PF and the always-one bit, as GRUB leaves them; IF, VM, TF clear

SCRATCH_SIZE = 0x5000
# Scratch layout (offsets): page tables, GDT, code, stack.
PML4_OFFSET = 0x0000
PDPT_OFFSET = 0x1000
PD_OFFSET = 0x2000
GDT_OFFSET = 0x3000
GDTR_OFFSET = 0x3040                 # past the GDT and the byte its limit still covers
STUB64_OFFSET = 0x3100
STUB32_OFFSET = 0x3200
STACK_TOP_OFFSET = 0x5000


def _stub64(gdtr: int, target: int) -> bytes:
    """lgdt [gdtr]; push CODE32; push target; retfq   (64-bit code)."""
    return (
        b"\x0f\x01\x14\x25" + struct.pack("<I", gdtr)
        + b"\x6a" + bytes([CODE32_SELECTOR])
        + b"\x68" + struct.pack("<I", target)
        + b"\x48\xcb"
    )


def _stub32() -> bytes:
    """Leave long mode and load flat data segments (32-bit compatibility-mode code)."""
    return (
        b"\x0f\x20\xc0"                    # mov eax, cr0
        b"\x25\xff\xff\xff\x7f"            # and eax, ~CR0.PG
        b"\x0f\x22\xc0"                    # mov cr0, eax      (EFER.LMA -> 0)
        b"\xb9\x80\x00\x00\xc0"            # mov ecx, IA32_EFER
        b"\x31\xc0"                        # xor eax, eax
        b"\x31\xd2"                        # xor edx, edx
        b"\x0f\x30"                        # wrmsr             (EFER = 0)
        b"\x0f\x22\xe0"                    # mov cr4, eax      (CR4 = 0)
        b"\x66\xb8" + struct.pack("<H", DATA32_SELECTOR) +   # mov ax, DATA32
        b"\x8e\xd8"                        # mov ds, ax
        b"\x8e\xc0"                        # mov es, ax
        b"\x8e\xe0"                        # mov fs, ax
        b"\x8e\xe8"                        # mov gs, ax
        b"\x8e\xd0"                        # mov ss, ax
    )


class HandoffStub(Record):
    """The code that puts the CPU in the Multiboot entry state, and where it lies."""

    scratch: int

    @property
    def start(self) -> int:
        return self.scratch + STUB64_OFFSET

    @property
    def end(self) -> int:
        """Address just past the 32-bit stub: emu_start's `until`."""
        return self.scratch + STUB32_OFFSET + len(_stub32())

    @property
    def stack_top(self) -> int:
        return self.scratch + STACK_TOP_OFFSET

    def image(self) -> bytes:
        """The scratch area's bytes: identity tables for 0-1 GiB, GDT, stubs."""
        s = self.scratch
        area = bytearray(SCRATCH_SIZE)
        struct.pack_into("<Q", area, PML4_OFFSET, (s + PDPT_OFFSET) | PTE_PRESENT_WRITABLE)
        struct.pack_into("<Q", area, PDPT_OFFSET, (s + PD_OFFSET) | PTE_PRESENT_WRITABLE)
        for i in range(512):
            struct.pack_into("<Q", area, PD_OFFSET + 8 * i, (i << 21) | PDE_HUGE_PRESENT_WRITABLE)
        struct.pack_into(f"<{len(GDT_ENTRIES)}Q", area, GDT_OFFSET, *GDT_ENTRIES)
        struct.pack_into("<HQ", area, GDTR_OFFSET, GDT_LIMIT, s + GDT_OFFSET)
        code64 = _stub64(s + GDTR_OFFSET, s + STUB32_OFFSET)
        area[STUB64_OFFSET:STUB64_OFFSET + len(code64)] = code64
        code32 = _stub32()
        area[STUB32_OFFSET:STUB32_OFFSET + len(code32)] = code32
        return bytes(area)


def enter_multiboot2_state(uc: Uc, stub: HandoffStub, entry: int, boot_info: int, magic: int,
                           run_to: Callable[[int, int], None]) -> None:
    """Run the stub on the emulated CPU, then set the entry registers. run_to(begin, end)
    runs the engine from begin until end (Machine.run_to: the run loop's engine ignores
    emu_start's own `until`, docs/unicorn-quirks.md Q1).

    The scratch area must already hold stub.image() and lie below 1 GiB."""
    uc.reg_write(x86.UC_X86_REG_CR3, stub.scratch + PML4_OFFSET)
    uc.reg_write(x86.UC_X86_REG_CR4, uc.reg_read(x86.UC_X86_REG_CR4) | CR4.PAE)
    uc.reg_write(x86.UC_X86_REG_CR0, CR0_PE_ET | CR0.PG)
    uc.reg_write(x86.UC_X86_REG_RSP, stub.stack_top)
    run_to(stub.start, stub.end)
    if uc.reg_read(x86.UC_X86_REG_CR0) & CR0.PG or uc.msr_read(MSR.EFER) != 0:
        raise RuntimeError("hand-off stub did not reach 32-bit protected mode (Unicorn changed?)")
    for name in ("RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP",
                 "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"):
        uc.reg_write(getattr(x86, f"UC_X86_REG_{name}"), 0)
    uc.reg_write(x86.UC_X86_REG_CR3, 0)
    uc.reg_write(x86.UC_X86_REG_EAX, magic)
    uc.reg_write(x86.UC_X86_REG_EBX, boot_info)
    uc.reg_write(x86.UC_X86_REG_RSP, stub.stack_top)
    uc.reg_write(x86.UC_X86_REG_RFLAGS, EFLAGS_AT_ENTRY)
    uc.reg_write(x86.UC_X86_REG_IDTR, (0, 0, 0, 0))
    uc.reg_write(x86.UC_X86_REG_RIP, entry)
