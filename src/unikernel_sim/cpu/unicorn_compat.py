"""Every access to Unicorn's private surface, in one place.

Unicorn 2.1.4 leaves a kernel simulator several things that its public API does
not offer; each workaround below names the behaviour it works around by its
number in docs/unicorn-quirks.md, where the reproduction (a test on raw
Unicorn, tests/unicorn_quirks/) and the reason are written down. When an
upgrade makes a reproduction test fail, the workaround it names can go.

  exits_only, run_to         Q1  every emu_start ends by a page walk of until - 1, which
                                 sets CR2 when that address is not mapped
  native_function_address    Q8  the binding refuses UC_HOOK_INSN for RDTSC/RDTSCP,
  add_native_hook                so C hooks are registered through the library itself
  context_offsets and the    Q3  UC_HOOK_INTR gives the vector only: the error code and
  functions that use them        "was it INT n" live in the saved CPU context
                             Q2  QEMU's old_exception is never reset: false #DF, then a
                                 silent end of emu_start
                             Q10 writing CS does not change the CPL (QEMU's hflags)
                             Q14 the STI / MOV SS interrupt shadow is an hflags bit
  UcContext                      the binding exports the context type only from its
                                 private module

The context fields' offsets differ between Unicorn builds, so they are found
once per process by diffing contexts around exceptions with known values (a
#GP whose error code is a chosen selector, an INT n, a ring-3 int3), then read
or patched in a context that is saved, changed and restored.
"""
from __future__ import annotations

import ctypes
import struct
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from unicorn import Uc, UcError
from unicorn.unicorn_const import UC_CTL_CONTEXT_MODE, UC_CTL_IO_WRITE
from unicorn.unicorn_py3.unicorn import UcContext, uclib
from unicorn.x86_const import UC_X86_REG_GDTR, UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RSP

from unikernel_sim.arch import Vector
from unikernel_sim.records import Record

if TYPE_CHECKING:
    from unikernel_sim.cpu.engine import ProbeEngine

__all__ = [
    "RUN_UNTIL_NEVER", "UcContext", "add_native_hook", "clear_exception_in_flight", "context_offsets",
    "context_address", "delete_native_hook", "engine_handle", "exits_only", "run_to", "set_context_mode",
    "in_64bit_mode", "interrupt_shadow", "native_function_address", "set_cpl", "take_exception_info",
]

RUN_UNTIL_NEVER = 1 << 63
"""emu_start's `until` for a run that only hooks end: an address no code reaches. An
engine in exits mode (exits_only) ignores it."""


def exits_only(uc: Uc) -> None:
    """Make emu_start ignore `until` and stop at no address of its own (Q1). Unicorn 2.1.4
    ends every run by invalidating the translation at until - 1, through a page walk of
    that address: where the guest's page tables do not map it, the walk sets CR2 to it,
    so a run stopped anywhere between a page fault and its handler's `mov eax, cr2` (a
    timer, a budget, a debugger's step) changed the address the handler read, and the
    crash report showed until - 1. In exits mode the invalidation walks the exits set
    (empty here) instead."""
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([])


def run_to(uc: Uc, begin: int, end: int) -> None:
    """emu_start from begin until end, on an engine in exits mode or not: in exits mode
    end is the run's only exit (and the walk after it is end - 1's, which the callers'
    own code maps)."""
    try:
        uc.ctl_get_exits_cnt()          # refused (UC_ERR_ARG) unless exits mode is on
    except UcError:
        uc.emu_start(begin, end)
        return
    uc.ctl_set_exits([end])
    try:
        uc.emu_start(begin, end)
    finally:
        uc.ctl_set_exits([])


def native_function_address(name: str) -> int:
    """The address of a libunicorn C function (uc_emu_stop, uc_reg_read...), for C
    hooks that call back into Unicorn without Python (Q8)."""
    return ctypes.cast(getattr(uclib, name), ctypes.c_void_p).value


def add_native_hook(uc: Uc, htype: int, callback: ctypes.c_void_p, user_data: ctypes.c_void_p,
                    begin: int, end: int, *extra: int) -> int:
    """uc_hook_add with a C function pointer, through the library itself: the
    binding refuses UC_HOOK_INSN + RDTSC although the C core accepts it (Q8), and
    a C callback costs no Python per call. Returns the hook handle (delete_native_hook
    takes it: the binding's hook_del knows only the hooks it added)."""
    handle = ctypes.c_size_t()
    args = [ctypes.c_int(x) for x in extra]
    status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), htype, callback, user_data,
                               ctypes.c_uint64(begin), ctypes.c_uint64(end), *args)
    if status != 0:
        raise RuntimeError(f"uc_hook_add({htype}) failed with Unicorn error {status}")
    return handle.value


def engine_handle(uc: Uc):
    """The uc_engine pointer, for C code that calls the library directly."""
    return uc._uch


_REG_ACCESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
_REG_BATCH = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
BATCH_MAX = 16
_CONTEXT_MODE_WRITE = (UC_CTL_IO_WRITE << 30) | (1 << 26) | UC_CTL_CONTEXT_MODE   # uc.h UC_CTL_WRITE(ctl, 1)


class GeneralRegisters:
    """Reads and writes of 64-bit general registers and RIP straight through
    uc_reg_read/uc_reg_write: the binding's reg_read picks a register class per call
    (~1.5 us); a guest call and the run loop touch RIP, RSP and the argument
    registers a dozen times per call. Not for segment, table or MSR registers."""

    def __init__(self, uc: Uc) -> None:
        self._handle = engine_handle(uc)
        self._value = ctypes.c_uint64()
        self._pointer = ctypes.byref(self._value)
        self._read = _REG_ACCESS(native_function_address("uc_reg_read"))
        self._write = _REG_ACCESS(native_function_address("uc_reg_write"))
        self._write_batch = _REG_BATCH(native_function_address("uc_reg_write_batch"))
        self._batch_ids = (ctypes.c_int * BATCH_MAX)()
        self._batch_values = (ctypes.c_uint64 * BATCH_MAX)()
        base = ctypes.addressof(self._batch_values)
        self._batch_pointers = (ctypes.c_void_p * BATCH_MAX)(*(base + 8 * i for i in range(BATCH_MAX)))

    def read(self, register: int) -> int:
        error = self._read(self._handle, register, self._pointer)
        if error:
            raise UcError(error)
        return self._value.value

    def write(self, register: int, value: int) -> None:
        self._value.value = value
        error = self._write(self._handle, register, self._pointer)
        if error:
            raise UcError(error)

    def write_many(self, registers: Sequence[int], values: Sequence[int]) -> None:
        """Several writes in one uc_reg_write_batch call (a guest call sets up to ten)."""
        count = len(registers)
        if count > BATCH_MAX:
            raise ValueError(f"at most {BATCH_MAX} registers at once")
        ids, slots = self._batch_ids, self._batch_values
        for i in range(count):
            ids[i] = registers[i]
            slots[i] = values[i]
        error = self._write_batch(self._handle, ids, self._batch_pointers, count)
        if error:
            raise UcError(error)


def set_context_mode(uc: Uc, mode: int) -> None:
    """uc_ctl(UC_CTL_CONTEXT_MODE, write, mode) without the binding's encoding per call
    (a restore of a Unicorn memory snapshot switches twice: the benches' bare yardsticks)."""
    status = uclib.uc_ctl(uc._uch, _CONTEXT_MODE_WRITE, ctypes.c_int(mode))
    if status != 0:
        raise UcError(status)


def context_address(context: UcContext) -> int:
    """Where a saved context's bytes are (the offsets of context_offsets() are from here)."""
    return ctypes.cast(context.context, ctypes.c_void_p).value


def delete_native_hook(uc: Uc, handle: int) -> None:
    """uc_hook_del for a hook add_native_hook added."""
    status = uclib.uc_hook_del(uc._uch, ctypes.c_size_t(handle))
    if status != 0:
        raise RuntimeError(f"uc_hook_del failed with Unicorn error {status}")


PROBE_CODE_ADDRESS = 0x1000
PROBE_STACK = 0x8000
# mov ds, ax ; mov ds, bx ; int 0x40  (each probe starts at its own instruction)
MOV_DS_AX = b"\x8e\xd8"
MOV_DS_BX = b"\x8e\xdb"
INT_0X40 = b"\xcd\x40"
SELECTOR_A = 0x1234
SELECTOR_B = 0x2468


class ContextOffsets(Record):
    """Where QEMU's exception fields lie in Unicorn's saved CPU context (byte offsets; Q2, Q3, Q10)."""

    error_code: int
    is_int: int
    old_exception: int
    hflags: int               # QEMU's hidden flags; bits 0-1 are the CPL


def _probe(code: bytes, rax: int = 0, rbx: int = 0) -> tuple[bytes, bytes]:
    probe = _probe_engine()
    uc = probe.fresh()
    uc.mem_write(PROBE_CODE_ADDRESS, code)
    uc.reg_write(UC_X86_REG_RSP, PROBE_STACK)
    uc.reg_write(UC_X86_REG_RAX, rax)
    uc.reg_write(UC_X86_REG_RBX, rbx)
    before = bytes(uc.context_save())
    try:
        uc.emu_start(PROBE_CODE_ADDRESS, PROBE_CODE_ADDRESS + len(code))
    except UcError:
        pass
    if not probe.captured:
        raise RuntimeError("Unicorn raised no exception in the context probe")
    return before, probe.captured[0]


# GDT for the ring-3 probe: null, kernel code64, kernel data, user data (0x1b), user code64 (0x23).
PROBE_GDT = struct.pack("<5Q", 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF, 0x00CFF2000000FFFF, 0x00AFFA000000FFFF)
PROBE_GDT_ADDRESS = 0x3000
PROBE_USER_CODE = 0x1100
# push 0x1b (SS); push 0x8000 (RSP); push 0x2 (RFLAGS); push 0x23 (CS); push 0x1100 (RIP); iretq
IRETQ_TO_RING3 = bytes([0x6A, 0x1B, 0x68, 0x00, 0x80, 0, 0, 0x6A, 0x02, 0x6A, 0x23, 0x68, 0x00, 0x11, 0, 0,
                        0x48, 0xCF])
INT3 = b"\xcc"
HF_LMA_CS64 = (1 << 14) | (1 << 15)
HF_INHIBIT_IRQ = 1 << 3             # QEMU: the instruction after STI / MOV SS is running


def _probe_cpl(ring3: bool) -> bytes:
    """The CPU context at an int3 executed at CPL 0, or at CPL 3 after an iretq."""
    probe = _probe_engine()
    uc = probe.fresh()
    uc.mem_write(PROBE_GDT_ADDRESS, PROBE_GDT)
    uc.reg_write(UC_X86_REG_GDTR, (0, PROBE_GDT_ADDRESS, len(PROBE_GDT) - 1, 0))
    uc.mem_write(PROBE_CODE_ADDRESS, IRETQ_TO_RING3 if ring3 else INT3)
    uc.mem_write(PROBE_USER_CODE, INT3)
    uc.reg_write(UC_X86_REG_RSP, PROBE_STACK)
    uc.emu_start(PROBE_CODE_ADDRESS, PROBE_CODE_ADDRESS + 0x1000)
    return probe.captured[0]


def _ints(blob: bytes) -> list[int]:
    return list(struct.unpack_from(f"<{len(blob) // 4}i", blob))


def _single(candidates: list[int], what: str) -> int:
    if len(candidates) != 1:
        raise RuntimeError(f"cannot locate QEMU's {what} in Unicorn's CPU context "
                           f"({len(candidates)} candidates): unsupported Unicorn build")
    return candidates[0] * 4


@lru_cache(maxsize=1)
def context_offsets() -> ContextOffsets:
    """Find the context fields (a few milliseconds, once per process; Q2, Q3, Q10)."""
    before, gp_a = _probe(MOV_DS_AX, rax=SELECTOR_A)
    _, gp_b = _probe(MOV_DS_BX, rbx=SELECTOR_B)
    _, soft = _probe(INT_0X40)
    b0, a, b, s = _ints(before), _ints(gp_a), _ints(gp_b), _ints(soft)
    n = min(len(b0), len(a), len(b), len(s))
    error_code = _single([i for i in range(n) if a[i] == SELECTOR_A and b[i] == SELECTOR_B], "error_code")
    old_exception = _single([i for i in range(n) if b0[i] == -1 and a[i] == Vector.GP and b[i] == Vector.GP],
                            "old_exception")
    is_int = _single([i for i in range(n) if s[i] == 1 and a[i] == 0 and b[i] == 0 and b0[i] == 0],
                     "exception_is_int")
    ring0, ring3 = _ints(_probe_cpl(False)), _ints(_probe_cpl(True))
    hflags = _single([i for i in range(min(len(ring0), len(ring3)))
                      if ring0[i] & 3 == 0 and ring3[i] & 3 == 3 and ring0[i] & HF_LMA_CS64 == HF_LMA_CS64
                      and ring3[i] & HF_LMA_CS64 == HF_LMA_CS64], "hflags")
    return ContextOffsets(error_code=error_code, is_int=is_int, old_exception=old_exception, hflags=hflags)


class ExceptionInfo(Record):
    """The pending exception's details that UC_HOOK_INTR does not give (Q3)."""

    error_code: int
    software: bool        # raised by INT n / INT3 / INTO (RIP is already past it)


def _saved_context(uc: Uc):
    """The CPU context and the address of its bytes, where the fields located by
    context_offsets() are read and patched (patches need uc.context_restore)."""
    context = uc.context_save()
    return context, context_address(context)


def take_exception_info(uc: Uc) -> ExceptionInfo:
    """Read the pending exception's details (Q3) and clear QEMU's in-flight marker (Q2)."""
    offsets = context_offsets()
    context, base = _saved_context(uc)
    error_code = ctypes.c_int32.from_address(base + offsets.error_code).value & 0xFFFFFFFF
    software = ctypes.c_int32.from_address(base + offsets.is_int).value != 0
    ctypes.c_int32.from_address(base + offsets.old_exception).value = -1
    uc.context_restore(context)
    return ExceptionInfo(error_code=error_code, software=software)


def clear_exception_in_flight(uc: Uc) -> None:
    """Reset QEMU's old_exception before a slice (Q2).

    Measured: emu_stop() requested from an I/O hook can leave old_exception = 13
    with no exception ever reported (a stop while the firmware unmasked an IRQ at
    the PIC did); the next #PF then becomes a false #DF and the one after ends
    emu_start silently. Resetting it before every emu_start closes that path."""
    offsets = context_offsets()
    context, base = _saved_context(uc)
    field = ctypes.c_int32.from_address(base + offsets.old_exception)
    if field.value != -1:
        field.value = -1
        uc.context_restore(context)


def set_cpl(uc: Uc, cpl: int) -> None:
    """Change the current privilege level the way an interrupt gate does.

    Writing CS through the API does not change QEMU's CPL (it lives in hflags and
    follows SS.DPL), and writing a ring-0 SS is refused while the CPU is at CPL 3,
    so a privilege-changing delivery sets the CPL in the saved context first (Q10)."""
    offsets = context_offsets()
    context, base = _saved_context(uc)
    field = ctypes.c_uint32.from_address(base + offsets.hflags)
    field.value = (field.value & ~3) | (cpl & 3)
    uc.context_restore(context)


def _hflags(uc: Uc) -> int:
    """QEMU's hidden flags word (CPL, CS64, LMA, interrupt shadow...), read from the context."""
    context, base = _saved_context(uc)
    return ctypes.c_uint32.from_address(base + context_offsets().hflags).value


def interrupt_shadow(uc: Uc) -> bool:
    """True while external interrupts are inhibited for one instruction.

    SDM vol. 2B, STI: "the processor will respond to external interrupts after
    executing the next instruction" (likewise MOV SS / POP SS, vol. 3A 6.8.3), so
    that `sti; hlt` cannot lose a wake-up. QEMU keeps this state in hflags
    (HF_INHIBIT_IRQ), and a slice that ends between STI and the next instruction
    (a breakpoint there, a host-timer stop) leaves it set; measured with
    emu_start(count=1) after `sti` and after `mov ss` (Q14)."""
    return bool(_hflags(uc) & HF_INHIBIT_IRQ)


def in_64bit_mode(uc: Uc) -> bool:
    """IA-32e mode with a 64-bit code segment (CS.L = 1), not compatibility mode."""
    return _hflags(uc) & HF_LMA_CS64 == HF_LMA_CS64


def _probe_engine() -> "ProbeEngine":
    from unikernel_sim.cpu.engine import probe_engine

    return probe_engine()
