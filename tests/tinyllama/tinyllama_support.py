from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from unikernel_sim.boot.loader import ModuleSpec

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CHECKPOINT_260K = SHARED / "stories260K.bin"
TOKENIZER_512 = SHARED / "tok512.bin"
needs_shared_data = pytest.mark.skipif(
    not (CHECKPOINT_260K.exists() and TOKENIZER_512.exists()),
    reason=f"the real llama2.c checkpoint is not available ({CHECKPOINT_260K} and {TOKENIZER_512})")


@dataclass
class GuestModel:
    booted: object
    model: int            # guest address of struct tinyllama_model
    vocab_size: int

    def fresh(self):
        return self.booted.fresh()

    def logits(self, machine, token: int, pos: int) -> np.ndarray:
        pointer = machine.call("tinyllama_forward", self.model, token, pos)
        return np.frombuffer(machine.ram.read(pointer, 4 * self.vocab_size), dtype="<f4")


def load_modules_and_boot(unisim_firmware, folder: Path, checkpoint, tokenizer, cmdline: str = "",
                          deterministic: bool = False):
    from unikernel_sim.machine import Machine
    from unikernel_sim.stops import StopReason

    modules = []
    for data, name in ((checkpoint, "model"), (tokenizer, "tokenizer")):
        if data is None:
            continue
        if isinstance(data, bytes):
            path = folder / f"{name}.bin"
            path.write_bytes(data)
            data = path
        modules.append(ModuleSpec(str(data), name))
    machine = Machine(deterministic=deterministic)
    machine.load(unisim_firmware, cmdline=f"job=llama-ready {cmdline}".strip(), modules=modules)
    address = machine.add_breakpoint("kernel_ready")
    stop = machine.run(timeout=120)
    assert stop.reason == StopReason.BREAKPOINT, f"{stop.summary}\n{machine.serial.text()}"
    machine.remove_breakpoint(address)
    machine.call("kernel_ready")

    from unikernel_sim.pytest_plugin import BootedKernel

    booted = BootedKernel(machine, machine.snapshot(), unisim_firmware)
    model = int.from_bytes(machine.read_virtual(machine.symbols.address_of("tinyllama_active_model"), 8), "little")
    vocab = struct.unpack_from("<i", machine.ram.read(model + 20, 4))[0]
    return GuestModel(booted, model, vocab)
