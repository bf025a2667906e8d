"""Deterministic mode takes a block's instruction count from a table it learns as Unicorn
translates blocks (cpu/_tb_icounts.c), keyed by the block's address and size. Two blocks can
share both and differ in count; the table must then ask Unicorn instead of answering.

The oracle is the program text: with the TSC at 1 GHz and deterministic mode's 1 ns per
instruction, the difference of two RDTSC reads is the number of instructions between them,
counted here by hand from the guest below.

- Rewritten in place: a loop's first two bytes go from `nop; nop` (2 instructions) to
  `xchg ax, ax` (66 90, one instruction); the block keeps its address and its 5 bytes.
- Two live blocks: the same virtual page mapped to two frames holding the two versions, A,
  then B, then A again (QEMU keeps both translations; the third pass retranslates nothing,
  so a table that took the latest report would count B's 3 for A's 4).
"""
from __future__ import annotations

import ctypes

import pytest
from unicorn import UC_HOOK_BLOCK, UC_HOOK_EDGE_GENERATED
from hypothesis import given, settings
from hypothesis import strategies as st

from interrupts.harness import PD32, IdtGuest, build_protected
from unikernel_sim.cpu.native import library
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

TSC_HZ = 1_000_000_000                  # one TSC tick per ns, one ns per instruction
ITERATIONS = 1000
TSC_BEFORE, TSC_AFTER = 0x300000, 0x300004
LOOP_ADDRESS = 0x1000000                # virtual 16 MiB: PD32 entry 4 (4 MiB pages)
FRAME_A, FRAME_B = 0x800000, 0xC00000
LARGE_PAGE = 0x83                       # present, writable, PS (4 MiB page)
# loop: <two bytes>; dec ecx (49); jnz loop (75 fb); ret (c3)
NOP_NOP, XCHG_AX_AX = 0x9090, 0x9066    # 2 instructions / 1 instruction, both 2 bytes
TAIL = bytes([0x49, 0x75, 0xFB, 0xC3])
INSTRUCTIONS = {NOP_NOP: 4, XCHG_AX_AX: 3}    # per iteration of the loop's block


def put_loop(frame: int, head: int) -> str:
    tail = int.from_bytes(TAIL, "little")
    return f"    mov word ptr [{frame:#x}], {head:#x}\n    mov dword ptr [{frame + 2:#x}], {tail:#x}\n"


def map_loop(frame: int) -> str:
    """3 instructions: point virtual LOOP_ADDRESS at frame, reload CR3."""
    return f"    mov dword ptr [{PD32 + 16:#x}], {frame | LARGE_PAGE:#x}\n    mov eax, cr3\n    mov cr3, eax\n"


def run_loop() -> str:
    """3 instructions and the loop's: ITERATIONS times its block, then its `ret`."""
    return f"    mov ecx, {ITERATIONS}\n    mov edx, {LOOP_ADDRESS:#x}\n    call edx\n"


def measured(tmp_path, setup: str, timed: str) -> int:
    """RDTSC difference around timed (the second RDTSC included, the first's store too)."""
    program = setup + f"    rdtsc\n    mov [{TSC_BEFORE:#x}], eax\n" + timed + f"    rdtsc\n    mov [{TSC_AFTER:#x}], eax\n" \
        + "    mov al, 0\n    out 0xf4, al\n"
    image, _ = build_protected(IdtGuest(fault="nop", flags=0x2, after=program))
    path = tmp_path / "loop.bin"
    path.write_bytes(image)
    machine = Machine(16, deterministic=True, tsc_hz=TSC_HZ)
    machine.load(str(path))
    stop = machine.run()
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    learnt, disputed = machine.clock.block_counts_learnt()
    assert learnt > 0 and disputed >= 1, (learnt, disputed)
    return (machine.ram.u32(TSC_AFTER) - machine.ram.u32(TSC_BEFORE)) & 0xFFFFFFFF


def test_the_first_block_a_machine_runs_is_reported(tmp_path):
    """The table learns from Unicorn's reports, which begin once a block has run to its
    end in the engine's life (Q29): the clock sees to that, so the first block a new
    machine runs is reported too (fast mode counts nothing: it would not be learnt any
    other way)."""
    image, _ = build_protected(IdtGuest(fault="nop", flags=0x2, after="    mov al, 0\n    out 0xf4, al\n"))
    path = tmp_path / "exit.bin"
    path.write_bytes(image)
    Machine(16)                               # the process's probes run on the first machine's engine
    machine = Machine(16)
    reported, ran = [], []
    machine.uc.hook_add(UC_HOOK_EDGE_GENERATED, lambda _uc, cur, _prev, _user: reported.append(cur.pc))
    machine.uc.hook_add(UC_HOOK_BLOCK, lambda _uc, address, _size, _user: ran.append(address))
    machine.load(str(path))                   # the loader runs its own hand-off code first
    assert machine.run().reason is StopReason.GUEST_EXIT
    assert ran and reported[0] == ran[0]


def pass_instructions(head: int, *, remap: bool) -> int:
    return (3 if remap else 0) + 3 + ITERATIONS * INSTRUCTIONS[head] + 1


def test_a_loop_rewritten_in_place_counts_its_new_instructions(tmp_path):
    setup = put_loop(FRAME_A, NOP_NOP) + map_loop(FRAME_A)
    timed = run_loop() + f"    mov word ptr [{FRAME_A:#x}], {XCHG_AX_AX:#x}\n" + run_loop()
    expected = 1 + pass_instructions(NOP_NOP, remap=False) + 1 + pass_instructions(XCHG_AX_AX, remap=False) + 1
    assert measured(tmp_path, setup, timed) == expected


@pytest.mark.parametrize("order", [(FRAME_A, FRAME_B, FRAME_A), (FRAME_B, FRAME_A, FRAME_B, FRAME_A)])
def test_two_live_translations_at_one_address_keep_their_own_counts(tmp_path, order):
    heads = {FRAME_A: NOP_NOP, FRAME_B: XCHG_AX_AX}
    setup = put_loop(FRAME_A, NOP_NOP) + put_loop(FRAME_B, XCHG_AX_AX)
    timed = "".join(map_loop(frame) + run_loop() for frame in order)
    expected = 1 + sum(pass_instructions(heads[frame], remap=True) for frame in order) + 1
    assert measured(tmp_path, setup, timed) == expected


# --- the table's contract, through its C interface ------------------------------------------
# Oracle: a dict of every count learnt for each (address, size). The table must answer the
# count when exactly one was learnt, and "unknown" (0) otherwise; a lookup in between must not
# change that (the table answers a repeated lookup from a copy of the last one).

_lib = library
_lib.tb_icounts_new.restype = ctypes.c_void_p
_lib.tb_icounts_free.argtypes = [ctypes.c_void_p]
_lib.tb_icounts_learn.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32]
_lib.tb_icounts_learn.restype = None
_lib.tb_icounts_count.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32]
_lib.tb_icounts_count.restype = ctypes.c_uint32
UNKNOWN = 0
PCS = st.sampled_from([0, 0x1000, 0x1000 + 1, 0x7FFF_FFFF_F000, 2**64 - 16])
EVENT = st.tuples(st.sampled_from(["learn", "look"]), PCS, st.integers(1, 3), st.integers(1, 4))


@pytest.fixture
def table():
    pointer = _lib.tb_icounts_new()
    assert pointer
    yield pointer
    _lib.tb_icounts_free(pointer)


def expected(learnt: dict, key: tuple[int, int]) -> int:
    counts = learnt.get(key, set())
    return next(iter(counts)) if len(counts) == 1 else UNKNOWN


@given(events=st.lists(EVENT, max_size=60))
@settings(max_examples=300, deadline=None)
def test_the_table_answers_only_undisputed_counts(events):
    pointer = _lib.tb_icounts_new()
    try:
        learnt: dict[tuple[int, int], set[int]] = {}
        for kind, pc, size, icount in events:
            if kind == "learn":
                _lib.tb_icounts_learn(pointer, pc, size, icount)
                learnt.setdefault((pc, size), set()).add(icount)
            assert _lib.tb_icounts_count(pointer, pc, size) == expected(learnt, (pc, size))
        for key in learnt:
            assert _lib.tb_icounts_count(pointer, *key) == expected(learnt, key)
    finally:
        _lib.tb_icounts_free(pointer)


def test_the_table_grows_and_keeps_every_block(table):
    blocks = [(0x100000 + 16 * i, 1 + i % 15, 1 + i % 7) for i in range(20_000)]   # > 4,096 slots
    for pc, size, icount in blocks:
        _lib.tb_icounts_learn(table, pc, size, icount)
    assert all(_lib.tb_icounts_count(table, pc, size) == icount for pc, size, icount in blocks)
    assert _lib.tb_icounts_count(table, 0x100000, 2) == UNKNOWN      # never learnt


def test_counts_a_uc_tb_cannot_carry_are_not_learnt(table):
    _lib.tb_icounts_learn(table, 0x1000, 70_000, 3)
    _lib.tb_icounts_learn(table, 0x2000, 4, 70_000)
    assert _lib.tb_icounts_count(table, 0x1000, 70_000) == UNKNOWN
    assert _lib.tb_icounts_count(table, 0x2000, 4) == UNKNOWN


TABLE_BLOCKS_MAX = (1 << 20) // 2          # _tb_icounts.c: TABLE_SLOTS_MAX, at most half full


def test_a_full_table_declines_new_blocks_and_still_records_disputes(table):
    for i in range(TABLE_BLOCKS_MAX + 10):
        _lib.tb_icounts_learn(table, 16 * i, 5, 2)
    answers = [_lib.tb_icounts_count(table, 16 * i, 5) for i in range(TABLE_BLOCKS_MAX - 5, TABLE_BLOCKS_MAX + 10)]
    assert answers == [2] * 5 + [UNKNOWN] * 10       # it holds blocks 0 .. TABLE_BLOCKS_MAX - 1
    _lib.tb_icounts_learn(table, 0, 5, 3)
    assert _lib.tb_icounts_count(table, 0, 5) == UNKNOWN
