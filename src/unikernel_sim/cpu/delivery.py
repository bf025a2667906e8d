"""Exception and interrupt delivery through the guest's own IDT.

Unicorn never uses the guest IDT (docs/unicorn-quirks.md, Q3), so the simulator does what the
processor would (Intel SDM vol. 3A, 6.12 "Exception and interrupt handling",
6.14 "Exception and interrupt handling in 64-bit mode"):

  1. fetch the gate (16 bytes in IA-32e mode, 8 in protected mode) and check
     the IDT limit, the gate type, DPL (for INT n / INT3 / INTO only) and P;
  2. check the target code segment and find the new privilege level;
  3. pick the stack: IST (64-bit), or the TSS stack for a privilege change,
     or the current one; in 64-bit mode align it down to 16 bytes;
  4. push SS:RSP (always in 64-bit mode), RFLAGS, CS, RIP and the error code;
  5. load CS:RIP, clear TF/NT/RF/VM, and clear IF for an interrupt gate.

A fault while doing this becomes the next event; SDM table 6-5 decides when
two faults make a #DF, and a fault while delivering #DF is a triple fault,
which ends the run with the whole chain. `iret`/`iretq` then run natively.
"""
from __future__ import annotations

import struct

from unicorn import Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import (
    CONTRIBUTORY, CR0, EFER, MSR, RFLAGS, GateType, PageFaultError, SelectorError, Vector, has_error_code, is_canonical,
    is_fault, short_name,
)
from unikernel_sim.cpu.unicorn_compat import set_cpl
from unikernel_sim.memory.guest_memory import GuestMemory
from unikernel_sim.records import Record

TSS64_RSP0 = 0x04
TSS64_IST1 = 0x24
TSS32_ESP0 = 0x04

KIND_EXCEPTION = "exception"     # raised by the CPU while executing an instruction
KIND_SOFTWARE = "software"       # INT n, INT3, INTO: RIP already past the instruction
KIND_EXTERNAL = "external"       # a hardware IRQ injected by the simulator


class Event(Record):
    """An interrupt or exception to deliver through the IDT."""

    vector: int
    kind: str
    error_code: int | None
    return_rip: int
    cr2: int | None = None
    restart_rip: int | None = None   # INT n: the instruction itself, where a fault in delivery points

    @property
    def fault_rip(self) -> int:
        """Where a fault raised while delivering this event returns to (SDM 6.5)."""
        return self.restart_rip if self.restart_rip is not None else self.return_rip

    def label(self) -> str:
        code = f" error {self.error_code:#x}" if self.error_code is not None else ""
        if self.kind == KIND_EXTERNAL:
            return f"IRQ vector {self.vector:#x}"
        if self.kind == KIND_SOFTWARE:
            return f"INT {self.vector:#x} ({short_name(self.vector)})"
        return f"{short_name(self.vector)}{code}"


class DeliveryFault(Exception):
    """A fault raised while delivering an event (becomes the next event)."""

    def __init__(self, vector: int, error_code: int | None, reason: str, cr2: int | None = None) -> None:
        super().__init__(reason)
        self.vector = vector
        self.error_code = error_code
        self.reason = reason
        self.cr2 = cr2


class DeliveryStep(Record):
    """One event of a delivery chain, and why delivering it faulted (if it did)."""

    event: Event
    failure: str | None       # why delivering it faulted (None: delivered)


class DeliveryOutcome(Record):
    """A delivery's whole chain: the events in order and whether it ended in a triple fault."""

    steps: list[DeliveryStep]
    triple_fault: bool


def pushed_flags(event: Event, rflags: int) -> int:
    """The RFLAGS image in the frame: RF=1 for fault-class exceptions (SDM vol. 3A
    17.3.1.1), 0 for INT n (RF is cleared as it starts), as-is otherwise."""
    if event.kind == KIND_SOFTWARE:
        return rflags & ~RFLAGS.RF
    if event.kind == KIND_EXCEPTION and is_fault(event.vector):
        return rflags | RFLAGS.RF
    return rflags


def makes_double_fault(first: int, second: int) -> bool:
    """SDM vol. 3A table 6-5 (conditions for generating a double fault)."""
    if first in CONTRIBUTORY:
        return second in CONTRIBUTORY
    if first == Vector.PF:
        return second in CONTRIBUTORY or second == Vector.PF
    return False


class InterruptDelivery:
    def __init__(self, uc: Uc, memory: GuestMemory) -> None:
        self.uc = uc
        self.memory = memory

    # --- the event loop of one delivery -----------------------------------------
    def deliver(self, event: Event) -> DeliveryOutcome:
        steps: list[DeliveryStep] = []
        current = event
        while True:
            try:
                self._deliver_once(current)
                steps.append(DeliveryStep(current, None))
                return DeliveryOutcome(steps, triple_fault=False)
            except DeliveryFault as fault:
                steps.append(DeliveryStep(current, fault.reason))
                rip = current.fault_rip
                if current.vector == Vector.DF and current.kind == KIND_EXCEPTION:
                    steps.append(DeliveryStep(Event(fault.vector, KIND_EXCEPTION, fault.error_code,
                                                    rip, fault.cr2), "triple fault"))
                    return DeliveryOutcome(steps, triple_fault=True)
                if current.kind == KIND_EXCEPTION and makes_double_fault(current.vector, fault.vector):
                    steps.append(DeliveryStep(Event(fault.vector, KIND_EXCEPTION, fault.error_code,
                                                    rip, fault.cr2), "became #DF"))
                    current = Event(Vector.DF, KIND_EXCEPTION, 0, rip)
                else:
                    current = Event(fault.vector, KIND_EXCEPTION, fault.error_code, rip, fault.cr2)
                if current.vector == Vector.PF and current.cr2 is not None:
                    self.uc.reg_write(x86.UC_X86_REG_CR2, current.cr2)

    def _deliver_once(self, event: Event) -> None:
        cr0 = self.uc.reg_read(x86.UC_X86_REG_CR0)
        if not cr0 & CR0.PE:
            raise DeliveryFault(Vector.GP, 0, "real-mode interrupt delivery is not emulated")
        with self.memory.batch():                       # one walk per page for the whole delivery
            if self.uc.msr_read(MSR.EFER) & EFER.LMA:
                self._deliver_long(event)
            else:
                self._deliver_protected(event)

    # --- helpers ------------------------------------------------------------------
    def _ext(self, event: Event) -> int:
        return 0 if event.kind == KIND_SOFTWARE else SelectorError.EXT

    def _read(self, address: int, length: int, what: str) -> bytes:
        data = self.memory.read(address, length)
        if data is None:
            raise DeliveryFault(Vector.PF, 0, f"{what} at {address:#x} is not mapped", cr2=address)
        return data

    def _write_stack(self, address: int, data: bytes, word: int) -> None:
        """Supervisor write of the frame: #PF if a page is absent or read-only (CR0.WP).
        Checked from the top down, the order the processor pushes in, so CR2 names
        the first slot that could not be written."""
        write_protect = bool(self.uc.reg_read(x86.UC_X86_REG_CR0) & CR0.WP)
        for offset in reversed(range(0, len(data), word)):
            target = address + offset
            walk = self.memory.translate(target)
            if walk.physical is None:
                raise DeliveryFault(Vector.PF, PageFaultError.W, f"stack page at {target:#x} is not present",
                                    cr2=target)
            if write_protect and not walk.writable:
                raise DeliveryFault(Vector.PF, PageFaultError.W | PageFaultError.P,
                                    f"stack page at {target:#x} is read-only", cr2=target)
            chunk = data[offset:offset + word]
            if not self.memory.ram.contains(walk.physical, len(chunk)):
                raise DeliveryFault(Vector.PF, PageFaultError.W, f"stack at {target:#x} lies outside guest RAM",
                                    cr2=target)
        written = self.memory.write(address, data)
        assert written

    def _table(self, reg: int) -> tuple[int, int]:
        _, base, limit, _ = self.uc.reg_read(reg)
        return base, limit

    def _code_segment(self, selector: int, ext: int, long_mode: bool) -> int:
        """Check the handler's code segment; returns its DPL (the new CPL)."""
        index = selector & ~7
        if index == 0:
            raise DeliveryFault(Vector.GP, ext, "gate selector is null")
        if selector & 4:
            raise DeliveryFault(Vector.GP, index | ext, "gate selector points into an LDT (not emulated)")
        base, limit = self._table(x86.UC_X86_REG_GDTR)
        if index + 7 > limit:
            raise DeliveryFault(Vector.GP, index | ext, f"gate selector {selector:#x} is beyond the GDT limit")
        (descriptor,) = struct.unpack("<Q", self._read(base + index, 8, "GDT entry"))
        access = (descriptor >> 40) & 0xFF
        is_code = access & 0x18 == 0x18
        if not is_code:
            raise DeliveryFault(Vector.GP, index | ext, f"gate selector {selector:#x} is not a code segment")
        if not access & 0x80:
            raise DeliveryFault(Vector.NP, index | ext, f"code segment {selector:#x} is not present")
        if long_mode and not (descriptor >> 53) & 1:
            raise DeliveryFault(Vector.GP, index | ext, f"code segment {selector:#x} is not a 64-bit segment")
        conforming = bool(access & 0x04)
        dpl = (access >> 5) & 3
        return self._cpl() if conforming else dpl

    def _cpl(self) -> int:
        return self.uc.reg_read(x86.UC_X86_REG_CS) & 3

    def _tss_value(self, offset: int, size: int, ext: int) -> int:
        selector, base, limit, _ = self.uc.reg_read(x86.UC_X86_REG_TR)
        if selector & ~7 == 0 or offset + size - 1 > limit:
            raise DeliveryFault(Vector.TS, (selector & ~3) | ext,
                                f"TSS (TR {selector:#x}, limit {limit:#x}) has no field at {offset:#x}")
        return int.from_bytes(self._read(base + offset, size, "TSS"), "little")

    def _gate_checks(self, event: Event, gate_type: int, dpl: int, present: bool,
                     valid_types: tuple[int, ...], gate_error: int) -> None:
        if gate_type not in valid_types:
            kind = "task gate (not emulated)" if gate_type == GateType.TASK else f"type {gate_type:#x}"
            raise DeliveryFault(Vector.GP, gate_error, f"IDT entry {event.vector:#x} is a {kind}")
        if event.kind == KIND_SOFTWARE and dpl < self._cpl():
            raise DeliveryFault(Vector.GP, gate_error, f"IDT entry {event.vector:#x} DPL {dpl} < CPL")
        if not present:
            raise DeliveryFault(Vector.NP, gate_error, f"IDT entry {event.vector:#x} is not present")

    def _fetch_gate(self, event: Event, size: int) -> tuple[bytes, int, int]:
        """The gate's bytes, the EXT bit and the IDT-format error code for faults about it."""
        ext = self._ext(event)
        gate_error = event.vector * 8 | SelectorError.IDT | ext
        idt_base, idt_limit = self._table(x86.UC_X86_REG_IDTR)
        if event.vector * size + size - 1 > idt_limit:
            raise DeliveryFault(Vector.GP, gate_error,
                                f"vector {event.vector:#x} is beyond the IDT limit {idt_limit:#x}")
        return self._read(idt_base + event.vector * size, size, "IDT entry"), ext, gate_error

    # --- IA-32e mode ---------------------------------------------------------------
    def _deliver_long(self, event: Event) -> None:
        uc = self.uc
        gate, ext, gate_error = self._fetch_gate(event, 16)
        offset_low, selector, ist_byte, attributes, offset_mid, offset_high = struct.unpack_from("<HHBBHI", gate)
        self._gate_checks(event, attributes & 0xF, (attributes >> 5) & 3, bool(attributes & 0x80),
                          (GateType.INTERRUPT_32, GateType.TRAP_32), gate_error)
        target = offset_low | (offset_mid << 16) | (offset_high << 32)
        new_cpl = self._code_segment(selector, ext, long_mode=True)
        cpl = self._cpl()
        if new_cpl > cpl:
            raise DeliveryFault(Vector.GP, (selector & ~3) | ext, "handler code segment is less privileged")
        old_rsp = uc.reg_read(x86.UC_X86_REG_RSP)
        old_ss = uc.reg_read(x86.UC_X86_REG_SS)
        ist = ist_byte & 7
        if ist:
            rsp = self._tss_value(TSS64_IST1 + 8 * (ist - 1), 8, ext)
        elif new_cpl < cpl:
            rsp = self._tss_value(TSS64_RSP0 + 8 * new_cpl, 8, ext)
        else:
            rsp = old_rsp
        rsp &= ~0xF
        words = [event.return_rip, uc.reg_read(x86.UC_X86_REG_CS),
                 pushed_flags(event, uc.reg_read(x86.UC_X86_REG_RFLAGS)), old_rsp, old_ss]
        if event.error_code is not None:
            words.insert(0, event.error_code)
        frame = struct.pack(f"<{len(words)}Q", *words)
        new_rsp = (rsp - len(frame)) & 0xFFFFFFFFFFFFFFFF
        if not is_canonical(new_rsp) or not is_canonical(rsp - 1):
            raise DeliveryFault(Vector.SS, ext, f"interrupt stack {new_rsp:#x} is not canonical")
        self._write_stack(new_rsp, frame, 8)
        self._commit(selector, new_cpl, target, new_rsp, attributes & 0xF == GateType.INTERRUPT_32,
                     new_cpl if new_cpl < cpl else None)

    # --- protected mode ---------------------------------------------------------------
    def _deliver_protected(self, event: Event) -> None:
        uc = self.uc
        gate, ext, gate_error = self._fetch_gate(event, 8)
        offset_low, selector, _, attributes, offset_high = struct.unpack_from("<HHBBH", gate)
        gate_type = attributes & 0xF
        self._gate_checks(event, gate_type, (attributes >> 5) & 3, bool(attributes & 0x80),
                          (GateType.INTERRUPT_32, GateType.TRAP_32, GateType.INTERRUPT_16, GateType.TRAP_16), gate_error)
        wide = gate_type in (GateType.INTERRUPT_32, GateType.TRAP_32)
        target = offset_low | (offset_high << 16) if wide else offset_low
        new_cpl = self._code_segment(selector, ext, long_mode=False)
        cpl = self._cpl()
        if new_cpl > cpl:
            raise DeliveryFault(Vector.GP, (selector & ~3) | ext, "handler code segment is less privileged")
        old_esp = uc.reg_read(x86.UC_X86_REG_RSP) & 0xFFFFFFFF
        words = [event.return_rip & 0xFFFFFFFF, uc.reg_read(x86.UC_X86_REG_CS),
                 pushed_flags(event, uc.reg_read(x86.UC_X86_REG_EFLAGS))]
        new_ss = None
        if new_cpl < cpl:
            esp = self._tss_value(TSS32_ESP0 + 8 * new_cpl, 4, ext)
            new_ss = self._tss_value(TSS32_ESP0 + 8 * new_cpl + 4, 2, ext)
            words += [old_esp, uc.reg_read(x86.UC_X86_REG_SS)]
        else:
            esp = old_esp
        if event.error_code is not None:
            words.insert(0, event.error_code)
        size = 4 if wide else 2
        frame = b"".join(w.to_bytes(size, "little") for w in (x & ((1 << (8 * size)) - 1) for x in words))
        new_esp = (esp - len(frame)) & 0xFFFFFFFF
        self._write_stack(new_esp, frame, size)
        self._commit(selector, new_cpl, target, new_esp, gate_type in (GateType.INTERRUPT_32, GateType.INTERRUPT_16),
                     new_ss)

    def _commit(self, selector: int, new_cpl: int, target: int, new_rsp: int, interrupt_gate: bool,
                new_ss: int | None) -> None:
        """Load the handler's state. new_ss: on a privilege change, the null selector with
        RPL = new CPL (64-bit mode) or the TSS's SS0 (protected mode)."""
        uc = self.uc
        if new_ss is not None:
            set_cpl(uc, new_cpl)
            uc.reg_write(x86.UC_X86_REG_SS, new_ss)
        uc.reg_write(x86.UC_X86_REG_CS, (selector & ~3) | new_cpl)
        uc.reg_write(x86.UC_X86_REG_RSP, new_rsp)
        flags = uc.reg_read(x86.UC_X86_REG_RFLAGS) & ~(RFLAGS.TF | RFLAGS.NT | RFLAGS.RF | RFLAGS.VM)
        if interrupt_gate:
            flags &= ~RFLAGS.IF
        uc.reg_write(x86.UC_X86_REG_RFLAGS, flags)
        uc.reg_write(x86.UC_X86_REG_RIP, target)


def error_code_for(vector: int, kind: str, raw_error: int) -> int | None:
    """The error code pushed for an event: none for INT n and IRQs (SDM 6.13)."""
    if kind != KIND_EXCEPTION or not has_error_code(vector):
        return None
    return raw_error
