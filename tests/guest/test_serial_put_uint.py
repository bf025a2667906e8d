"""Integer printing in the guest against Python's own str() and format(),
quietly and while the PIT interrupts every ~170 instructions - and the
red-zone build variant that reproduces the original garbage."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unikernel_sim import kernel_lib as kl
from unikernel_sim.kernel_lib import reference
from unikernel_sim.pytest_plugin import boot_to_ready

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
EDGE_UINTS = [0, 1, 9, 10, 5632, 1 << 32, 1 << 63, UINT64_MAX]
EDGE_INTS = [0, 1, -1, 9, -10, 5632, -5632, INT64_MAX, INT64_MIN]
FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@pytest.mark.parametrize("value", EDGE_UINTS)
def test_put_uint_edges(unisim_machine, value):
    assert kl.serial_put_uint(unisim_machine, value) == reference.put_uint(value) == str(value)


@pytest.mark.parametrize("value", EDGE_INTS)
def test_put_int_edges(unisim_machine, value):
    assert kl.serial_put_int(unisim_machine, value) == str(value)


@pytest.mark.parametrize("value,digits", [(0, 1), (0x5632, 1), (UINT64_MAX, 1), (0xAB, 8), (1, 16), (1 << 63, 4)])
def test_put_hex(unisim_machine, value, digits):
    assert kl.serial_put_hex(unisim_machine, value, digits) == "0x" + format(value, f"0{digits}x")


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.integers(0, UINT64_MAX))
def test_put_uint_any(unisim_booted, value):
    assert kl.serial_put_uint(unisim_booted.fresh(), value) == str(value)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.integers(INT64_MIN, INT64_MAX))
def test_put_int_any(unisim_booted, value):
    assert kl.serial_put_int(unisim_booted.fresh(), value) == str(value)


def test_put_uint_while_the_pit_storms(storm_machine):
    """Every ~170 instructions an IRQ 0 frame lands below RSP; the digits must survive."""
    before = storm_machine.interrupts.irq_count
    for value in EDGE_UINTS + [123456789012345, 98765]:
        assert kl.serial_put_uint(storm_machine, value) == str(value)
    assert storm_machine.interrupts.irq_count - before > 20


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.integers(0, UINT64_MAX))
def test_put_uint_any_while_the_pit_storms(storm_booted, value):
    from tests_guest_support import storm_from

    assert kl.serial_put_uint(storm_from(storm_booted), value) == str(value)


KPRINTF_CASES = [
    ("%d|%i|%u", (-42, 7, 4000000000)),
    ("%x %X %lx", (0xBEEF, 0xBEEF, 0xDEADBEEFCAFE)),
    ("[%5d] [%-5d] [%05d] [%08x]", (42, 42, 42, 0x5632)),
    ("%s and %c%c", ("text", ord("o"), ord("k"))),
    ("%zu bytes, %lu, %llu", (5632, UINT64_MAX, 1 << 63)),
    ("%ld %lld", (INT64_MIN, INT64_MAX)),
    ("100%% sure %p", (0x1000,)),
    ("[%10s][%-10s]", ("right", "left")),
    # more arguments than registers: the rest go on the stack, in order (psABI 3.2.3)
    ("%d %u %x %ld %c %s %d %lu %x %s|", (-1, 2, 0x33, -(1 << 40), ord("5"), "six", 7, UINT64_MAX, 0x99, "ten")),
]


@pytest.mark.parametrize("fmt,args", KPRINTF_CASES)
def test_kprintf_matches_c_printf_semantics(unisim_machine, unisim_scratch, fmt, args):
    assert kl.kprintf(unisim_machine, unisim_scratch, fmt, *args) == reference.kprintf(fmt, *args)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.sampled_from(["%d", "%5d", "%-7d", "%012d", "%x", "%08lx", "%u", "%lu"]), st.integers(0, (1 << 31) - 1))
def test_kprintf_numbers(unisim_booted, fmt, value):
    from unikernel_sim.kernel_lib.scratch import GuestScratch

    machine = unisim_booted.fresh()
    scratch = GuestScratch.after_heap(machine)
    assert kl.kprintf(machine, scratch, fmt, value) == reference.kprintf(fmt, value)


# --- the suites must catch the original bug ------------------------------------------
def test_red_zone_variant_corrupts_digits_while_irqs_fire(red_zone_variant):
    """Built without -mno-red-zone, format_uint's digit buffer sits below RSP; each
    interrupt frame lands on it. The same test as above must fail: corrupted digits."""
    booted = boot_to_ready(red_zone_variant, deterministic=True, instructions_per_second=100_000_000)
    machine = booted.fresh()
    assert machine.call("pit_init", 1_193_182 // 2) == 0
    printed = [kl.serial_put_uint(machine, value) for value in [UINT64_MAX, 1 << 63, 123456789012345] * 4]
    expected = [str(v) for v in [UINT64_MAX, 1 << 63, 123456789012345] * 4]
    garbled = [p for p in printed if not p.isdigit()]        # bytes that are not digits at all
    assert garbled, printed
    assert all(len(p) == len(e) for p, e in zip(printed, expected))   # the count survives, the digits do not


def test_red_zone_variant_is_fine_without_interrupts(red_zone_variant):
    """Without interrupts the red zone is safe: the bug needs both causes."""
    booted = boot_to_ready(red_zone_variant, deterministic=True)
    machine = booted.fresh()
    machine.call("pic_mask", 0)
    assert kl.serial_put_uint(machine, UINT64_MAX) == str(UINT64_MAX)
