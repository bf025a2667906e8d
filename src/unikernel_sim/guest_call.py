"""Calling guest functions from Python (System V AMD64 ABI, psABI 3.2).

Integer and pointer arguments go in RDI, RSI, RDX, RCX, R8, R9, floats in
XMM0-XMM7, the rest on the stack (8-byte slots, in order); RSP is 16-byte
aligned at the call, so the callee starts with RSP = 8 (mod 16); AL holds the
number of vector registers used (for variadic callees like kprintf). The
return address is a sentinel: a code hook on it ends the run when the callee
returns. The guest's registers are saved before and restored after, so the
kernel carries on where it was; interrupts keep firing during the call.

A callee that faults, panics, exits, or runs out of budget raises
GuestCallError, whose message is the crash report.
"""
from __future__ import annotations

import ctypes
import struct
from typing import TYPE_CHECKING, Sequence

from unicorn import x86_const as x86

from unikernel_sim.cpu.native import check_mirror, library
from unikernel_sim.cpu.unicorn_compat import context_address
from unikernel_sim.stops import Stop, StopReason

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

INTEGER_REGISTERS = (x86.UC_X86_REG_RDI, x86.UC_X86_REG_RSI, x86.UC_X86_REG_RDX,
                     x86.UC_X86_REG_RCX, x86.UC_X86_REG_R8, x86.UC_X86_REG_R9)
VECTOR_REGISTERS = tuple(getattr(x86, f"UC_X86_REG_XMM{i}") for i in range(8))
SETUP_REGISTERS = (x86.UC_X86_REG_RAX, x86.UC_X86_REG_RSP, x86.UC_X86_REG_RIP)   # vector count, stack, callee
RED_ZONE = 128
DEFAULT_CALL_TIMEOUT = 30.0
MASK64 = (1 << 64) - 1


class F32(float):
    """A float argument passed as a single-precision value (C `float`)."""


PAGE = 4096                        # the C write covers at most two pages: frames up to one page
CALL_STACK_WORDS = 500             # _guest_call.c: stack arguments the C set-up takes (a page)
CALL_UNMAPPED = -1                 # _guest_call.c: the guest stack is not mapped


class CallFrame(ctypes.Structure):
    """struct call_frame (_guest_call.c), field for field."""
    _fields_ = [
        ("reg_arguments", ctypes.c_int64 * len(INTEGER_REGISTERS)),
        ("reg_rax", ctypes.c_int64),
        ("red_zone", ctypes.c_uint64),
        ("function", ctypes.c_uint64),
        ("vector_count", ctypes.c_uint64),
        ("integer_count", ctypes.c_uint64),
        ("integers", ctypes.c_uint64 * len(INTEGER_REGISTERS)),
        ("stack_count", ctypes.c_uint64),
        ("words", ctypes.c_uint64 * (1 + CALL_STACK_WORDS)),
    ]


check_mirror(CallFrame, "struct call_frame", "call_frame_struct_size")
_call_enter = library.guest_call_enter            # no argtypes: the arguments are made once
_call_enter.restype = ctypes.c_int
_call_leave = library.guest_call_leave
_call_leave.restype = ctypes.c_uint64
_call_arm_sentinel = library.guest_call_arm_sentinel
_call_arm_sentinel.restype = ctypes.c_int


def _signed(value: int, returns: str) -> int:
    """RAX as the C return type says: int (unsigned 64-bit), int32 or int64."""
    if returns == "int32":
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value & (1 << 31) else value
    if returns == "int64":
        return value - (1 << 64) if value & (1 << 63) else value
    return value


class GuestCallError(Exception):
    """A guest function did not return normally; str() is the crash report."""

    def __init__(self, function: str, stop: Stop, report: str) -> None:
        super().__init__(report)
        self.function = function
        self.stop = stop
        self.report = report


HLT = b"\xf4"


class GuestCaller:
    """Calls guest functions with a return address (the sentinel) that stops the run.

    A C code hook on the sentinel stops the run while a call is active
    (vclock_call_return). Unicorn 2.1.4 skips code hooks while a stop is already
    pending (helper_uc_tracecode returns early when stop_request is set), and
    emu_stop sets that flag before it interrupts the CPU. A host-timer stop landing
    between the callee's `ret` and the hook then let the call run past its return
    address (reproduced: a #UD in VGA memory after 800-12,000 calls at a 10 kHz
    tick). So the sentinel also holds a `hlt`, which ends emulation if it runs, and
    the run loop asks returned() after every slice, before it injects an interrupt.

    Calls do not nest: the guest's registers are saved in one context, reused by
    every call (allocating a context per call cost more than saving into it)."""

    def __init__(self, machine: "Machine", sentinel: int) -> None:
        self.machine = machine
        self.sentinel = sentinel
        self.hook = machine.clock.watch_call_return(sentinel)
        self._clock_state = machine.clock.state
        self._saved = machine.uc.context_save()
        self._saved_address = ctypes.c_void_p(context_address(self._saved))
        self._frame = frame = CallFrame()
        for i, register in enumerate(INTEGER_REGISTERS):
            frame.reg_arguments[i] = register
        frame.reg_rax = x86.UC_X86_REG_RAX
        frame.red_zone = RED_ZONE
        frame.words[0] = sentinel
        self._frame_ref = ctypes.byref(frame)
        self._native = machine.interrupts.fast.native

    def returned(self, rip: int | None = None) -> bool:
        """True when a call is running and RIP (read unless given) is at the sentinel or
        just past its hlt (asked after every slice)."""
        if not self._clock_state.call_active:
            return False
        if rip is None:
            rip = self.machine.rip
        return rip == self.sentinel or rip == self.sentinel + len(HLT)

    def _arm_sentinel(self) -> None:
        """Make sure the hlt is there. The sentinel lies in the BIOS area, which the
        Multiboot2 memory map reports as reserved, so no kernel keeps data there and the
        hlt can stay (putting a byte back in available memory after every call cost
        70-110 us through Unicorn's code invalidation). Identity-mapped like the return
        address itself, so physical RAM is read directly (the C set-up does the same)."""
        if _call_arm_sentinel(*self._native, ctypes.c_uint64(self.sentinel)):
            raise RuntimeError(f"the call's return address {self.sentinel:#x} cannot hold its hlt")

    def call(self, function: str | int, args: Sequence[int | float], *, returns: str = "int",
             max_instructions: int | None = None, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> int | float:
        machine = self.machine
        if self._clock_state.call_active:
            raise RuntimeError("a guest call is already running (calls do not nest)")
        address = machine.symbols.resolve(function)
        if any(isinstance(a, float) for a in args) or len(args) - len(INTEGER_REGISTERS) > CALL_STACK_WORDS:
            self._enter_from_python(address, args)
        else:
            self._enter(address, args)
        self._clock_state.call_active = 1
        try:
            stop = machine.run(max_instructions=max_instructions, timeout=timeout)
        except BaseException:
            machine.uc.context_restore(self._saved)   # a bad limit, Ctrl-C: the guest is where it was
            raise
        finally:
            self._clock_state.call_active = 0
        if stop.reason != StopReason.RETURNED:
            from unikernel_sim.diagnostics.report import build_report

            name = function if isinstance(function, str) else f"{function:#x}"
            report = f"guest call {name}() failed: {build_report(machine, stop).text()}"
            raise GuestCallError(name, stop, report)
        return self._leave(returns)

    def _enter(self, address: int, args: Sequence[int]) -> None:
        """Integer arguments only, the frame within a page: one call into C."""
        frame = self._frame
        count = min(len(args), len(INTEGER_REGISTERS))
        frame.integer_count = count
        for i in range(count):
            frame.integers[i] = int(args[i]) & MASK64                # numpy integers too
        stacked = args[count:]
        frame.stack_count = len(stacked)
        for i, value in enumerate(stacked, 1):
            frame.words[i] = int(value) & MASK64
        frame.function = address
        status = _call_enter(*self._native, self._saved_address, self._frame_ref)
        if status == CALL_UNMAPPED:
            rsp = self.machine.registers.read(x86.UC_X86_REG_RSP)
            raise RuntimeError(f"the guest stack below RSP {rsp:#x} is not mapped")
        if status:
            raise RuntimeError(f"the call's return address {self.sentinel:#x} cannot hold its hlt")

    def _enter_from_python(self, address: int, args: Sequence[int | float]) -> None:
        """Float arguments (XMM registers), or more stack words than a page holds."""
        machine, uc = self.machine, self.machine.uc
        uc.context_update(self._saved)
        integers = [a for a in args if not isinstance(a, float)]
        floats = [a for a in args if isinstance(a, float)]
        stack_args = integers[len(INTEGER_REGISTERS):] + floats[len(VECTOR_REGISTERS):]
        registers = machine.registers
        rsp = registers.read(x86.UC_X86_REG_RSP) - RED_ZONE
        rsp -= 8 * len(stack_args)
        rsp &= ~0xF                                      # aligned at the call instruction
        rsp -= 8                                         # the return address
        frame = struct.pack("<Q", self.sentinel) + b"".join(self._stack_word(a) for a in stack_args)
        if not (len(frame) <= PAGE and machine.interrupts.fast.write_virtual(rsp, frame)
                or machine.write_virtual(rsp, frame)):
            raise RuntimeError(f"the guest stack at {rsp:#x} is not mapped")
        self._arm_sentinel()
        for register, value in zip(VECTOR_REGISTERS, floats):
            uc.reg_write(register, int.from_bytes(self._float_bytes(value), "little"))
        count = min(len(integers), len(INTEGER_REGISTERS))
        registers.write_many(INTEGER_REGISTERS[:count] + SETUP_REGISTERS,
                             [int(value) & MASK64 for value in integers[:count]]
                             + [min(len(floats), len(VECTOR_REGISTERS)), rsp, address])

    def _leave(self, returns: str) -> int | float:
        """The return value, with the guest's registers put back as they were."""
        if returns in ("int", "int32", "int64"):
            return _signed(_call_leave(*self._native, self._saved_address, self._frame_ref), returns)
        value = self._return_value(returns)
        self.machine.uc.context_restore(self._saved)
        return value

    @staticmethod
    def _float_bytes(value: float) -> bytes:
        return struct.pack("<f", value) if isinstance(value, F32) else struct.pack("<d", value)

    def _stack_word(self, value: int | float) -> bytes:
        if isinstance(value, float):
            return self._float_bytes(value).ljust(8, b"\0")
        return struct.pack("<Q", value & MASK64)

    def _return_value(self, returns: str) -> int | float:
        uc = self.machine.uc
        if returns == "float":
            low = uc.reg_read(x86.UC_X86_REG_XMM0) & 0xFFFFFFFF
            return struct.unpack("<f", low.to_bytes(4, "little"))[0]
        if returns == "double":
            low = uc.reg_read(x86.UC_X86_REG_XMM0) & MASK64
            return struct.unpack("<d", low.to_bytes(8, "little"))[0]
        return _signed(self.machine.registers.read(x86.UC_X86_REG_RAX), returns)
