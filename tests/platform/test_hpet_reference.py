"""The HPET's comparators against independent records: probe_hpet32.c (a 32-bit periodic
comparator across the counter's 2^32 boundary), probe_hpet_period.c (what a write to the
comparator's high half does to the period, with and without VAL_SET) and
probe_hpet_oneshot.c (a one-shot 32-bit timer's extra interrupt at the counter's wrap),
booted by GRUB 2.06 on QEMU 7.2's `pc` (tests/data/grub_reference/*_qemu-7.2_pc.txt; RECIPE.md). The comparator
values are arithmetic and must match exactly; the counter values the first probe saw depend
on the host, so they are checked only to lie between the old match and the new."""
from __future__ import annotations

from pathlib import Path

import pytest

from unikernel_sim.run import boot

DATA = Path(__file__).resolve().parents[1] / "data" / "grub_reference"
RECORDING = DATA / "hpet32_qemu-7.2_pc.txt"
PERIOD = 1_000_000                    # probe_hpet32.c: 10 ms at 100 MHz
ONE_SHOT_MATCH = 500_000              # probe_hpet_oneshot.c: 5 ms past the wrap
WORD = 1 << 32


def moves(text: str) -> list[tuple[int, int]]:
    """(comparator, counter) of each `comparator X counter Y` line."""
    return [(int(words[1], 16), int(words[3], 16)) for words in (line.split() for line in text.splitlines())
            if words[:1] == ["comparator"] and len(words) == 4]


def assert_counters_after_matches(seen: list[tuple[int, int]], periods: int = 1) -> None:
    """Each counter read after the comparator moved lies past the match that moved it (within
    `periods` periods: a busy host may delay the read)."""
    for comparator, counter in seen:
        assert (counter - (comparator - PERIOD)) % WORD < periods * PERIOD, (hex(comparator), hex(counter))


def test_a_32_bit_periodic_comparator_steps_by_its_period_across_2_to_the_32():
    """Fast mode only: deterministic mode computes the same comparators, but the probe's
    80 ms of polling are 16 M MMIO reads there (~20 s)."""
    recorded = RECORDING.read_text()
    result = boot(str(DATA / "probe_hpet32.elf"), timeout=60)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    ours, theirs = moves(result.serial), moves(recorded)
    assert len(theirs) == 8 and any(comparator < PERIOD for comparator, _ in theirs)   # it wrapped
    assert [c for c, _ in ours] == [c for c, _ in theirs]
    assert result.serial.splitlines()[0] == recorded.splitlines()[0]      # the start and first comparator
    assert_counters_after_matches(theirs)
    assert_counters_after_matches(ours, periods=50)


def test_a_high_half_comparator_write_with_val_set_leaves_the_period_as_qemu_does():
    """Periodic, 64-bit: with VAL_SET a write to the comparator's high half sets the
    comparator only (the model used to set the period's high half too: its second match
    came 43 s late); without VAL_SET it sets the period's."""
    recorded = (DATA / "hpet_period_qemu-7.2_pc.txt").read_text()
    result = boot(str(DATA / "probe_hpet_period.elf"), timeout=60)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    assert result.serial == recorded


@pytest.mark.parametrize("deterministic", [False, True], ids=["fast", "deterministic"])
def test_a_one_shot_32_bit_timer_also_interrupts_when_the_counter_wraps(deterministic):
    """HPET 1.0a 2.3.9.2.2, as QEMU does it: two level interrupts, one at the wrap (the low
    word at 0xffffffff) before the match, then the match's; the counters the probe read
    depend on the host (deterministic mode reads the wrap's exact tick)."""
    def events(text: str) -> list[tuple[str, int]]:
        return [(words[1], int(words[2], 16)) for words in (line.split() for line in text.splitlines())
                if words[:1] == ["interrupt"]]

    theirs = events((DATA / "hpet_oneshot_qemu-7.2_pc.txt").read_text())
    result = boot(str(DATA / "probe_hpet_oneshot.elf"), timeout=60, deterministic=deterministic)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    ours = events(result.serial)
    assert [label for label, _ in ours] == [label for label, _ in theirs] == ["at-wrap-before-match", "after-match"]
    for (_, wrap_counter), (_, match_counter) in (ours, theirs):
        assert wrap_counter == 0xFFFFFFFF or wrap_counter < ONE_SHOT_MATCH <= match_counter
