"""The register set gdb sees, and its target description (gdb manual, "Target
Descriptions" and "Standard Target Features": org.gnu.gdb.i386.core, .sse,
.segments for i386:x86-64, plus a feature of our own for the system registers).

The set is x86-64 throughout, as QEMU's is once a kernel runs in long mode; in the
32-bit Multiboot entry code the upper halves read as zero, so one gdb session can
follow a kernel from its 32-bit entry into 64-bit C without a "g packet reply is
too long" (gdb's decoder needs `set architecture i386` to disassemble 32-bit code:
docs/debugging.md). Registers are numbered in the order listed here.
"""
from __future__ import annotations

from dataclasses import dataclass

from unicorn import Uc, UcError
from unicorn import x86_const as x86

from unikernel_sim.arch import MSR


@dataclass(frozen=True)
class Register:
    name: str
    bits: int
    type: str
    feature: str
    unicorn: int | None           # None: reads as zero, writes are ignored


CORE, SSE, SEGMENTS, SYSTEM = ("org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse", "org.gnu.gdb.i386.segments",
                               "org.unikernel_sim.x86.system")
EFER_PSEUDO = -1                  # the EFER MSR, read through msr_read


def _register_list() -> tuple[Register, ...]:
    regs = []
    for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi"):
        regs.append(Register(name, 64, "int64", CORE, getattr(x86, f"UC_X86_REG_{name.upper()}")))
    regs.append(Register("rbp", 64, "data_ptr", CORE, x86.UC_X86_REG_RBP))
    regs.append(Register("rsp", 64, "data_ptr", CORE, x86.UC_X86_REG_RSP))
    for number in range(8, 16):
        regs.append(Register(f"r{number}", 64, "int64", CORE, getattr(x86, f"UC_X86_REG_R{number}")))
    regs.append(Register("rip", 64, "code_ptr", CORE, x86.UC_X86_REG_RIP))
    regs.append(Register("eflags", 32, "int32", CORE, x86.UC_X86_REG_EFLAGS))
    for name in ("cs", "ss", "ds", "es", "fs", "gs"):
        regs.append(Register(name, 32, "int32", CORE, getattr(x86, f"UC_X86_REG_{name.upper()}")))
    for number in range(8):
        regs.append(Register(f"st{number}", 80, "i387_ext", CORE, getattr(x86, f"UC_X86_REG_FP{number}")))
    for name, unicorn in (("fctrl", x86.UC_X86_REG_FPCW), ("fstat", x86.UC_X86_REG_FPSW),
                          ("ftag", x86.UC_X86_REG_FPTAG), ("fiseg", x86.UC_X86_REG_FCS),
                          ("fioff", x86.UC_X86_REG_FIP), ("foseg", x86.UC_X86_REG_FDS),
                          ("fooff", x86.UC_X86_REG_FDP), ("fop", x86.UC_X86_REG_FOP)):
        regs.append(Register(name, 32, "int", CORE, unicorn))
    for number in range(16):
        regs.append(Register(f"xmm{number}", 128, "uint128", SSE, getattr(x86, f"UC_X86_REG_XMM{number}")))
    regs.append(Register("mxcsr", 32, "int", SSE, x86.UC_X86_REG_MXCSR))
    regs.append(Register("fs_base", 64, "int64", SEGMENTS, x86.UC_X86_REG_FS_BASE))
    regs.append(Register("gs_base", 64, "int64", SEGMENTS, x86.UC_X86_REG_GS_BASE))
    for name in ("cr0", "cr2", "cr3", "cr4"):
        regs.append(Register(name, 64, "int64", SYSTEM, getattr(x86, f"UC_X86_REG_{name.upper()}")))
    regs.append(Register("efer", 64, "int64", SYSTEM, EFER_PSEUDO))
    return tuple(regs)


REGISTERS = _register_list()
NUMBER = {register.name: number for number, register in enumerate(REGISTERS)}
RIP = NUMBER["rip"]


def target_xml() -> str:
    """The target description gdb fetches with qXfer:features:read:target.xml."""
    lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', "<target>",
             "  <architecture>i386:x86-64</architecture>"]
    feature = None
    for register in REGISTERS:
        if register.feature != feature:
            if feature is not None:
                lines.append("  </feature>")
            feature = register.feature
            lines.append(f'  <feature name="{feature}">')
        group = ' group="system"' if register.feature == SYSTEM else ""
        lines.append(f'    <reg name="{register.name}" bitsize="{register.bits}" type="{register.type}"{group}/>')
    lines += ["  </feature>", "</target>"]
    return "\n".join(lines) + "\n"


def _value(uc: Uc, register: Register) -> int:
    if register.unicorn is None:
        return 0
    if register.unicorn == EFER_PSEUDO:
        return uc.msr_read(MSR.EFER)
    value = uc.reg_read(register.unicorn)
    if isinstance(value, tuple):                     # x87: (mantissa, exponent)
        mantissa, exponent = value
        return mantissa | (exponent << 64)
    return value


def read_register(uc: Uc, number: int) -> bytes:
    register = REGISTERS[number]
    return (_value(uc, register) & ((1 << register.bits) - 1)).to_bytes(register.bits // 8, "little")


def read_all(uc: Uc) -> bytes:
    return b"".join(read_register(uc, number) for number in range(len(REGISTERS)))


def write_register(uc: Uc, number: int, data: bytes) -> bool:
    """Write register number from its little-endian bytes; False if the CPU refused it
    (a segment selector with no valid descriptor, say) or it is read-only here."""
    register = REGISTERS[number]
    if register.unicorn is None or len(data) != register.bits // 8:
        return False
    value = int.from_bytes(data, "little")
    try:
        if register.unicorn == EFER_PSEUDO:
            uc.msr_write(MSR.EFER, value)
        elif register.bits == 80:
            uc.reg_write(register.unicorn, (value & ((1 << 64) - 1), value >> 64))
        else:
            uc.reg_write(register.unicorn, value)
    except UcError:
        return False
    return True


def write_all(uc: Uc, data: bytes) -> bool:
    """G packet: every register in order; those gdb cannot change here (or the CPU
    refuses) keep their values. False if the packet is too short."""
    offset = 0
    for number, register in enumerate(REGISTERS):
        size = register.bits // 8
        chunk = data[offset:offset + size]
        if len(chunk) < size:
            return False
        if chunk != read_register(uc, number):
            write_register(uc, number, chunk)
        offset += size
    return True
