"""Booting the firmware's GGUF path (job=chat-ready) and calling into it from the tests."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.tinyllama.models import SMOLLM2_INSTALL, installed_smollm2

SMOLLM2 = installed_smollm2()
needs_smollm2 = pytest.mark.skipif(SMOLLM2 is None, reason=f"SmolLM2 is not installed: {SMOLLM2_INSTALL}")


@dataclass
class GuestGguf:
    machine: object
    model: int                 # guest address of chat_active_model
    tokenizer: int             # guest address of chat_active_tokenizer
    vocab: int
    scratch: object

    def forward(self, token: int, pos: int) -> np.ndarray:
        pointer = self.machine.call("gguf_llama_forward_one", self.model, token, pos)
        assert pointer, f"forward refused token {token} at {pos}"
        return np.frombuffer(self.machine.ram.read(pointer, 4 * self.vocab), dtype="<f4").copy()

    def forward_batch(self, tokens: list[int], pos: int) -> np.ndarray:
        self.scratch.reset()
        ids = self.scratch.put_bytes(np.asarray(tokens, dtype="<i4").tobytes())
        pointer = self.machine.call("gguf_llama_forward", self.model, ids, len(tokens), pos)
        assert pointer, f"forward refused {len(tokens)} tokens at {pos}"
        return np.frombuffer(self.machine.ram.read(pointer, 4 * self.vocab), dtype="<f4").copy()

    def encode(self, text: str) -> list[int]:
        self.scratch.reset()
        data = text.encode("utf-8")
        source = self.scratch.put_bytes(data or b"\0")
        limit = len(data) + 1
        out = self.scratch.alloc(4 * limit)
        count = self.machine.call("bpe_encode", self.tokenizer, source, len(data), out, limit)
        assert count < (1 << 31), f"bpe_encode failed on {text!r}"
        return [int(token) for token in np.frombuffer(self.machine.ram.read(out, 4 * count), dtype="<i4")]

    def decode(self, token: int) -> bytes:
        self.scratch.reset()
        out = self.scratch.alloc(256)
        count = self.machine.call("bpe_decode", self.tokenizer, token, out, 256)
        return self.machine.ram.read(out, count)


def boot_gguf(firmware: str, model: str | Path, cmdline: str = "ctx=128", memory_mb: int = 512,
              **machine_options) -> GuestGguf:
    from unikernel_sim.kernel_lib.scratch import GuestScratch
    from unikernel_sim.machine import Machine
    from unikernel_sim.stops import StopReason

    machine = Machine(memory_mb=memory_mb, **machine_options)
    machine.load(firmware, cmdline=f"job=chat-ready {cmdline}", modules=[ModuleSpec(str(model), "model")])
    address = machine.add_breakpoint("kernel_ready")
    stop = machine.run(timeout=120)
    assert stop.reason == StopReason.BREAKPOINT, f"{stop.summary}\n{machine.serial.text()}"
    machine.remove_breakpoint(address)
    machine.call("kernel_ready")
    model_address = machine.symbols.address_of("chat_active_model")
    tokenizer_address = machine.symbols.address_of("chat_active_tokenizer")
    vocab = int.from_bytes(machine.ram.read(tokenizer_address, 4), "little")
    return GuestGguf(machine, model_address, tokenizer_address, vocab, GuestScratch.after_heap(machine))


def struct_offsets(elf_path: str, name: str) -> dict[str, int]:
    """Member offsets of struct name, read from the firmware's DWARF (pyelftools)."""
    from elftools.elf.elffile import ELFFile

    with open(elf_path, "rb") as stream:
        dwarf = ELFFile(stream).get_dwarf_info()
        for unit in dwarf.iter_CUs():
            for die in unit.iter_DIEs():
                named = die.attributes.get("DW_AT_name")
                if die.tag == "DW_TAG_structure_type" and named and named.value == name.encode() \
                        and "DW_AT_byte_size" in die.attributes:
                    return {child.attributes["DW_AT_name"].value.decode():
                            child.attributes["DW_AT_data_member_location"].value for child in die.iter_children()}
    raise LookupError(f"struct {name} is not in {elf_path}'s DWARF")


def kv_caches(guest: GuestGguf, elf_path: str, layers: int, positions: int, kv_dim: int, seq_len: int):
    """The guest's f16 key and value caches, (layer, position, kv_dim) for the first positions."""
    state = guest.model + struct_offsets(elf_path, "gguf_llama_model")["state"]
    members = struct_offsets(elf_path, "gguf_llama_state")
    caches = []
    for member in ("key_cache", "value_cache"):
        address = int.from_bytes(guest.machine.ram.read(state + members[member], 8), "little")
        data = np.frombuffer(guest.machine.ram.read(address, 2 * layers * seq_len * kv_dim), dtype="<f2")
        caches.append(data.reshape(layers, seq_len, kv_dim)[:, :positions])
    return caches
