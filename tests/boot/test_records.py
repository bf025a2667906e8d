"""The boot path's records are plain classes and NamedTuples, not dataclasses (start-up,
records.py): their repr and == must be what a dataclass of the same fields gives, which
Python's own dataclasses module is the oracle for."""
from __future__ import annotations

from dataclasses import dataclass, field

from unikernel_sim.memory.paging import Walk, WalkStep
from unikernel_sim.run import boot
from unikernel_sim.stops import FaultStep, Stop, StopReason


@dataclass
class StopAsDataclass:
    reason: StopReason
    summary: str
    rip: int = 0
    where: str = ""
    exit_value: int | None = None
    vector: int | None = None
    fault_address: int | None = None
    chain: list[FaultStep] = field(default_factory=list)


def test_a_stop_reprs_and_compares_as_the_dataclass_it_was():
    chain = [FaultStep(13, 0, 0x1000, "f+0x0")]
    ours = Stop(StopReason.EXCEPTION, "boom", rip=0x1000, where="f", vector=13, chain=chain)
    oracle = StopAsDataclass(StopReason.EXCEPTION, "boom", rip=0x1000, where="f", vector=13, chain=chain)
    assert repr(ours).replace("Stop(", "StopAsDataclass(", 1) == repr(oracle)
    assert ours == Stop(StopReason.EXCEPTION, "boom", rip=0x1000, where="f", vector=13, chain=list(chain))
    assert ours != Stop(StopReason.EXCEPTION, "boom", rip=0x1001, where="f", vector=13, chain=chain)
    assert ours.__eq__(oracle) is NotImplemented                 # another class: not equal, as a dataclass
    assert Stop(StopReason.HALT, "h").chain is not Stop(StopReason.HALT, "h").chain   # no shared default


def test_a_walk_moved_to_another_address_keeps_its_steps_and_changes_only_the_address():
    walk = Walk(0x1234, "4-level")
    walk.steps.append(WalkStep("PML4E", 0x1000, 0, 0x2003, True, True, False, False, False))
    walk.physical = 0x5234
    moved = walk.moved_to(0x1300, 0x5300)
    assert (moved.virtual, moved.physical, walk.virtual, walk.physical) == (0x1300, 0x5300, 0x1234, 0x5234)
    assert moved.steps is walk.steps and moved.mode == walk.mode and moved != walk


def test_boot_results_and_loaded_kernels_leave_the_machine_and_the_image_out_of_their_repr(firmware_elf):
    result = boot(firmware_elf)
    text = repr(result)
    assert text.startswith("BootResult(stop=Stop(") and "machine=" not in text and "serial_bytes=" in text
    kernel = repr(result.machine.kernel)
    assert kernel.startswith("LoadedKernel(path=") and "image_data=" not in kernel and "layout=" in kernel
