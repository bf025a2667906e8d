"""The soft TLB's review (cpu/_vclock.c, "The soft TLB's size"): a full TLB flush on a
schedule of run time, so that QEMU's resize rule gets to grow the TLB of a kernel that
never reloads CR3 (docs/unicorn-quirks.md, Q28).

What a guest can see of it is what the SDM allows (vol. 3A, 4.10.4): a translation it
changed without invlpg may be dropped at any time. The guests below use exactly that to
look at the TLB from inside: a stale translation that survives 15 conflicting pages (more
than the victim TLB keeps) means a TLB larger than Unicorn's 256 entries; one that is
replaced means a flush. The oracle for when: the schedule as documented (first review
after 1 ms of run time, gaps doubling up to 100 ms, then every 100 ms) and deterministic
mode's 1 ns per instruction.
"""
from __future__ import annotations

import pytest

from interrupts.harness import IdtGuest, build_protected
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

MY_PD, IDENTITY_PT, REGION_PTS = 0x400000, 0x401000, 0x402000
REGION_TABLES = 4                              # page tables for virtual 16-32 MiB
PROBE = 0x1000000                              # the page whose translation goes stale
PAGE, MIB = 0x1000, 0x100000
REGION_PAGES = REGION_TABLES * 1024
FRAME_OLD, FRAME_NEW, FRAME_OTHER = 0x500000, 0x501000, 0x502000
OLD_MARKER, NEW_MARKER = 0x1D, 0x2E3
RESULT = 0x503000
CONFLICTING = 15                               # pages sharing PROBE's slot in 256 entries (> 8 victims)
FIRST_REVIEW_NS = 1_000_000
GAP_MAX_NS = 100_000_000
NS_PER_INSTRUCTION = 1                         # Machine's default deterministic rate


def review_points_ns(until_ns: int) -> list[int]:
    """The documented schedule: 1, 3, 7, 15, 31, 63, 127 ms, then every 100 ms."""
    points, point, gap = [], FIRST_REVIEW_NS, FIRST_REVIEW_NS
    while point <= until_ns:
        points.append(point)
        gap = min(2 * gap, GAP_MAX_NS)
        point += gap
    return points


PAGING = f"""
    mov dword ptr [{FRAME_OLD:#x}], {OLD_MARKER:#x}
    mov dword ptr [{FRAME_NEW:#x}], {NEW_MARKER:#x}
    mov edi, {IDENTITY_PT:#x}
    xor eax, eax
fill_identity:
    mov edx, eax
    shl edx, 12
    or edx, 3
    mov [edi + eax * 4], edx
    inc eax
    cmp eax, 1024
    jb fill_identity
    mov edi, {REGION_PTS:#x}
    xor eax, eax
fill_region:
    mov dword ptr [edi + eax * 4], {FRAME_OTHER | 3:#x}
    inc eax
    cmp eax, {REGION_PAGES}
    jb fill_region
    mov dword ptr [{REGION_PTS:#x}], {FRAME_OLD | 3:#x}
    mov dword ptr [{MY_PD:#x}], {IDENTITY_PT | 3:#x}
    mov dword ptr [{MY_PD + 4:#x}], 0x400083
    mov dword ptr [{MY_PD + 8:#x}], 0x800083
    mov dword ptr [{MY_PD + 12:#x}], 0xc00083
""" + "".join(f"    mov dword ptr [{MY_PD + 16 + 4 * i:#x}], {REGION_PTS + i * PAGE | 3:#x}\n"
              for i in range(REGION_TABLES)) + f"""
    mov eax, {MY_PD:#x}
    mov cr3, eax
"""

EXIT = "    mov al, 0\n    out 0xf4, al\n"


def grow_then_probe(rounds: int) -> str:
    """Touch the region's 4,096 pages rounds times, then three times: map PROBE to the
    old frame (invlpg), read it, map it to the new frame without invlpg, read the 15
    pages that share its slot in a 256-entry TLB, read PROBE again; RESULT counts the
    reads that still gave the old frame."""
    return PAGING + f"""
    mov esi, {rounds}
grow:
    mov edi, {PROBE:#x}
touch:
    mov eax, [edi]
    add edi, {PAGE:#x}
    cmp edi, {PROBE + REGION_PAGES * PAGE:#x}
    jb touch
    dec esi
    jnz grow
    mov ebp, 3
probe:
    mov dword ptr [{REGION_PTS:#x}], {FRAME_OLD | 3:#x}
    invlpg [{PROBE:#x}]
    mov eax, [{PROBE:#x}]
    mov dword ptr [{REGION_PTS:#x}], {FRAME_NEW | 3:#x}
    mov edi, {PROBE + MIB:#x}
evict:
    mov eax, [edi]
    add edi, {MIB:#x}
    cmp edi, {PROBE + (CONFLICTING + 1) * MIB:#x}
    jb evict
    mov eax, [{PROBE:#x}]
    cmp eax, {OLD_MARKER:#x}
    jne next
    inc dword ptr [{RESULT:#x}]
next:
    dec ebp
    jnz probe
""" + EXIT


def wait_for_new_frame() -> str:
    """Map PROBE to the new frame without invlpg, then read it until the new frame shows
    (only a TLB flush can end the loop: nothing else touches the TLB); RESULT = reads.
    The read comes after PADDING nops in the loop's block, so that a run cut inside the
    block can resume with the read still ahead."""
    return PAGING + f"""
    mov eax, [{PROBE:#x}]
    mov dword ptr [{REGION_PTS:#x}], {FRAME_NEW | 3:#x}
    xor ecx, ecx
spin:
    inc ecx
""" + "    nop\n" * PADDING + f"""
    mov eax, [{PROBE:#x}]
    cmp eax, {OLD_MARKER:#x}
    je spin
    mov [{RESULT:#x}], ecx
""" + EXIT


def boot(tmp_path, program: str, *, deterministic: bool, reviews: bool = True) -> Machine:
    image, _ = build_protected(IdtGuest(fault="nop", flags=0x2, after=program))
    path = tmp_path / "tlb.bin"
    path.write_bytes(image)
    machine = Machine(16, deterministic=deterministic)
    machine.load(str(path))
    if not reviews:
        machine.clock.state.ctl_tlb_flush = 0           # _vclock.h: 0, no reviews
    return machine


PADDING = 10                                   # nops before the read in the loop's block
LOOP_BLOCK = PADDING + 4                       # inc, nops, mov (the read), cmp, je
EXIT_INSTRUCTIONS = 3                          # mov [RESULT], ecx; mov al, 0; out
DETERMINISTIC_BUDGET = 20_000_000             # 20 ms: a missing review ends the run here, not at a timeout


def result(machine: Machine) -> int:
    return int.from_bytes(machine.uc.mem_read(RESULT, 4), "little")


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "fast"])
def test_reviews_let_the_tlb_grow_past_256_entries(tmp_path, deterministic):
    # ~5,000 rounds of 4,096 pages: 82 ms of virtual time, and more than 100 ms of host time
    machine = boot(tmp_path, grow_then_probe(5000), deterministic=deterministic)
    stop = machine.run(timeout=120)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    assert machine.clock.state.tlb_reviews >= 5                   # 256 -> 8,192 entries
    assert result(machine) >= 1      # a review may fall between a PTE write and its read: 1 of 3


def test_without_reviews_the_tlb_stays_at_256_entries(tmp_path):
    machine = boot(tmp_path, grow_then_probe(500), deterministic=True, reviews=False)
    stop = machine.run(timeout=120)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    assert machine.clock.state.tlb_reviews == 0
    assert result(machine) == 0                                   # evicted every time


def test_deterministic_reviews_fall_on_the_documented_schedule(tmp_path):
    machine = boot(tmp_path, grow_then_probe(5000), deterministic=True)
    assert machine.run(timeout=120).reason is StopReason.GUEST_EXIT
    end_ns = machine.clock.state.instructions * NS_PER_INSTRUCTION
    assert machine.clock.state.tlb_reviews == len(review_points_ns(end_ns))


def test_deterministic_first_review_lands_at_one_millisecond(tmp_path):
    """The stale translation is replaced at the first block that starts at or after
    instruction 1,000,000 (1 ms), in every run: the last loop block (the one whose read
    sees the new frame) starts there."""
    runs = []
    for _ in range(2):
        machine = boot(tmp_path, wait_for_new_frame(), deterministic=True)
        assert machine.run(max_instructions=DETERMINISTIC_BUDGET, timeout=120).reason is StopReason.GUEST_EXIT
        runs.append((result(machine), machine.clock.state.instructions))
    assert runs[0] == runs[1]
    reads, instructions = runs[0]
    last_block = instructions - EXIT_INSTRUCTIONS - LOOP_BLOCK
    loop_start = last_block - LOOP_BLOCK * (reads - 1)
    first_review = FIRST_REVIEW_NS // NS_PER_INSTRUCTION
    assert loop_start < first_review <= last_block < first_review + LOOP_BLOCK


def test_fast_mode_stale_translation_ends_with_a_review(tmp_path):
    machine = boot(tmp_path, wait_for_new_frame(), deterministic=False)
    assert machine.run(timeout=60).reason is StopReason.GUEST_EXIT
    assert result(machine) > 1 and machine.clock.state.tlb_reviews >= 1


def test_fast_mode_without_reviews_the_stale_translation_stays(tmp_path):
    machine = boot(tmp_path, wait_for_new_frame(), deterministic=False, reviews=False)
    assert machine.run(timeout=0.5).reason is StopReason.TIMEOUT
    assert result(machine) == 0


def test_a_restore_reviews_on_the_schedule_of_its_own_time(tmp_path):
    """After a restore to an earlier count the next review is the schedule's next point
    after that count, not the one the later run had reached."""
    machine = boot(tmp_path, wait_for_new_frame(), deterministic=True)
    snapshot = machine.snapshot()
    assert machine.run(max_instructions=DETERMINISTIC_BUDGET, timeout=120).reason is StopReason.GUEST_EXIT
    first = (result(machine), machine.clock.state.instructions)
    machine.restore(snapshot)
    machine.uc.mem_write(RESULT, bytes(4))
    assert machine.run(max_instructions=DETERMINISTIC_BUDGET, timeout=120).reason is StopReason.GUEST_EXIT
    assert (result(machine), machine.clock.state.instructions) == first


@pytest.mark.parametrize("cut", range(1_000_000 - 2, 1_000_000 + LOOP_BLOCK + 2))
def test_deterministic_review_lands_where_it_does_in_an_uncut_run(tmp_path, cut):
    """A run stopped by a budget just before or after the first review's count resumes
    in the middle of a block; the review still lands at a boundary the uncut run has
    (as the tick path's do), so the guest sees the new frame at the same read."""
    whole = boot(tmp_path, wait_for_new_frame(), deterministic=True)
    assert whole.run(max_instructions=DETERMINISTIC_BUDGET, timeout=120).reason is StopReason.GUEST_EXIT
    cut_run = boot(tmp_path, wait_for_new_frame(), deterministic=True)
    budget = cut - cut_run.clock.state.instructions        # the hand-off ran a few already
    assert cut_run.run(max_instructions=budget, timeout=120).reason is StopReason.BUDGET
    assert cut_run.clock.state.instructions == cut
    assert cut_run.run(max_instructions=DETERMINISTIC_BUDGET, timeout=120).reason is StopReason.GUEST_EXIT
    assert (result(cut_run), cut_run.clock.state.instructions) == (result(whole), whole.clock.state.instructions)
