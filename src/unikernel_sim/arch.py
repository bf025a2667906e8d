"""x86 facts, each defined once: exception vectors, control-register, EFER,
RFLAGS, page-table and page-fault error bits, MSR numbers, register names and
the few opcodes the simulator recognises.

Every number here is from the Intel SDM (the section is named beside each
table). Delivery, paging, the checkers and the report all import from here, so
a bit has one name everywhere and a decoder can list the names of the bits set
(``flag_names(cr0, CR0)``) without keeping its own table.

The classes are IntEnum/IntFlag so that a value prints with its name; hot paths
that test one bit per slice use the plain ``int`` copies at the bottom (an
IntFlag operand makes ``&`` build a new enum member, ~1 us).
"""
from __future__ import annotations

import enum

from unikernel_sim.records import Record


class Vector(enum.IntEnum):
    """Exception vectors (SDM vol. 3A, table 6-1)."""

    DE = 0      # divide error
    DB = 1      # debug
    NMI = 2     # non-maskable interrupt
    BP = 3      # breakpoint (INT3)
    OF = 4      # overflow (INTO)
    BR = 5      # BOUND range exceeded
    UD = 6      # invalid opcode
    NM = 7      # device not available
    DF = 8      # double fault
    CSO = 9     # coprocessor segment overrun (reserved since the 486)
    TS = 10     # invalid TSS
    NP = 11     # segment not present
    SS = 12     # stack-segment fault
    GP = 13     # general protection
    PF = 14     # page fault
    MF = 16     # x87 floating-point error
    AC = 17     # alignment check
    MC = 18     # machine check
    XM = 19     # SIMD floating-point exception
    VE = 20     # virtualization exception
    CP = 21     # control protection


class ExceptionClass(enum.Enum):
    """How an exception reports its address (SDM vol. 3A 6.5)."""

    FAULT = "fault"            # saved RIP points at the faulting instruction; RF set in the image
    TRAP = "trap"              # saved RIP points after it
    FAULT_OR_TRAP = "fault/trap"
    ABORT = "abort"
    INTERRUPT = "interrupt"


class ExceptionFacts(Record):
    """What the SDM's table 6-1 says about one exception vector."""

    mnemonic: str
    description: str
    has_error_code: bool       # SDM vol. 3A 6.13 and table 6-1's "Error Code" column
    kind: ExceptionClass


_F, _T, _A = ExceptionClass.FAULT, ExceptionClass.TRAP, ExceptionClass.ABORT
EXCEPTIONS: dict[int, ExceptionFacts] = {
    Vector.DE: ExceptionFacts("#DE", "divide error", False, _F),
    Vector.DB: ExceptionFacts("#DB", "debug", False, ExceptionClass.FAULT_OR_TRAP),
    Vector.NMI: ExceptionFacts("NMI", "non-maskable interrupt", False, ExceptionClass.INTERRUPT),
    Vector.BP: ExceptionFacts("#BP", "breakpoint", False, _T),
    Vector.OF: ExceptionFacts("#OF", "overflow", False, _T),
    Vector.BR: ExceptionFacts("#BR", "BOUND range exceeded", False, _F),
    Vector.UD: ExceptionFacts("#UD", "invalid opcode", False, _F),
    Vector.NM: ExceptionFacts("#NM", "device not available", False, _F),
    Vector.DF: ExceptionFacts("#DF", "double fault", True, _A),
    Vector.CSO: ExceptionFacts("CSO", "coprocessor segment overrun", False, _F),
    Vector.TS: ExceptionFacts("#TS", "invalid TSS", True, _F),
    Vector.NP: ExceptionFacts("#NP", "segment not present", True, _F),
    Vector.SS: ExceptionFacts("#SS", "stack-segment fault", True, _F),
    Vector.GP: ExceptionFacts("#GP", "general protection", True, _F),
    Vector.PF: ExceptionFacts("#PF", "page fault", True, _F),
    Vector.MF: ExceptionFacts("#MF", "x87 floating-point error", False, _F),
    Vector.AC: ExceptionFacts("#AC", "alignment check", True, _F),
    Vector.MC: ExceptionFacts("#MC", "machine check", False, _A),
    Vector.XM: ExceptionFacts("#XM", "SIMD floating-point exception", False, _F),
    Vector.VE: ExceptionFacts("#VE", "virtualization exception", False, _F),
    Vector.CP: ExceptionFacts("#CP", "control protection", True, _F),
}

CONTRIBUTORY = frozenset({Vector.DE, Vector.TS, Vector.NP, Vector.SS, Vector.GP})
"""SDM vol. 3A, table 6-4: contributory exceptions (#PF is a class of its own)."""

SELECTOR_ERROR_VECTORS = frozenset({Vector.TS, Vector.NP, Vector.SS, Vector.GP, Vector.AC})
"""Exceptions whose error code has the selector format (SDM vol. 3A 6.13, figure 6-6)."""


def vector_name(vector: int) -> str:
    """``#PF (page fault)`` for exceptions, ``vector 0x30`` otherwise."""
    facts = EXCEPTIONS.get(vector)
    return f"{facts.mnemonic} ({facts.description})" if facts else f"vector {vector:#x}"


def short_name(vector: int) -> str:
    facts = EXCEPTIONS.get(vector)
    return facts.mnemonic if facts else f"INT {vector:#x}"


def has_error_code(vector: int) -> bool:
    facts = EXCEPTIONS.get(vector)
    return facts is not None and facts.has_error_code


def is_fault(vector: int) -> bool:
    facts = EXCEPTIONS.get(vector)
    return facts is not None and facts.kind is ExceptionClass.FAULT


def _integer_complement(flags: type[enum.IntFlag]) -> type[enum.IntFlag]:
    """Make ``~`` the integer complement for this IntFlag class.

    Plain IntFlag complements within its defined bits (``~RFLAGS.RF`` is
    0x3effff), so ``rflags & ~RFLAGS.RF`` would also clear every bit the class
    does not name; registers are wider than the bits we name. EnumType copies
    Flag.__invert__ into every new class, so a base-class override does not
    reach the members: the method is set on each class after creation."""
    flags.__invert__ = lambda self: ~int(self)   # type: ignore[method-assign]
    return flags


@_integer_complement
class CR0(enum.IntFlag):
    """SDM vol. 3A 2.5."""

    PE = 1 << 0        # protection enable
    MP = 1 << 1        # monitor coprocessor
    EM = 1 << 2        # x87 emulation: x87 and SSE raise #NM / #UD
    TS = 1 << 3        # task switched: the next x87/SSE instruction raises #NM
    ET = 1 << 4        # extension type (always 1)
    NE = 1 << 5        # numeric error reporting
    WP = 1 << 16       # write protect applies to supervisor writes
    AM = 1 << 18       # alignment mask
    NW = 1 << 29       # not write-through
    CD = 1 << 30       # cache disable
    PG = 1 << 31       # paging


@_integer_complement
class CR4(enum.IntFlag):
    """SDM vol. 3A 2.5."""

    VME = 1 << 0
    PVI = 1 << 1
    TSD = 1 << 2
    DE = 1 << 3
    PSE = 1 << 4        # 4 MiB pages in 32-bit paging
    PAE = 1 << 5        # physical address extension (required for long mode)
    MCE = 1 << 6
    PGE = 1 << 7
    PCE = 1 << 8
    OSFXSR = 1 << 9     # the OS supports FXSAVE/FXRSTOR: SSE instructions allowed
    OSXMMEXCPT = 1 << 10
    UMIP = 1 << 11
    LA57 = 1 << 12
    VMXE = 1 << 13
    SMXE = 1 << 14
    FSGSBASE = 1 << 16
    PCIDE = 1 << 17
    OSXSAVE = 1 << 18
    SMEP = 1 << 20
    SMAP = 1 << 21
    PKE = 1 << 22


@_integer_complement
class EFER(enum.IntFlag):
    """IA32_EFER (SDM vol. 3A 2.2.1, table 2-1)."""

    SCE = 1 << 0        # SYSCALL/SYSRET enable
    LME = 1 << 8        # long mode enable
    LMA = 1 << 10       # long mode active (read-only)
    NXE = 1 << 11       # execute-disable bit in page tables


@_integer_complement
class RFLAGS(enum.IntFlag):
    """SDM vol. 1 3.4.3; IOPL is a two-bit field (bits 12-13)."""

    CF = 1 << 0
    RESERVED_1 = 1 << 1      # always 1
    PF = 1 << 2
    AF = 1 << 4
    ZF = 1 << 6
    SF = 1 << 7
    TF = 1 << 8              # single-step trap
    IF = 1 << 9              # external interrupts enabled
    DF = 1 << 10
    OF = 1 << 11
    IOPL = 3 << 12
    NT = 1 << 14
    RF = 1 << 16             # resume: suppress instruction breakpoints once
    VM = 1 << 17
    AC = 1 << 18
    VIF = 1 << 19
    VIP = 1 << 20
    ID = 1 << 21


IOPL_SHIFT = 12


@_integer_complement
class PageFaultError(enum.IntFlag):
    """#PF error code bits (SDM vol. 3A 4.7, figure 4-12)."""

    P = 1 << 0          # 1: protection violation; 0: page not present
    W = 1 << 1          # write access
    U = 1 << 2          # user-mode access
    RSVD = 1 << 3       # reserved bit set in a paging entry
    I = 1 << 4          # instruction fetch  # noqa: E741 - the SDM's name
    PK = 1 << 5         # protection key


@_integer_complement
class SelectorError(enum.IntFlag):
    """Selector error code bits (SDM vol. 3A 6.13, figure 6-6); bits 3-15 are the index."""

    EXT = 1 << 0        # an external event caused it
    IDT = 1 << 1        # the index refers to an IDT gate
    TI = 1 << 2         # the index refers to the LDT (when IDT is 0)


@_integer_complement
class PTE(enum.IntFlag):
    """Paging-structure entry bits (SDM vol. 3A 4.3-4.5, tables 4-14 to 4-20)."""

    P = 1 << 0          # present
    RW = 1 << 1         # writable
    US = 1 << 2         # user accessible
    PWT = 1 << 3
    PCD = 1 << 4
    A = 1 << 5          # accessed
    D = 1 << 6          # dirty
    PS = 1 << 7         # page size: this PDE/PDPTE maps a large page
    G = 1 << 8          # global
    NX = 1 << 63        # execute disable (with EFER.NXE)


PTE_ADDRESS_MASK_64 = 0x000F_FFFF_FFFF_F000
"""Physical-address bits of a 64-bit paging entry (MAXPHYADDR = 52)."""


class MSR(enum.IntEnum):
    """Model-specific registers the simulator reads or writes (SDM vol. 4, table 2-2)."""

    APIC_BASE = 0x1B
    SYSENTER_CS = 0x174
    SYSENTER_ESP = 0x175
    SYSENTER_EIP = 0x176
    EFER = 0xC0000080
    STAR = 0xC0000081
    LSTAR = 0xC0000082
    CSTAR = 0xC0000083
    FMASK = 0xC0000084
    FS_BASE = 0xC0000100
    GS_BASE = 0xC0000101
    KERNEL_GS_BASE = 0xC0000102
    TSC_AUX = 0xC0000103


class GateType(enum.IntEnum):
    """IDT gate types (SDM vol. 3A 3.5, table 3-2)."""

    TASK = 0x5
    INTERRUPT_16 = 0x6
    TRAP_16 = 0x7
    INTERRUPT_32 = 0xE        # also the 64-bit interrupt gate in IA-32e mode
    TRAP_32 = 0xF             # also the 64-bit trap gate


GPR_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
SEGMENT_NAMES = ("cs", "ds", "es", "fs", "gs", "ss")

OPCODE_HLT = 0xF4
OPCODE_RET = 0xC3
OPCODE_INT3 = 0xCC
OPCODE_INT_IMM8 = 0xCD
MAX_INSTRUCTION_LENGTH = 15      # SDM vol. 2A 2.3.11

MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1


def flag_names(value: int, flags: type[enum.IntFlag]) -> list[str]:
    """Names of the single-bit members of flags set in value, lowest bit first."""
    return [member.name for member in flags
            if member.value & (member.value - 1) == 0 and value & member.value and member.name]


def is_canonical(address: int) -> bool:
    """48-bit canonical form: bits 63..47 all equal (SDM vol. 1 3.3.7.1)."""
    top = (address & MASK64) >> 47
    return top == 0 or top == (1 << 17) - 1


# Plain-int copies for per-slice tests in the run loop (see the module docstring).
RFLAGS_IF = int(RFLAGS.IF)
EFER_LMA = int(EFER.LMA)
