"""Reproductions, on raw Unicorn with no simulator code in the way, of the
Unicorn 2.1.4 behaviours the simulator works around (docs/unicorn-quirks.md
lists each with its workaround). Each test asserts that the quirk is still
there: when an upgrade of Unicorn makes one fail, the workaround that names
the same Q-number can be reconsidered.
"""
from __future__ import annotations

import struct

import pytest
from unicorn import (
    UC_ARCH_X86, UC_ERR_ARG, UC_ERR_READ_UNMAPPED, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR, UC_HOOK_MEM_WRITE, UC_MODE_64, Uc, UcError,
)
from unicorn import x86_const as x86

CODE = 0x1000
STACK = 0x8000
IDT = 0x3000
GDT = 0x4000
RAM = 0x10000
HLT = b"\xf4"


def engine(code: bytes) -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, RAM)
    uc.mem_write(CODE, code)
    uc.reg_write(x86.UC_X86_REG_RSP, STACK)
    return uc


def record_interrupts(uc: Uc, skip: int = 0) -> list[tuple[int, int]]:
    """(vector, rip) per UC_HOOK_INTR call; skip > 0 steps RIP over the faulting instruction."""
    seen: list[tuple[int, int]] = []

    def on_interrupt(uc, vector, _user):
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        seen.append((vector, rip))
        if skip:
            uc.reg_write(x86.UC_X86_REG_RIP, rip + skip)
        else:
            uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_interrupt)
    return seen


def test_q2_second_contributory_exception_arrives_as_double_fault():
    # mov ds, ax (selector 0x1234: beyond the GDT -> #GP) twice
    uc = engine(b"\x8e\xd8\x8e\xd8" + HLT)
    uc.reg_write(x86.UC_X86_REG_RAX, 0x1234)
    seen = record_interrupts(uc, skip=2)
    uc.emu_start(CODE, 1 << 63)
    assert [vector for vector, _ in seen] == [13, 8]


def test_q3_interrupt_hook_gets_the_vector_only_and_the_guest_idt_is_not_used():
    uc = engine(b"\x8e\xd8" + HLT)                                # mov ds, ax -> #GP(0x1234)
    handler = 0x2000
    uc.mem_write(handler, b"\x48\xc7\xc3\x01\x00\x00\x00" + HLT)  # mov rbx, 1; hlt
    gate = struct.pack("<HHBBHII", handler & 0xFFFF, 0x08, 0, 0x8E, handler >> 16, 0, 0)
    uc.mem_write(IDT + 13 * 16, gate)
    uc.reg_write(x86.UC_X86_REG_IDTR, (0, IDT, 256 * 16 - 1, 0))
    uc.reg_write(x86.UC_X86_REG_RAX, 0x1234)
    seen = record_interrupts(uc)
    uc.emu_start(CODE, 1 << 63)
    assert seen == [(13, CODE)]                                  # RIP at the fault, no error code given
    assert uc.reg_read(x86.UC_X86_REG_RBX) == 0                  # the IDT's handler never ran
    assert uc.reg_read(x86.UC_X86_REG_RSP) == STACK              # and no frame was pushed


@pytest.mark.parametrize("code, rip_offset", [(b"\x0f\x0b", 0), (b"\xcd\x06", 0)], ids=["ud2", "int6"])
def test_q4_invalid_opcode_and_int6_bypass_the_interrupt_hook(code, rip_offset):
    uc = engine(code + HLT)
    interrupts = record_interrupts(uc)
    invalid: list[int] = []

    def on_invalid(uc, _user):
        invalid.append(uc.reg_read(x86.UC_X86_REG_RIP))
        return False

    uc.hook_add(UC_HOOK_INSN_INVALID, on_invalid)
    with pytest.raises(UcError):
        uc.emu_start(CODE, 1 << 63)
    assert interrupts == [] and invalid == [CODE + rip_offset]


def test_q5_hlt_returns_from_emu_start_without_an_error():
    uc = engine(b"\x90" + HLT + b"\x90")
    uc.emu_start(CODE, 1 << 63)                                  # no UcError, no stop reason
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE + 2           # just past the hlt


def test_q6_host_write_over_translated_code_is_not_seen_until_the_cache_is_told():
    uc = engine(b"\xb8\x01\x00\x00\x00" + HLT)                   # mov eax, 1; hlt
    uc.emu_start(CODE, 1 << 63)
    uc.mem_write(CODE + 1, b"\x02")                              # now mov eax, 2
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RAX) == 1                  # the stale translation ran
    uc.ctl_remove_cache(CODE, CODE + 6)
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RAX) == 2


def test_q7_unmapped_reads_end_the_run():
    uc = engine(b"\x48\x8b\x04\x25\x00\x00\x10\x00" + HLT)       # mov rax, [0x100000]
    with pytest.raises(UcError) as error:
        uc.emu_start(CODE, 1 << 63)
    assert error.value.errno == UC_ERR_READ_UNMAPPED


def test_q8_the_binding_refuses_an_rdtsc_hook():
    uc = engine(b"\x0f\x31" + HLT)
    with pytest.raises(UcError) as error:
        uc.hook_add(UC_HOOK_INSN, lambda *args: 1, None, 1, 0, x86.UC_X86_INS_RDTSC)
    assert error.value.errno == UC_ERR_ARG


def test_q9_a_stop_requested_from_an_io_hook_lets_the_rest_of_the_block_run():
    """Without a per-instruction hook, emu_stop() from an `out` hook does not land
    right after the `out`: the next instruction (here a faulting one) runs first."""
    uc = engine(b"\xe6\x21" + b"\x8e\xd8" + HLT)                 # out 0x21, al; mov ds, ax (#GP)
    uc.reg_write(x86.UC_X86_REG_RAX, 0x1234)
    seen = record_interrupts(uc, skip=2)
    uc.hook_add(UC_HOOK_INSN, lambda uc, port, size, value, _u: uc.emu_stop(), None, 1, 0, x86.UC_X86_INS_OUT)
    uc.emu_start(CODE, 1 << 63)
    assert seen == [(13, CODE + 2)]
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE + 4


def test_q10_writing_cs_does_not_change_the_privilege_level():
    uc = engine(b"\xfa" + HLT)                                   # cli: #GP at CPL 3 with IOPL 0
    uc.reg_write(x86.UC_X86_REG_CS, 0x23)                        # a ring-3 selector
    uc.reg_write(x86.UC_X86_REG_RFLAGS, 0x202)
    seen = record_interrupts(uc)
    uc.emu_start(CODE, 1 << 63)
    assert seen == [] and not uc.reg_read(x86.UC_X86_REG_RFLAGS) & 0x200   # ran at CPL 0


def test_q11_syscall_without_a_hook_is_a_no_op():
    lstar = 0x2000
    uc = engine(b"\x0f\x05" + HLT)                               # syscall; hlt
    uc.mem_write(lstar, b"\x48\xc7\xc3\x01\x00\x00\x00" + HLT)    # mov rbx, 1; hlt
    uc.msr_write(0xC0000080, uc.msr_read(0xC0000080) | 1)        # EFER.SCE
    uc.msr_write(0xC0000082, lstar)
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE + 3 and uc.reg_read(x86.UC_X86_REG_RBX) == 0


def test_q12_cpuid_leaf_1_advertises_a_local_apic():
    uc = engine(b"\x0f\xa2" + HLT)
    uc.reg_write(x86.UC_X86_REG_RAX, 1)
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RDX) & (1 << 9)


def test_q13_code_hooks_are_skipped_while_a_stop_is_pending():
    # inc rbx; inc rcx; hlt -- two hooks on `inc rcx`: the first asks to stop, the second is skipped
    uc = engine(b"\x48\xff\xc3" + b"\x48\xff\xc1" + HLT)
    second: list[int] = []
    uc.hook_add(UC_HOOK_CODE, lambda uc, address, size, _u: uc.emu_stop(), begin=CODE + 3, end=CODE + 3)
    uc.hook_add(UC_HOOK_CODE, lambda uc, address, size, _u: second.append(address), begin=CODE + 3, end=CODE + 3)
    uc.emu_start(CODE, 1 << 63)
    assert second == []
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE + 3


def test_q24_code_hooks_run_in_the_order_they_were_added():
    # inc rbx; inc rcx; hlt -- a counting hook added first has counted `inc rcx` when a
    # stopping hook added after it stops in front of it; added second, it has not
    for counter_first in (True, False):
        uc = engine(b"\x48\xff\xc3" + b"\x48\xff\xc1" + HLT)
        counted: list[int] = []

        def count(uc, address, size, _u):
            counted.append(address)

        def stop(uc, address, size, _u):
            uc.emu_stop()

        hooks = [(count, 1, 0), (stop, CODE + 3, CODE + 3)]
        for callback, begin, end in hooks if counter_first else reversed(hooks):
            uc.hook_add(UC_HOOK_CODE, callback, begin=begin, end=end)
        uc.emu_start(CODE, 1 << 63)
        assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE + 3 and uc.reg_read(x86.UC_X86_REG_RCX) == 0
        assert counted == ([CODE, CODE + 3] if counter_first else [CODE])


def test_q25_a_stop_from_a_port_hook_lands_at_the_next_memory_access():
    # out 0x80, al; inc ebx; mov byte [0x5000], 7; inc ecx; hlt -- the hook on `out` stops:
    # `inc ebx` still runs, the store is made, and RIP is put back before the store
    code = (b"\xe6\x80" + b"\xff\xc3" + b"\xc6\x04\x25\x00\x50\x00\x00\x07" + b"\xff\xc1" + HLT)
    uc = engine(code)
    uc.hook_add(UC_HOOK_INSN, lambda uc, port, size, value, _u: uc.emu_stop(), None, 1, 0, x86.UC_X86_INS_OUT)
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RBX) == 1                         # ran after the stop request
    assert uc.mem_read(0x5000, 1) == b"\x07"                            # the store is done...
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE + 4                  # ...and will run again
    assert uc.reg_read(x86.UC_X86_REG_RCX) == 0


def test_q15_emu_stop_from_a_block_hook_stops_before_the_block_runs():
    uc = engine(b"\x48\xff\xc3" + HLT)
    uc.hook_add(UC_HOOK_BLOCK, lambda uc, address, size, _u: uc.emu_stop())
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE and uc.reg_read(x86.UC_X86_REG_RBX) == 0


@pytest.mark.parametrize("also_stop", [False, True], ids=["goes-on", "with-emu-stop"])
def test_q27_rip_written_in_a_block_hook_replaces_the_block(also_stop):
    # CODE: inc rbx; hlt    HANDLER: inc rcx; hlt
    handler = CODE + 0x100
    uc = engine(b"\x48\xff\xc3" + HLT)
    uc.mem_write(handler, b"\x48\xff\xc1" + HLT)

    def redirect(uc, address, size, _user):
        if address == CODE:
            uc.reg_write(x86.UC_X86_REG_RIP, handler)
            if also_stop:
                uc.emu_stop()

    uc.hook_add(UC_HOOK_BLOCK, redirect)
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RBX) == 0                  # the hooked block never ran
    if also_stop:
        assert uc.reg_read(x86.UC_X86_REG_RIP) == handler and uc.reg_read(x86.UC_X86_REG_RCX) == 0
    else:
        assert uc.reg_read(x86.UC_X86_REG_RCX) == 1                  # same emu_start, at the new RIP


def test_q30_rip_written_in_a_code_hook_skips_the_hooked_hlt_and_keeps_the_sti_shadow():
    # CODE: inc rbx; sti; hlt; inc rdx; hlt    (a code hook on the first hlt goes on after it)
    from unikernel_sim.cpu.unicorn_compat import interrupt_shadow

    uc = engine(b"\x48\xff\xc3" + b"\xfb" + HLT + b"\x48\xff\xc2" + HLT)
    first_hlt = CODE + 4
    shadow: list[bool] = []

    def complete(uc, address, size, _user):
        shadow.append(interrupt_shadow(uc))
        uc.reg_write(x86.UC_X86_REG_RIP, address + 1)

    uc.hook_add(UC_HOOK_CODE, complete, begin=first_hlt, end=first_hlt)
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RBX) == 1 and uc.reg_read(x86.UC_X86_REG_RDX) == 1   # went on past it
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE + 9                      # the second hlt ended the run
    assert shadow == [True]                   # STI's shadow is still set: helper_hlt, which clears it, never ran


def test_q31_rip_written_with_uc_reg_write_batch_from_a_hook_is_undone():
    # CODE: inc rbx; hlt    HANDLER: inc rcx; hlt    (a code hook on `inc rbx` sends RIP to HANDLER once)
    import ctypes

    from unicorn.unicorn_py3.unicorn import uclib      # the binding has no batch write

    handler = CODE + 0x100
    calls: list[str] = []

    def run(batch: bool) -> tuple[int, int, int]:
        uc = engine(b"\x48\xff\xc3" + HLT)
        uc.mem_write(handler, b"\x48\xff\xc1" + HLT)
        calls.clear()

        def redirect(uc, address, size, _user):
            calls.append("hook")
            if len(calls) > 1:
                return
            if batch:
                regs = (ctypes.c_int * 1)(x86.UC_X86_REG_RIP)
                value = ctypes.c_uint64(handler)
                values = (ctypes.c_void_p * 1)(ctypes.addressof(value))
                assert uclib.uc_reg_write_batch(uc._uch, regs, values, 1) == 0
            else:
                uc.reg_write(x86.UC_X86_REG_RIP, handler)

        uc.hook_add(UC_HOOK_CODE, redirect, begin=CODE, end=CODE)
        uc.emu_start(CODE, 1 << 63)
        return len(calls), uc.reg_read(x86.UC_X86_REG_RBX), uc.reg_read(x86.UC_X86_REG_RCX)

    assert run(batch=False) == (1, 0, 1)      # uc_reg_write: the instruction replaced (Q30)
    assert run(batch=True) == (2, 1, 0)       # batch: RIP put back, the hook again, the instruction runs


def test_q16_count_does_not_reach_blocks_translated_before_it():
    # mov ecx, 1000; loop: dec ecx; jnz loop; hlt
    code = b"\xb9\xe8\x03\x00\x00" + b"\xff\xc9\x75\xfc" + HLT
    uc = engine(code)
    uc.emu_start(CODE, 1 << 63)                                  # translate it all
    uc.emu_start(CODE, 1 << 63, count=2)
    assert uc.reg_read(x86.UC_X86_REG_RCX) == 0                  # ran to the end, not 2 instructions


def test_q17_misaligned_movaps_does_not_fault():
    uc = engine(b"\x0f\x28\x04\x25\x01\x50\x00\x00" + HLT)       # movaps xmm0, [0x5001]
    uc.reg_write(x86.UC_X86_REG_CR4, uc.reg_read(x86.UC_X86_REG_CR4) | (1 << 9))
    seen = record_interrupts(uc)
    uc.emu_start(CODE, 1 << 63)
    assert seen == []


def test_q18_mmio_callbacks_split_a_64_bit_access_into_two_32_bit_ones():
    window = 0xFEC0_0000
    uc = engine(b"\x48\xa1" + struct.pack("<Q", window + 8) + HLT)   # mov rax, [window + 8]
    reads: list[tuple[int, int]] = []

    def on_read(uc, offset, size, _user):
        reads.append((offset, size))
        return 0x11111111 * (offset // 4)

    uc.mmio_map(window, 0x1000, on_read, None, lambda *args: None, None)
    uc.emu_start(CODE, 1 << 63)
    assert reads == [(8, 4), (12, 4)]
    assert uc.reg_read(x86.UC_X86_REG_RAX) == 0x33333333_22222222


def test_q19_a_stop_requested_inside_a_store_runs_the_storing_instruction_again():
    # inc qword [0x5000]; hlt -- a stop asked for while the store happens (here from a
    # write hook; from another thread it lands there whenever the request arrives
    # between the load and the store) leaves the store done and RIP before the inc.
    uc = engine(b"\x48\xff\x04\x25\x00\x50\x00\x00" + HLT)
    stops: list[int] = []

    def on_write(uc, access, address, size, value, _user):
        if not stops:
            stops.append(address)
            uc.emu_stop()

    uc.hook_add(UC_HOOK_MEM_WRITE, on_write)
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE
    assert struct.unpack("<Q", uc.mem_read(0x5000, 8))[0] == 1
    uc.emu_start(CODE, 1 << 63)
    assert struct.unpack("<Q", uc.mem_read(0x5000, 8))[0] == 2         # one inc, counted twice


def test_q22_rdmsr_hooks_are_refused_and_ia32_apic_base_reads_zero():
    # mov ecx, 0x1b ; rdmsr ; hlt -- no hook can see RDMSR/WRMSR, and with no APIC model
    # IA32_APIC_BASE reads 0 (a write to it vanishes)
    uc = engine(b"\xb9\x1b\x00\x00\x00\x0f\x32" + HLT)
    with pytest.raises(UcError) as refused:
        uc.hook_add(UC_HOOK_INSN, lambda uc, _user: 1, None, 1, 0, x86.UC_X86_INS_RDMSR)
    assert refused.value.errno == UC_ERR_ARG
    uc.msr_write(0x1B, 0xFEE00900)
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_RAX) == 0 and uc.msr_read(0x1B) == 0


def test_q23_a_counted_run_does_not_count_code_translated_before():
    # nop x4 ; hlt -- translated once by a plain run, then emu_start(count=1) from the start
    # runs all four nops: the counting hook only reaches code translated after it appeared
    uc = engine(b"\x90" * 4 + HLT)
    uc.emu_start(CODE, 1 << 63)                                        # runs to the hlt (Q5)
    uc.emu_start(CODE, 1 << 63, count=1)
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE + 5                 # all of it again, not CODE + 1
    uc.ctl_flush_tb()
    uc.emu_start(CODE, 1 << 63, count=1)
    assert uc.reg_read(x86.UC_X86_REG_RIP) == CODE + 1                 # after a flush, one instruction


# --- Q28: the soft TLB grows only when the whole TLB is flushed ----------------------------
PAGE = 0x1000
PML4, PDPT, PD, FIRST_PT = 0x10000, 0x11000, 0x12000, 0x13000
TLB_REGION_PTS = 9                   # page tables 1-9: virtual 2-20 MiB in 4 KiB pages
PROBE = 0x200000                     # the page whose translation goes stale
FRAME_OLD, FRAME_NEW, FRAME_OTHER = 0x80000, 0x81000, 0x82000
PTE = 0x3                            # present, writable (SDM vol. 3A, table 4-19)
DEFAULT_TLB_ENTRIES = 256            # QEMU's CPU_TLB_DYN_DEFAULT_BITS = 8
VICTIM_TLB_ENTRIES = 8               # CPU_VTLB_SIZE: evicted entries are kept here first
MANY_PAGES = 4096                    # virtual 2-18 MiB: 16x the default TLB
EFER_LME_LMA = (1 << 8) | (1 << 10)


def paged_engine() -> Uc:
    """64-bit paging with 4 KiB pages: 0-2 MiB identity (code, tables), 2-20 MiB all on
    FRAME_OTHER except PROBE, which starts on FRAME_OLD."""
    from keystone import KS_ARCH_X86, KS_MODE_64, Ks
    assemble = Ks(KS_ARCH_X86, KS_MODE_64).asm
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 0x100000)
    pages = [FRAME_OTHER | PTE] * (TLB_REGION_PTS * 512)
    pages[0] = FRAME_OLD | PTE
    uc.mem_write(PML4, struct.pack("<Q", PDPT | PTE))
    uc.mem_write(PDPT, struct.pack("<Q", PD | PTE))
    uc.mem_write(PD, b"".join(struct.pack("<Q", FIRST_PT + i * PAGE | PTE) for i in range(1 + TLB_REGION_PTS)))
    uc.mem_write(FIRST_PT, b"".join(struct.pack("<Q", i * PAGE | PTE) for i in range(512)))
    uc.mem_write(FIRST_PT + PAGE, b"".join(struct.pack("<Q", entry) for entry in pages))
    for frame, marker in ((FRAME_OLD, 0x01D), (FRAME_NEW, 0x2E3), (FRAME_OTHER, 0)):
        uc.mem_write(frame, struct.pack("<Q", marker))
    touch = f"mov rsi, {PROBE}; mov rcx, {{count}}; again: mov rax, [rsi]; add rsi, {{stride}}; dec rcx; jnz again; hlt"
    programs = {"touch_many": touch.format(count=MANY_PAGES, stride=PAGE),
                "evict_probe": touch.format(count=2 * VICTIM_TLB_ENTRIES, stride=DEFAULT_TLB_ENTRIES * PAGE)
                .replace(f"mov rsi, {PROBE}", f"mov rsi, {PROBE + DEFAULT_TLB_ENTRIES * PAGE}"),
                "read_probe": f"mov rax, [{PROBE}]; hlt"}
    uc.entry = {}
    for number, (name, text) in enumerate(programs.items()):
        address = CODE + number * 0x100
        uc.mem_write(address, bytes(assemble(text, address)[0]))
        uc.entry[name] = address
    uc.reg_write(x86.UC_X86_REG_CR3, PML4)
    uc.reg_write(x86.UC_X86_REG_CR4, uc.reg_read(x86.UC_X86_REG_CR4) | (1 << 5))          # PAE
    uc.msr_write(0xC0000080, uc.msr_read(0xC0000080) | EFER_LME_LMA)
    uc.reg_write(x86.UC_X86_REG_CR0, uc.reg_read(x86.UC_X86_REG_CR0) | 0x80000001)        # PG, PE
    return uc


def stale_probe_survives(uc: Uc) -> bool:
    """Read PROBE (its old frame enters the TLB), point its PTE at FRAME_NEW without
    invlpg, read 16 pages that share its slot in a 256-entry direct-mapped TLB (more
    than the victim TLB keeps), and read PROBE again: the old marker means the stale
    translation was still in a TLB larger than 256 entries."""
    run = lambda name: uc.emu_start(uc.entry[name], 1 << 63)   # noqa: E731 - each ends at hlt (Q5)
    run("read_probe")
    assert uc.reg_read(x86.UC_X86_REG_RAX) == 0x01D
    uc.mem_write(FIRST_PT + PAGE, struct.pack("<Q", FRAME_NEW | PTE))
    run("evict_probe")
    run("read_probe")
    return uc.reg_read(x86.UC_X86_REG_RAX) == 0x01D


def test_q28_the_soft_tlb_stays_at_256_entries_without_a_full_flush():
    uc = paged_engine()
    for _ in range(8):                                    # heavy use, runs started again and again
        uc.emu_start(uc.entry["touch_many"], 1 << 63)
    assert not stale_probe_survives(uc)                   # evicted: still 256 entries


def test_q28_full_flushes_let_qemus_rule_grow_the_tlb():
    from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
    uc = paged_engine()
    for _ in range(8):                                    # 256 -> 512 -> ... -> 8192 entries
        uc.emu_start(uc.entry["touch_many"], 1 << 63)
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
    assert stale_probe_survives(uc)


# --- Q29: translation reports (UC_HOOK_EDGE_GENERATED) wait for a block to run to its end ---
def reported_blocks(uc: Uc) -> list[tuple[int, int, int]]:
    from unicorn import UC_HOOK_EDGE_GENERATED
    seen: list[tuple[int, int, int]] = []
    uc.hook_add(UC_HOOK_EDGE_GENERATED, lambda _uc, cur, _prev, _user: seen.append((cur.pc, cur.size, cur.icount)))
    return seen


def test_q29_the_engines_first_translation_is_not_reported():
    uc = engine(b"\x90\xeb\x0d" + b"\x00" * 13 + b"\x90\x90" + HLT)   # nop; jmp +13 | nop; nop; hlt
    seen = reported_blocks(uc)
    uc.emu_start(CODE, 1 << 63)
    assert seen == [(CODE + 16, 3, 3)]                   # the second block only: pc, bytes, instructions


def test_q29_nothing_is_reported_while_every_block_so_far_ended_in_an_exception_or_hlt():
    uc = engine(b"\x90" + HLT)
    uc.emu_start(CODE, 1 << 63)                          # one block, left by the hlt
    seen = reported_blocks(uc)
    uc.mem_write(CODE + 0x100, b"\x90\x90\x90" + HLT)
    uc.emu_start(CODE + 0x100, 1 << 63)
    assert seen == []


def test_q29_once_a_block_ran_to_its_end_runs_are_reported_from_their_first_block_but_uc_ctl_is_not():
    uc = engine(b"\xeb\x00" + HLT)                       # jmp $+2 runs to its end
    uc.emu_start(CODE, 1 << 63)
    seen = reported_blocks(uc)
    uc.mem_write(CODE + 0x100, b"\x90\x90\x90" + HLT)
    uc.ctl_request_cache(CODE + 0x200)                   # translated by uc_ctl: not reported
    uc.emu_start(CODE + 0x100, 1 << 63)
    assert seen == [(CODE + 0x100, 4, 4)]


# --- Q1: a run ends by a page walk of until - 1, which sets CR2 when it is not mapped ------
def paged_32bit_engine() -> Uc:
    """32-bit paging, 4 MiB pages: only 0-4 MiB mapped (SDM vol. 3A, 4.3: PDE with PS)."""
    from unicorn import UC_MODE_32
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x400000)
    uc.mem_write(CODE, b"\x90" + HLT)
    uc.mem_write(0x2000, struct.pack("<I", 0x83))       # PD[0]: present, writable, 4 MiB page
    uc.reg_write(x86.UC_X86_REG_CR3, 0x2000)
    uc.reg_write(x86.UC_X86_REG_CR4, 0x10)               # PSE
    uc.reg_write(x86.UC_X86_REG_CR0, 0x80000001)         # PG, PE
    uc.reg_write(x86.UC_X86_REG_CR2, 0x1234)
    return uc


@pytest.mark.parametrize("until", [1 << 63, 2**64 - 1])
def test_q1_a_run_leaves_cr2_at_until_minus_one_when_that_is_not_mapped(until):
    uc = paged_32bit_engine()
    uc.emu_start(CODE, until)
    assert uc.reg_read(x86.UC_X86_REG_CR2) == (until - 1) & 0xFFFFFFFF


def test_q1_a_mapped_until_or_exits_mode_without_exits_leaves_cr2_alone():
    uc = paged_32bit_engine()
    uc.emu_start(CODE, 0x3000)                            # mapped
    assert uc.reg_read(x86.UC_X86_REG_CR2) == 0x1234
    uc = paged_32bit_engine()
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([])
    uc.emu_start(CODE, 1 << 63)
    assert uc.reg_read(x86.UC_X86_REG_CR2) == 0x1234
