"""MOV to CR0/CR4 writes that hardware refuses with #GP(0) and Unicorn accepts.

SDM vol. 3A 9.8.5 (initializing IA-32e mode) and the MOV CRn reference (vol. 2B):
  - CR4.PAE cleared while IA-32e mode is active (EFER.LMA = 1)        -> #GP(0)
  - CR0.PG set while EFER.LME = 1 and CR4.PAE = 0                     -> #GP(0)
  - CR0.PG cleared in 64-bit mode (CS.L = 1)                          -> #GP(0)
  - CR0.PG set with CR0.PE clear                                      -> #GP(0)
Unicorn lets all of them through: a kernel that clears PAE in long mode then
loops through page faults with a frozen instruction count, one that enables
paging without PAE runs on in the wrong mode. The guard finds every
`mov crN, reg` (0F 22 /r) in the kernel's executable bytes at load time and
stops before each: a one-address code hook when the machine does not count
instructions (nothing runs for other instructions), the C counting hook's own
address check when it does (Unicorn walks every code hook's bounds for every
instruction once a whole-range hook exists: five Python hooks made
deterministic mode 2x slower). The check reads the value about to be written and
raises #GP(0) at the instruction, which then never executes, as on hardware;
an allowed write runs once. Code the guest writes or copies later is not
covered.

The same stops serve RDMSR (0F 32) and WRMSR (0F 30), which Unicorn cannot hook:
an MSR a device owns (cpu/msr_emulation.py: IA32_APIC_BASE) is read or written
there and the instruction skipped; any other runs in Unicorn.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_CODE, Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import CR0, CR4, EFER, GPR_NAMES, MSR, Vector
from unikernel_sim.cpu.unicorn_compat import in_64bit_mode
from unikernel_sim.cpu.vclock import VirtualClock

if TYPE_CHECKING:
    from unikernel_sim.cpu.msr_emulation import ModelSpecificRegisters

MOV_TO_CR = b"\x0f\x22"
RDMSR, WRMSR = b"\x0f\x32", b"\x0f\x30"
MSR_INSTRUCTION_LENGTH = 2
REX_FIRST, REX_LAST = 0x40, 0x4F
REX_R, REX_B = 0x4, 0x1
MODRM_REGISTER_FORM = 0b11
_PE, _PG, _PAE, _LME, _LMA = int(CR0.PE), int(CR0.PG), int(CR4.PAE), int(EFER.LME), int(EFER.LMA)
_REGISTERS = [getattr(x86, f"UC_X86_REG_{name.upper()}") for name in GPR_NAMES]


def refused_write(control: int, value: int, cr0: int, cr4: int, efer: int, long_mode_code: bool) -> str | None:
    """Why hardware raises #GP(0) for `mov cr{control}, value` in this state, or None."""
    if control == 4 and efer & _LMA and not value & _PAE:
        return "clears CR4.PAE while IA-32e mode is active"
    if control == 0:
        if value & _PG and not value & _PE:
            return "sets CR0.PG with CR0.PE clear"
        if value & _PG and not cr0 & _PG and efer & _LME and not cr4 & _PAE:
            return "sets CR0.PG with EFER.LME = 1 and CR4.PAE = 0"
        if cr0 & _PG and not value & _PG and long_mode_code:
            return "clears CR0.PG in 64-bit mode"
    return None


def candidate_offsets(code: bytes) -> list[int]:
    """Offsets where a `mov crN, reg` may start: each 0F 22, and the byte before it
    when that could be a REX prefix (in 32-bit code it is an inc/dec instead, and
    the hook there simply finds no MOV to CR); and each RDMSR/WRMSR."""
    offsets = []
    position = code.find(MOV_TO_CR)
    while position != -1:
        offsets.append(position)
        if position > 0 and REX_FIRST <= code[position - 1] <= REX_LAST:
            offsets.append(position - 1)
        position = code.find(MOV_TO_CR, position + 1)
    for opcode in (RDMSR, WRMSR):
        position = code.find(opcode)
        while position != -1:
            offsets.append(position)
            position = code.find(opcode, position + 1)
    return sorted(offsets)


class ControlRegisterGuard:
    def __init__(self, uc: Uc, clock: VirtualClock, raise_fault: Callable[[int, int | None, int], None],
                 msrs: "ModelSpecificRegisters | None" = None) -> None:
        self.uc = uc
        self.msrs = msrs
        self.clock = clock
        self.raise_fault = raise_fault
        self.hooked: set[int] = set()                   # every address watched, either way
        self._code_hooks: dict[int, int] = {}           # address -> Unicorn hook handle
        self.refusals: list[tuple[int, str]] = []       # (rip, why) of each #GP raised
        clock.on_counting.append(self._move_to_counting_hook)

    def watch(self, address: int, code: bytes) -> None:
        """Stop before every possible MOV to CR in code, which executes at address."""
        new = [address + offset for offset in candidate_offsets(code) if address + offset not in self.hooked]
        self.hooked.update(new)
        if self.clock.per_instruction:
            new = self.clock.guard(new)                # the rest (past GUARD_MAX) get code hooks
        for rip in new:
            self._code_hooks[rip] = self.uc.hook_add(UC_HOOK_CODE, self._on_candidate, begin=rip, end=rip)

    def _move_to_counting_hook(self) -> None:
        for handle in self._code_hooks.values():
            self.uc.hook_del(handle)
        remaining = self.clock.guard(sorted(self._code_hooks))
        self._code_hooks = {rip: self.uc.hook_add(UC_HOOK_CODE, self._on_candidate, begin=rip, end=rip)
                            for rip in remaining}

    def _on_candidate(self, uc: Uc, address: int, size: int, _user) -> None:
        self.check_at(address)

    def check_at(self, address: int) -> bool:
        """Raise #GP(0) at address if the MOV to CR there must fault, or carry out the
        RDMSR/WRMSR there if a device owns its MSR; True if the instruction must not
        run in Unicorn (RIP has been moved past it, or to the fault)."""
        raw = bytes(self.uc.mem_read(address, 4))
        if raw[:2] in (RDMSR, WRMSR):
            return self._emulate_msr(address, raw[:2] == RDMSR)
        decoded = self._decode(raw)
        if decoded is None:
            return False
        uc = self.uc
        control, register = decoded
        value = uc.reg_read(_REGISTERS[register])
        long_mode_code = in_64bit_mode(uc)
        if not long_mode_code:
            value &= 0xFFFF_FFFF
        why = refused_write(control, value, uc.reg_read(x86.UC_X86_REG_CR0), uc.reg_read(x86.UC_X86_REG_CR4),
                            uc.msr_read(MSR.EFER), long_mode_code)
        if why is None:
            return False
        self.refusals.append((address, why))
        self.raise_fault(Vector.GP, 0, address)
        return True

    def _emulate_msr(self, address: int, read: bool) -> bool:
        if self.msrs is None:
            return False
        uc = self.uc
        msr = uc.reg_read(x86.UC_X86_REG_ECX) & 0xFFFFFFFF
        if read:
            value = self.msrs.read(msr)
            if value is None:
                return False
            uc.reg_write(x86.UC_X86_REG_RAX, value & 0xFFFFFFFF)
            uc.reg_write(x86.UC_X86_REG_RDX, value >> 32)
        else:
            value = (uc.reg_read(x86.UC_X86_REG_EDX) & 0xFFFFFFFF) << 32 | uc.reg_read(x86.UC_X86_REG_EAX) & 0xFFFFFFFF
            if not self.msrs.write(msr, value):
                return False
        self.clock.settle(address, before=True)          # from a hook: the block ends here
        if self.clock.counting:
            self.clock.state.instructions += 1            # it ran, here instead of in Unicorn
        uc.reg_write(x86.UC_X86_REG_RIP, address + MSR_INSTRUCTION_LENGTH)
        return True

    def _decode(self, raw: bytes) -> tuple[int, int] | None:
        """(control register, general register index) of `mov crN, reg`, or None."""
        rex = 0
        if raw and REX_FIRST <= raw[0] <= REX_LAST and in_64bit_mode(self.uc):
            rex, raw = raw[0], raw[1:]
        if len(raw) < 3 or raw[:2] != MOV_TO_CR or raw[2] >> 6 != MODRM_REGISTER_FORM:
            return None
        control = ((raw[2] >> 3) & 7) | (8 if rex & REX_R else 0)
        register = (raw[2] & 7) | (8 if rex & REX_B else 0)
        return control, register
