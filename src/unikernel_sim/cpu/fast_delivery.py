"""External interrupts delivered in C (cpu/_irq_delivery.c) when nothing unusual
happens on the way: the gate, its code segment and the stack are all there and the
privilege level does not change. That is almost every IRQ a kernel takes, and in
Python (cpu/delivery.py) it cost ~300 us of page walks and register reads.

The C side declines anything else before changing any state, and Python delivers
the interrupt from scratch, so the reference path decides every fault, #DF and
triple fault; the frames are the same bytes either way (tests/interrupts run the
frame tests with the C path on and off).
"""
from __future__ import annotations

import ctypes

from unicorn import Uc
from unicorn import x86_const as x86

from unikernel_sim.cpu import _vclock
from unikernel_sim.cpu.unicorn_compat import (
    HF_INHIBIT_IRQ, context_address, context_offsets, engine_handle, native_function_address,
)

DELIVERED = 0
DECLINED_REASONS = {1: "real or virtual-8086 mode", 2: "gate", 3: "code segment or privilege change", 4: "stack"}


class IrqContext(ctypes.Structure):
    """Mirror of struct irq_ctx (_irq_delivery.h)."""

    _fields_ = [("reg_read", ctypes.c_void_p), ("reg_write", ctypes.c_void_p), ("mem_read", ctypes.c_void_p),
                ("mem_write", ctypes.c_void_p), ("ram_size", ctypes.c_uint64), ("ram_host", ctypes.c_void_p),
                *((name, ctypes.c_int64) for name in ("reg_rip", "reg_rsp", "reg_rflags", "reg_cs", "reg_ss",
                                                       "reg_cr0", "reg_cr3", "reg_cr4", "reg_msr", "reg_idtr",
                                                       "reg_gdtr", "reg_tr")),
                ("delivered", ctypes.c_uint64), ("declined", ctypes.c_uint64),
                ("context_save", ctypes.c_void_p), ("context_restore", ctypes.c_void_p), ("context", ctypes.c_void_p),
                ("hflags_offset", ctypes.c_int64), ("old_exception_offset", ctypes.c_int64),
                ("inhibit_irq_mask", ctypes.c_uint64), ("last_return_rip", ctypes.c_uint64),
                ("last_old_rsp", ctypes.c_uint64), ("last_new_rsp", ctypes.c_uint64),
                ("last_long_mode", ctypes.c_uint64)]


_lib = ctypes.CDLL(_vclock.__file__)
_irq_deliver = _lib.irq_deliver
_irq_deliver.restype = ctypes.c_int
_irq_deliver.argtypes = [ctypes.c_void_p, ctypes.POINTER(IrqContext), ctypes.c_uint32]
_irq_ready = _lib.irq_ready
_irq_ready.restype = ctypes.c_int
_irq_ready.argtypes = [ctypes.c_void_p, ctypes.POINTER(IrqContext)]
_guest_write_virtual = _lib.guest_write_virtual
_guest_write_virtual.restype = ctypes.c_int
_guest_write_virtual.argtypes = [ctypes.c_void_p, ctypes.POINTER(IrqContext), ctypes.c_uint64, ctypes.c_char_p,
                                 ctypes.c_uint64]
_irq_clear_exception_in_flight = _lib.irq_clear_exception_in_flight
_irq_clear_exception_in_flight.restype = None
_irq_clear_exception_in_flight.argtypes = [ctypes.c_void_p, ctypes.POINTER(IrqContext)]


class FastDelivery:
    def __init__(self, uc: Uc, ram_size: int, ram_host: int, enabled: bool = True) -> None:
        self.uc = uc
        self.enabled = enabled
        c = self.context = IrqContext()
        c.reg_read = native_function_address("uc_reg_read")
        c.reg_write = native_function_address("uc_reg_write")
        c.mem_read = native_function_address("uc_mem_read")
        c.mem_write = native_function_address("uc_mem_write")
        c.ram_size, c.ram_host = ram_size, ram_host
        c.reg_rip, c.reg_rsp, c.reg_rflags = x86.UC_X86_REG_RIP, x86.UC_X86_REG_RSP, x86.UC_X86_REG_RFLAGS
        c.reg_cs, c.reg_ss = x86.UC_X86_REG_CS, x86.UC_X86_REG_SS
        c.reg_cr0, c.reg_cr3, c.reg_cr4 = x86.UC_X86_REG_CR0, x86.UC_X86_REG_CR3, x86.UC_X86_REG_CR4
        c.reg_msr = x86.UC_X86_REG_MSR
        c.reg_idtr, c.reg_gdtr, c.reg_tr = x86.UC_X86_REG_IDTR, x86.UC_X86_REG_GDTR, x86.UC_X86_REG_TR
        c.context_save = native_function_address("uc_context_save")
        c.context_restore = native_function_address("uc_context_restore")
        self._context = uc.context_save()                  # kept alive: C saves into it
        c.context = context_address(self._context)
        offsets = context_offsets()
        c.hflags_offset, c.old_exception_offset = offsets.hflags, offsets.old_exception
        c.inhibit_irq_mask = HF_INHIBIT_IRQ
        self._handle = engine_handle(uc)
        self._pointer = ctypes.pointer(c)

    @property
    def native(self) -> tuple[object, ctypes._Pointer]:
        """(engine handle, pointer to the context) for other C code that walks pages and
        writes registers through the same function pointers (_guest_call.c)."""
        return self._handle, self._pointer

    def ready(self) -> bool:
        """Whether the CPU takes an external interrupt now: IF set, no STI/MOV SS shadow."""
        return bool(_irq_ready(self._handle, self._pointer))

    def clear_exception_in_flight(self) -> None:
        """unicorn_compat.clear_exception_in_flight (Q2) without Python's context copy."""
        _irq_clear_exception_in_flight(self._handle, self._pointer)

    def write_virtual(self, virtual: int, data: bytes) -> bool:
        """Write data at virtual through the guest's page tables (at most two pages, e.g.
        a guest call's return address); False, with nothing written, if unmapped."""
        return _guest_write_virtual(self._handle, self._pointer, virtual, data, len(data)) == 0

    def deliver(self, vector: int) -> bool:
        """Deliver external interrupt vector at the current RIP; False if the C path
        declined, with nothing changed (last_return_rip still says where it was)."""
        if not self.enabled:
            return False
        return _irq_deliver(self._handle, self._pointer, vector) == DELIVERED

    @property
    def counts(self) -> tuple[int, int]:
        """(delivered in C, handed back to Python)."""
        return self.context.delivered, self.context.declined
