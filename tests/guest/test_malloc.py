"""The bump allocator in the guest, against its contract and a Python model
(unikernel_sim.kernel_lib.heap_model), including the sizes that crashed the
original allocator."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unikernel_sim import kernel_lib as kl
from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.guest_call import GuestCallError
from unikernel_sim.kernel_lib.heap_model import HeapModel
from unikernel_sim.machine import Machine
from unikernel_sim.pytest_plugin import boot_to_ready

HEAP_SIZE = 64 << 20
SIZE_MAX = (1 << 64) - 1
IDENTITY_MAP_END = 512 << 20
TINYLLAMA_MODEL_STRUCT = 256        # the model structure allocated first
TINYLLAMA_LAYERS_ARRAY = 5632       # 22 layers x 256 bytes: the allocation that crashed


def model_of(machine) -> HeapModel:
    stats = kl.heap_stats(machine)
    return HeapModel(stats.start, stats.end, stats.next, stats.allocations, stats.failures, stats.frees)


def test_heap_is_64_mib_inside_the_identity_map_after_the_kernel(unisim_machine):
    stats = kl.heap_stats(unisim_machine)
    kernel_end = max(s.paddr + s.memsz for s in unisim_machine.kernel.elf.segments)
    assert stats.end - stats.start == HEAP_SIZE
    assert stats.start >= kernel_end and stats.start >= unisim_machine.kernel.boot_info_address
    assert stats.end <= IDENTITY_MAP_END
    assert stats.start % 16 == 0


def test_original_scenario_model_then_layers_array(unisim_machine):
    model = kl.malloc(unisim_machine, TINYLLAMA_MODEL_STRUCT)
    layers = kl.malloc(unisim_machine, TINYLLAMA_LAYERS_ARRAY)
    assert model is not None and layers is not None
    assert layers >= model + TINYLLAMA_MODEL_STRUCT
    unisim_machine.ram.fill(layers, TINYLLAMA_LAYERS_ARRAY, 0xAB)      # the memory is really there


@pytest.mark.parametrize("size,fits", [
    (0, True), (1, True), (5632, True), (HEAP_SIZE - 16, True),
    (HEAP_SIZE, False), (HEAP_SIZE + 1, False), (1 << 63, False), (SIZE_MAX, False),
])
def test_boundary_sizes(unisim_machine, size, fits):
    expected = model_of(unisim_machine).malloc(size)
    pointer = kl.malloc(unisim_machine, size)
    assert (pointer is not None) == fits
    assert pointer == expected
    if pointer is not None:
        assert pointer % 16 == 0


def test_exhaustion_ends_in_null_without_fault(unisim_machine):
    chunk = 3 << 20
    pointers = []
    while (pointer := kl.malloc(unisim_machine, chunk)) is not None:
        pointers.append(pointer)
    stats = kl.heap_stats(unisim_machine)
    assert len(pointers) == HEAP_SIZE // (chunk + 16)
    assert stats.next <= stats.end
    assert kl.malloc(unisim_machine, stats.remaining) is None      # the header does not fit
    small = kl.malloc(unisim_machine, stats.remaining - 16)
    assert small is not None and kl.heap_stats(unisim_machine).next == stats.end
    assert kl.malloc(unisim_machine, 1) is None
    assert kl.heap_stats(unisim_machine).next == stats.end


def test_calloc_overflow_and_zeroing(unisim_machine):
    assert kl.calloc(unisim_machine, 1 << 32, 1 << 32) is None
    assert kl.calloc(unisim_machine, SIZE_MAX, 2) is None
    dirty = kl.malloc(unisim_machine, 64)
    unisim_machine.ram.fill(dirty, 64, 0xFF)
    kl.free(unisim_machine, dirty)                                   # gives the bytes back...
    zeroed = kl.calloc(unisim_machine, 8, 8)
    assert zeroed == dirty                                           # ...calloc reuses them
    assert unisim_machine.ram.read(zeroed, 64) == bytes(64)


def test_realloc_keeps_contents(unisim_machine):
    first = kl.malloc(unisim_machine, 32)
    unisim_machine.ram.write(first, bytes(range(32)))
    grown = kl.realloc(unisim_machine, first, 4096)                  # last block: grows in place
    assert grown == first
    other = kl.malloc(unisim_machine, 16)
    moved = kl.realloc(unisim_machine, first, 8192)                  # no longer last: moves
    assert moved not in (first, None) and moved > other
    assert unisim_machine.ram.read(moved, 32) == bytes(range(32))
    assert kl.realloc(unisim_machine, moved, 0) is None


operations = st.lists(
    st.one_of(
        st.tuples(st.just("malloc"), st.integers(0, 1 << 21) | st.sampled_from([0, 1, 5632, HEAP_SIZE, SIZE_MAX])),
        st.tuples(st.just("calloc"), st.integers(0, 256), st.integers(0, 256)),   # zeroing costs guest time
        st.tuples(st.just("free"), st.integers(0, 7)),
        st.tuples(st.just("realloc"), st.integers(0, 7), st.integers(0, 1 << 14)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_random_sequences_match_the_model(unisim_booted, ops):
    machine = unisim_booted.fresh()
    model = model_of(machine)
    live: list[int] = []
    for op in ops:
        if op[0] == "malloc":
            got, want = kl.malloc(machine, op[1]), model.malloc(op[1])
        elif op[0] == "calloc":
            got, want = kl.calloc(machine, op[1], op[2]), model.calloc(op[1], op[2])
        elif op[0] == "free":
            target = live[op[1] % len(live)] if live else 0
            kl.free(machine, target)
            model.free(target)
            got = want = None
            if target in live:
                live.remove(target)
        else:
            target = live[op[1] % len(live)] if live else 0
            got, want = kl.realloc(machine, target, op[2]), model.realloc(target, op[2])
            if target in live and (got is not None or op[2] == 0):
                live.remove(target)
        assert got == want, op
        if got is not None:
            assert got % 16 == 0
            live.append(got)
        stats = kl.heap_stats(machine)
        assert (stats.next, stats.allocations, stats.failures, stats.frees) == (
            model.next, model.allocations, model.failures, model.frees)
        assert stats.start <= stats.next <= stats.end


# --- the suites must catch the original bug ------------------------------------------
def boot_with_module_near_map_end(kernel: str, tmp_path):
    """A boot loader that put a module right below the end of the identity map (GRUB places
    modules high): the heap belongs after it, and there is no room there."""
    module = tmp_path / "weights.bin"
    module.write_bytes(b"\x42" * 4096)
    machine = Machine(memory_mb=1024, deterministic=True)
    machine.load(kernel, cmdline="job=idle mem=512",
                 modules=[ModuleSpec(str(module), "model", address=IDENTITY_MAP_END - 4096 - 0x100)])
    return machine


def test_correct_allocator_refuses_a_heap_past_the_identity_map(unisim_firmware, tmp_path):
    machine = boot_with_module_near_map_end(unisim_firmware, tmp_path)
    stop = machine.run(timeout=30)
    assert stop.exit_value == 7                           # EXIT_NO_HEAP, no fault
    assert "inside the 512 MiB identity map" in machine.serial.text()


def test_unbounded_variant_faults_inside_malloc(unbounded_malloc_variant, tmp_path):
    """The regression scenario against the buggy allocator reproduces the original report:
    the model structure succeeds, malloc(5632) faults inside the allocator."""
    machine = boot_with_module_near_map_end(unbounded_malloc_variant, tmp_path)
    machine.add_breakpoint("kernel_ready")
    assert machine.run(timeout=30).reason.value == "breakpoint"
    assert kl.malloc(machine, TINYLLAMA_MODEL_STRUCT) is not None
    with pytest.raises(GuestCallError) as failure:
        kl.malloc(machine, TINYLLAMA_LAYERS_ARRAY)
    record = machine.interrupts.last_exception
    vector, error, rip, cr2 = record.vector, record.error_code, record.rip, record.cr2
    assert vector == 14 and cr2 >= IDENTITY_MAP_END
    assert machine.describe(rip).startswith("malloc+")
    assert "EXCEPTION: vector 14 (#PF page fault)" in machine.serial.text()
    assert "guest panic" in str(failure.value)
