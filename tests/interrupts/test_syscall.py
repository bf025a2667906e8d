"""SYSCALL / SYSRET between ring 3 and ring 0, checked against the SDM (vol. 2B,
SYSCALL and SYSRET "Operation"; vol. 3A 5.8.8). Unicorn alone steps over SYSCALL
without entering the kernel; these tests pin the transition unisim performs."""
from __future__ import annotations

from interrupts.harness import (
    CODE64_SEL, DATA_SEL, HANDLERS, SYSRET_CODE_SEL, USER_CODE, USER_CODE_SEL, USER_DATA_SEL, USER_STACK_TOP,
    IdtGuest, run_long,
)

MSR_EFER, MSR_STAR, MSR_LSTAR, MSR_FMASK = 0xC0000080, 0xC0000081, 0xC0000082, 0xC0000084
EFER_SCE = 1
FMASK = 0x700                         # TF, IF, DF cleared on entry, as Linux does (and more)
USER_FLAGS = 0x202                    # IF and the always-one bit
ARITHMETIC_FLAGS = 0x8D5             # CF PF AF ZF SF OF: the handler's own cmp sets these
SYSRET_BASE = USER_CODE_SEL           # STAR[63:48]: SYSRET loads SS = base + 8, CS = base + 16
SLOT = 0x11C100
SYSCALL_ENTRY = HANDLERS              # the first (only) entry of IdtGuest.handlers lands here
UNUSED_VECTOR = 0x90
RETURN_VALUE = 0x77
SYSRETQ = ".byte 0x48, 0x0f, 0x07"    # REX.W 0F 07

ENABLE_SYSCALL = f"""
    mov ecx, {MSR_EFER:#x}
    rdmsr
    or eax, {EFER_SCE}
    wrmsr
    mov ecx, {MSR_STAR:#x}
    xor eax, eax
    mov edx, {(SYSRET_BASE << 16) | CODE64_SEL:#x}
    wrmsr
    mov ecx, {MSR_LSTAR:#x}
    mov eax, {SYSCALL_ENTRY:#x}
    xor edx, edx
    wrmsr
    mov ecx, {MSR_FMASK:#x}
    mov eax, {FMASK:#x}
    xor edx, edx
    wrmsr
"""
TO_RING3 = (f"push {USER_DATA_SEL:#x}\npush {USER_STACK_TOP:#x}\npush {USER_FLAGS:#x}\npush {USER_CODE_SEL:#x}\n"
            f"mov rax, {USER_CODE:#x}\npush rax")

# rax = 1: record what SYSCALL left, return RETURN_VALUE with SYSRETQ.
# rax = 2: record what the user saw after SYSRET, then end the run.
KERNEL_ENTRY = f"""
    cmp rax, 1
    jne second
    mov [{SLOT:#x}], rcx
    mov [{SLOT + 8:#x}], r11
    pushfq
    pop qword ptr [{SLOT + 16:#x}]
    mov ax, cs
    mov [{SLOT + 24:#x}], ax
    mov ax, ss
    mov [{SLOT + 32:#x}], ax
    mov [{SLOT + 40:#x}], rsp
    mov eax, {RETURN_VALUE}
    {SYSRETQ}
second:
    mov [{SLOT + 48:#x}], rbx
    mov [{SLOT + 56:#x}], rsi
    mov [{SLOT + 64:#x}], rdi
    mov [{SLOT + 72:#x}], rcx
    mov [{SLOT + 80:#x}], r11
    mov al, 0
    out 0xf4, al
"""
USER = """
    mov eax, 1
    syscall
    mov rbx, rax
    xor esi, esi
    mov si, cs
    xor edi, edi
    mov di, ss
    pushfq
    pop r12
    mov eax, 2
    syscall
"""
FIRST_SYSCALL_END = USER_CODE + 5 + 2                           # mov eax, imm32; syscall
SECOND_SYSCALL_END = FIRST_SYSCALL_END + 3 + 2 + 3 + 2 + 3 + 1 + 2 + 5 + 2


def test_syscall_enters_at_lstar_in_ring0_and_sysret_returns_to_ring3(tmp_path):
    guest = IdtGuest(before=ENABLE_SYSCALL + TO_RING3, fault="iretq", user_code=USER,
                     handlers={UNUSED_VECTOR: KERNEL_ENTRY})
    _, _, result = run_long(guest, tmp_path)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    ram = result.machine.ram
    words = [ram.u64(SLOT + 8 * i) for i in range(11)]
    rcx, r11, kernel_flags, kernel_cs, kernel_ss, kernel_rsp = words[:6]
    returned, user_cs, user_ss, rcx2, r11_2 = words[6:]

    assert rcx == FIRST_SYSCALL_END                            # RCX <- next RIP
    assert r11 == USER_FLAGS                                   # R11 <- RFLAGS
    assert kernel_flags & ~ARITHMETIC_FLAGS == USER_FLAGS & ~FMASK   # RFLAGS &= ~IA32_FMASK
    assert kernel_cs & 0xFFFF == CODE64_SEL                    # STAR[47:32] & 0xFFFC, CPL 0
    assert kernel_ss & 0xFFFF == DATA_SEL                      # STAR[47:32] + 8
    assert kernel_rsp == USER_STACK_TOP                        # SYSCALL does not switch stacks
    assert returned == RETURN_VALUE
    assert user_cs == SYSRET_CODE_SEL                          # STAR[63:48] + 16, RPL 3
    assert user_ss == USER_DATA_SEL                            # STAR[63:48] + 8, RPL 3
    assert rcx2 == SECOND_SYSCALL_END
    assert r11_2 & ~ARITHMETIC_FLAGS == USER_FLAGS             # SYSRET restored IF from R11
    assert result.machine.fast_syscall.count == 2


def test_syscall_without_efer_sce_raises_ud(tmp_path):
    frame, fault_address, result = run_long(IdtGuest(fault="syscall"), tmp_path)
    assert frame is not None, result.stop.summary
    assert frame.vector == 6
    assert frame.words[0] == fault_address                    # a fault: RIP at the SYSCALL
    assert result.machine.fast_syscall.count == 0


def test_syscall_in_protected_mode_raises_ud(tmp_path):
    """Intel: SYSCALL exists in 64-bit mode only (no IA32_CSTAR path as on AMD)."""
    from interrupts.harness import run_protected

    frame, fault_address, result = run_protected(IdtGuest(fault="syscall"), tmp_path)
    assert frame is not None, result.stop.summary
    assert frame.vector == 6 and frame.words[0] == fault_address


# --- SYSENTER (32-bit protected mode, SDM vol. 2B SYSENTER "Operation") -----------------------
MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP = 0x174, 0x175, 0x176
SYSENTER_STACK = 0x7000
FLAT_CODE32_SEL = 0x08                # the Multiboot2 hand-off GDT: flat code, then flat data


def sysenter_guest(make_guest, sysenter_cs: int) -> tuple[str, int]:
    """Returns the image and the SYSENTER's address; the entry point records EFLAGS and exits."""
    import guestkit

    base = guestkit.code_address()
    entry = base + 0x100

    def body(entry_address: int) -> bytes:
        return guestkit.assemble(f"""
            mov ecx, {MSR_SYSENTER_CS:#x}
            mov eax, {sysenter_cs:#x}
            xor edx, edx
            wrmsr
            mov ecx, {MSR_SYSENTER_ESP:#x}
            mov eax, {SYSENTER_STACK:#x}
            wrmsr
            mov ecx, {MSR_SYSENTER_EIP:#x}
            mov eax, {entry_address:#x}
            wrmsr
            push 0x202
            popfd
            sysenter
            hlt
        """, base)

    code = body(entry)
    kernel = guestkit.assemble(f"pushfd\npop dword ptr [{SLOT:#x}]\nmov al, 0\nout 0xf4, al", entry)
    return make_guest(code.ljust(entry - base, b"\x90") + kernel), base + len(code) - 3   # sysenter, hlt


def test_sysenter_enters_at_sysenter_eip_on_sysenter_esp(make_guest):
    from unikernel_sim.run import boot

    path, _ = sysenter_guest(make_guest, FLAT_CODE32_SEL)
    result = boot(path)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    state = result.machine.cpu_state()
    assert state.segments["cs"] == FLAT_CODE32_SEL                # SYSENTER_CS & 0xFFFC
    assert state.segments["ss"] == FLAT_CODE32_SEL + 8            # SYSENTER_CS + 8
    assert state.gpr["rsp"] & 0xFFFFFFFF == SYSENTER_STACK        # the pushfd was popped again
    flags = result.machine.ram.u32(SLOT)
    assert not flags & 0x200                                      # IF cleared (VM and RF too)
    assert result.machine.fast_syscall.count == 1


def test_sysenter_with_a_null_sysenter_cs_raises_gp(make_guest):
    """#GP(0); with no IDT loaded the report names the undeliverable #GP at the SYSENTER."""
    from unikernel_sim.run import boot

    path, sysenter_address = sysenter_guest(make_guest, 0)
    result = boot(path)
    assert result.machine.interrupts.last_exception.vector == 13
    assert result.machine.interrupts.last_exception.rip == sysenter_address
    assert result.machine.fast_syscall.count == 0
