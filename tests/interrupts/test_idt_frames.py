"""Exception and interrupt frames pushed through the guest's own IDT, checked
byte for byte against the Intel SDM (vol. 3A: table 6-1 for which vectors
push an error code, 6.12.1/6.14.2 for the frame layout and 64-bit stack
alignment, 6.13 for error-code formats, 17.3.1.1 for the RF flag image,
table 6-5 for double faults)."""
from __future__ import annotations

import pytest

import guestkit

from interrupts.harness import (
    CODE64_SEL, COUNTER_SLOT, DATA_SEL, IST_TOPS, NOT_PRESENT_DATA, NP_DATA_SEL, NP_PAGE, RO_PAGE, STACK_TOP,
    TSS_SEL, Gate, GATE_TRAP, IdtGuest, run_long, run_protected,
)

RF = 1 << 16
TF = 1 << 8
IF = 1 << 9
FLAGS = 0x47                     # CF, PF, ZF and the always-one bit 1
HAS_ERROR_CODE = {8, 10, 11, 12, 13, 14, 17, 21}   # SDM table 6-1
assert NOT_PRESENT_DATA


def expect_long(frame, *, vector, rip, error=None, flags=FLAGS, old_rsp=STACK_TOP, stack_top=STACK_TOP):
    """Frame from the handler's RSP up: [error] RIP CS RFLAGS RSP SS, pushed on a 16-byte-aligned stack."""
    words = ([error] if error is not None else []) + [rip, CODE64_SEL, flags, old_rsp, DATA_SEL]
    assert frame.vector == vector
    assert frame.rsp == (stack_top & ~0xF) - 8 * len(words)
    assert frame.words[:len(words)] == words


# (id, guest, vector, error code, where RIP points, RFLAGS image)
FAULTS_LONG = [
    ("DE", IdtGuest(before="xor ecx, ecx\nxor edx, edx\nmov eax, 1", fault="div ecx"), 0, None, "fault", FLAGS | RF),
    ("DB-single-step", IdtGuest(flags=FLAGS | TF, fault="nop"), 1, None, "after", FLAGS | TF),
    ("BP", IdtGuest(fault="int3"), 3, None, "after", FLAGS),
    ("UD", IdtGuest(fault="ud2"), 6, None, "fault", FLAGS | RF),
    ("NM", IdtGuest(cr0_extra=0x8, fault="fld1"), 7, None, "fault", FLAGS | RF),
    ("DF", IdtGuest(before="mov ax, 0x1234", fault="mov ds, ax", gates={13: Gate(present=False)}),
     8, 0, "fault", FLAGS),
    ("TS", IdtGuest(fault="int3", gates={3: Gate(ist=1)}, tss_limit=0x20), 10, TSS_SEL, "fault", FLAGS | RF),
    ("NP-gate", IdtGuest(fault="int 0x40", gates={0x40: Gate(present=False)}), 11, 0x40 * 8 + 2, "fault",
     FLAGS | RF),
    ("NP-segment", IdtGuest(before=f"mov ax, {NP_DATA_SEL:#x}", fault="mov ds, ax"), 11, NP_DATA_SEL, "fault",
     FLAGS | RF),
    ("GP-selector", IdtGuest(before="mov ax, 0x1234", fault="mov ds, ax"), 13, 0x1234, "fault", FLAGS | RF),
    ("GP-noncanonical", IdtGuest(before="mov rbx, 0x8000000000000000", fault="mov rax, qword ptr [rbx]"),
     13, 0, "fault", FLAGS | RF),
    ("PF-write-read-only", IdtGuest(fault=f"mov qword ptr [{RO_PAGE:#x}], 1"), 14, 0x3, "fault", FLAGS | RF),
    ("PF-read-not-present", IdtGuest(fault=f"mov rax, qword ptr [{NP_PAGE + 8:#x}]"), 14, 0x0, "fault",
     FLAGS | RF),
    ("PF-write-not-present", IdtGuest(fault=f"mov qword ptr [{NP_PAGE:#x}], 1"), 14, 0x2, "fault", FLAGS | RF),
    ("MF", IdtGuest(cr0_extra=0x20, before="fninit\nmov word ptr [0x11c020], 0x37b\nfldcw word ptr [0x11c020]\n"
                    "fldz\nfld1\nfdivrp st(1), st(0)", fault="fwait"), 16, None, "fault", FLAGS | RF),
]


@pytest.mark.parametrize("name,guest,vector,error,rip_kind,flags", FAULTS_LONG, ids=[f[0] for f in FAULTS_LONG])
def test_long_mode_exception_frames(tmp_path, name, guest, vector, error, rip_kind, flags):
    frame, fault_address, result = run_long(guest, tmp_path)
    assert frame is not None, result.stop.summary
    instruction_length = {"int3": 1, "nop": 1}.get(guest.fault, 0)
    rip = fault_address + (instruction_length if rip_kind == "after" else 0)
    expect_long(frame, vector=vector, rip=rip, error=error, flags=flags)
    if vector == 14:
        assert result.machine.cpu_state().cr2 == {0x3: RO_PAGE, 0x0: NP_PAGE + 8, 0x2: NP_PAGE}[error]
    assert frame.handler_flags & (IF | TF) == 0


@pytest.mark.parametrize("vector", range(32))
def test_long_mode_int_n_for_every_exception_vector(tmp_path, vector):
    """INT n: a software interrupt never pushes an error code (SDM 6.13) and pushes RF=0."""
    frame, fault_address, result = run_long(IdtGuest(flags=FLAGS | RF, fault=f"int {vector:#x}"), tmp_path)
    assert frame is not None, result.stop.summary
    expect_long(frame, vector=vector, rip=fault_address + 2, flags=FLAGS)


def test_stack_segment_fault_from_a_non_canonical_interrupt_stack(tmp_path):
    """Delivery onto a non-canonical RSP raises #SS(0); its gate's IST stack takes the frame."""
    bad_rsp = 0x8000000000000000
    set_rsp = f"mov rsp, {bad_rsp:#x}"
    guest = IdtGuest(fault=set_rsp, after="int3", gates={12: Gate(ist=2)})
    frame, fault_address, result = run_long(guest, tmp_path)
    assert frame is not None, result.stop.summary
    int3_address = fault_address + len(guestkit.assemble(set_rsp, fault_address, bits=64))
    expect_long(frame, vector=12, rip=int3_address, error=0, flags=FLAGS | RF, old_rsp=bad_rsp,
                stack_top=IST_TOPS[2])


def test_ist_switches_stacks_and_aligns(tmp_path):
    guest = IdtGuest(before=f"mov rsp, {STACK_TOP - 8:#x}", fault="int 0x40", gates={0x40: Gate(ist=1)})
    frame, fault_address, _ = run_long(guest, tmp_path)
    expect_long(frame, vector=0x40, rip=fault_address + 2, old_rsp=STACK_TOP - 8, stack_top=IST_TOPS[1])


def test_misaligned_stack_is_aligned_down_before_the_push(tmp_path):
    guest = IdtGuest(before=f"mov rsp, {STACK_TOP - 24:#x}", fault="ud2")
    frame, fault_address, _ = run_long(guest, tmp_path)
    expect_long(frame, vector=6, rip=fault_address, flags=FLAGS | RF, old_rsp=STACK_TOP - 24,
                stack_top=STACK_TOP - 24)
    assert frame.rsp % 16 == 8    # five 8-byte words below a 16-byte boundary


@pytest.mark.parametrize("gate_type,if_in_handler", [(0xE, 0), (GATE_TRAP, IF)])
def test_interrupt_gate_clears_if_trap_gate_keeps_it(tmp_path, gate_type, if_in_handler):
    guest = IdtGuest(flags=FLAGS | IF, fault="int 0x40", gates={0x40: Gate(type=gate_type)})
    frame, fault_address, _ = run_long(guest, tmp_path)
    expect_long(frame, vector=0x40, rip=fault_address + 2, flags=FLAGS | IF)
    assert frame.handler_flags & IF == if_in_handler


def test_software_interrupt_above_gate_dpl_is_a_gp(tmp_path):
    """INT n checks the gate's DPL against CPL only for software interrupts (SDM 6.12.1.1)."""
    guest = IdtGuest(fault="int 0x40", gates={0x40: Gate(dpl=0)})
    frame, _, _ = run_long(guest, tmp_path)
    assert frame.vector == 0x40        # CPL 0 may use a DPL 0 gate


def test_vector_beyond_idt_limit_is_gp_with_idt_error_code(tmp_path):
    guest = IdtGuest(fault="int 0x40", gates={0x40: Gate(type=0x5)})   # a task gate: not emulated
    frame, fault_address, _ = run_long(guest, tmp_path)
    expect_long(frame, vector=13, rip=fault_address, error=0x40 * 8 + 2, flags=FLAGS | RF)


LOAD_DS = "mov ds, ax"
GP_SKIP_HANDLER = f"""
    inc qword ptr [{COUNTER_SLOT:#x}]
    add rsp, 8
    add qword ptr [rsp], {len(guestkit.assemble(LOAD_DS, 0, bits=64))}
    iretq
"""


def test_consecutive_faults_are_not_double_faults(tmp_path):
    """Unicorn 2.1.4 reports the 2nd contributory fault as #DF and ends the 3rd silently
    (unicorn issues 1883, 578): with that neutralised, each #GP reaches its handler."""
    guest = IdtGuest(before="mov ax, 0x1234", fault=LOAD_DS,
                     after=f"{LOAD_DS}\n{LOAD_DS}\n{LOAD_DS}\nmov al, 0\nout 0xf4, al",
                     handlers={13: GP_SKIP_HANDLER})
    frame, _, result = run_long(guest, tmp_path)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    assert result.machine.ram.u64(COUNTER_SLOT) == 4


def test_nested_interrupts_return_correctly(tmp_path):
    outer = f"""
        add qword ptr [{COUNTER_SLOT:#x}], 1
        int 0x41
        add qword ptr [{COUNTER_SLOT:#x}], 100
        iretq
    """
    inner = f"""
        add qword ptr [{COUNTER_SLOT:#x}], 10
        iretq
    """
    guest = IdtGuest(fault="int 0x40", handlers={0x40: outer, 0x41: inner},
                     after=f"mov rbx, rsp\npushfq\npop rcx\nadd qword ptr [{COUNTER_SLOT:#x}], 1000\n"
                           "mov al, 0\nout 0xf4, al")
    _, _, result = run_long(guest, tmp_path)
    state = result.machine.cpu_state()
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    assert result.machine.ram.u64(COUNTER_SLOT) == 1111      # outer, inner, rest of outer, back in main
    assert state.gpr["rbx"] == STACK_TOP                     # the stack came all the way back
    assert state.gpr["rcx"] & 0xFFF == FLAGS                 # and so did the flags


def test_triple_fault_when_the_df_frame_cannot_be_pushed(tmp_path):
    """#GP gate missing -> #NP during delivery -> #DF; the #DF IST stack is unmapped -> triple fault."""
    from interrupts import harness

    harness.IST_TOPS[2] = NP_PAGE + 0x1000
    try:
        guest = IdtGuest(before="mov ax, 0x1234", fault="mov ds, ax",
                         gates={13: Gate(present=False), 8: Gate(ist=2)})
        frame, fault_address, result = run_long(guest, tmp_path)
    finally:
        harness.IST_TOPS[2] = 0x13C000
    assert frame is None
    stop = result.stop
    assert stop.reason.value == "triple-fault"
    # The processor pushes SS first: the first write that fails is the 8 bytes below the IST top.
    assert stop.summary.startswith(f"triple fault: #PF at {NP_PAGE + 0x1000 - 8:#x} while delivering #DF")
    assert [(s.vector, s.error_code) for s in stop.chain] == [
        (13, 0x1234), (11, 13 * 8 + 3), (8, 0), (14, 0x2)]
    assert all(s.rip == fault_address for s in stop.chain)
    assert result.exit_code == 70


# --- 32-bit protected mode ------------------------------------------------------------
def expect_protected(frame, *, vector, rip, error=None, flags=FLAGS):
    """No privilege change: [error] EIP CS EFLAGS, no alignment (SDM figure 6-4)."""
    words = ([error] if error is not None else []) + [rip, CODE64_SEL, flags]
    assert frame.vector == vector
    assert frame.rsp == STACK_TOP - 4 * len(words)
    assert frame.words[:len(words)] == words


FAULTS_PROTECTED = [
    ("DE", IdtGuest(before="xor ecx, ecx\nxor edx, edx\nmov eax, 1", fault="div ecx"), 0, None, 0, FLAGS | RF),
    ("BP", IdtGuest(fault="int3"), 3, None, 1, FLAGS),
    ("OF", IdtGuest(flags=FLAGS | 0x800, fault="into"), 4, None, 1, FLAGS | 0x800),
    ("BR", IdtGuest(before="mov dword ptr [0x11c020], 10\nmov dword ptr [0x11c024], 20\nmov eax, 30",
                    fault="bound eax, qword ptr [0x11c020]"), 5, None, 0, FLAGS | RF),
    ("UD", IdtGuest(fault="ud2"), 6, None, 0, FLAGS | RF),
    ("GP", IdtGuest(before="mov ax, 0x1234", fault="mov ds, ax"), 13, 0x1234, 0, FLAGS | RF),
    ("NP-gate", IdtGuest(fault="int 0x40", gates={0x40: Gate(present=False)}), 11, 0x202, 0, FLAGS | RF),
    ("PF-write-read-only", IdtGuest(fault=f"mov dword ptr [{RO_PAGE:#x}], 1"), 14, 0x3, 0, FLAGS | RF),
    ("PF-read-not-present", IdtGuest(fault=f"mov eax, dword ptr [{NP_PAGE:#x}]"), 14, 0x0, 0, FLAGS | RF),
    ("DF", IdtGuest(before="mov ax, 0x1234", fault="mov ds, ax", gates={13: Gate(present=False)}),
     8, 0, 0, FLAGS),
]


@pytest.mark.parametrize("name,guest,vector,error,rip_offset,flags", FAULTS_PROTECTED,
                         ids=[f[0] for f in FAULTS_PROTECTED])
def test_protected_mode_exception_frames(tmp_path, name, guest, vector, error, rip_offset, flags):
    frame, fault_address, result = run_protected(guest, tmp_path)
    assert frame is not None, result.stop.summary
    expect_protected(frame, vector=vector, rip=fault_address + rip_offset, error=error, flags=flags)


@pytest.mark.parametrize("vector", range(32))
def test_protected_mode_int_n_for_every_exception_vector(tmp_path, vector):
    frame, fault_address, result = run_protected(IdtGuest(fault=f"int {vector:#x}"), tmp_path)
    assert frame is not None, result.stop.summary
    expect_protected(frame, vector=vector, rip=fault_address + 2)


@pytest.mark.parametrize("gate_type,if_in_handler", [(0xE, 0), (GATE_TRAP, IF)])
def test_protected_mode_trap_vs_interrupt_gate(tmp_path, gate_type, if_in_handler):
    guest = IdtGuest(flags=FLAGS | IF, fault="int 0x40", gates={0x40: Gate(type=gate_type)})
    frame, fault_address, _ = run_protected(guest, tmp_path)
    expect_protected(frame, vector=0x40, rip=fault_address + 2, flags=FLAGS | IF)
    assert frame.handler_flags & IF == if_in_handler


def test_ring3_system_call_switches_to_rsp0_and_returns_to_ring3(tmp_path):
    """INT 0x80 from CPL 3 through a DPL 3 gate: the frame goes on the TSS's RSP0 stack with the
    user SS:RSP (SDM 6.14.2), SS becomes null, and iretq takes the kernel back to ring 3."""
    from interrupts.harness import RSP0_TOP, USER_CODE, USER_CODE_SEL, USER_DATA_SEL, USER_STACK_TOP

    to_ring3 = (f"push {USER_DATA_SEL:#x}\npush {USER_STACK_TOP:#x}\npush 0x202\npush {USER_CODE_SEL:#x}\n"
                f"mov rax, {USER_CODE:#x}\npush rax")
    guest = IdtGuest(before=to_ring3, fault="iretq", user_code="int 0x80\nmov rbx, 0x5678\nint 0x81",
                     gates={0x80: Gate(dpl=3), 0x81: Gate(dpl=3)},
                     handlers={0x80: f"add qword ptr [{COUNTER_SLOT:#x}], 1\niretq"})
    frame, _, result = run_long(guest, tmp_path)
    assert frame is not None, result.stop.summary
    state = result.machine.cpu_state()
    assert result.machine.ram.u64(COUNTER_SLOT) == 1               # the first call came back to ring 3
    assert frame.vector == 0x81
    assert frame.rsp == RSP0_TOP - 40
    int81 = USER_CODE + 2 + 7 + 2                                   # int 0x80, mov rbx, imm32, int 0x81
    assert frame.words[:5] == [int81, USER_CODE_SEL, 0x202, USER_STACK_TOP, USER_DATA_SEL]
    assert state.segments["ss"] == 0 and state.segments["cs"] == CODE64_SEL
    assert state.gpr["rbx"] == 0x5678


def test_ring3_cannot_use_a_dpl0_gate(tmp_path):
    from interrupts.harness import USER_CODE, USER_CODE_SEL, USER_DATA_SEL, USER_STACK_TOP

    to_ring3 = (f"push {USER_DATA_SEL:#x}\npush {USER_STACK_TOP:#x}\npush 0x2\npush {USER_CODE_SEL:#x}\n"
                f"mov rax, {USER_CODE:#x}\npush rax")
    guest = IdtGuest(before=to_ring3, fault="iretq", user_code="int 0x40")
    frame, _, result = run_long(guest, tmp_path)
    assert frame.vector == 13 and frame.words[0] == 0x40 * 8 + 2      # #GP(IDT entry 0x40)
    assert frame.words[1] == USER_CODE                               # pointing at the INT
