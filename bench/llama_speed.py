"""TinyLlama speed: the guest (fast mode), the numpy reference, and the same C
inference code compiled for the host; instructions per token from a counted
run; the hottest guest functions by sampling RIP every 2 ms.

    python bench/llama_speed.py [--tokens 32]
Prints Markdown tables. Uses ../shared/data/stories260K.bin when present, and a
synthetic 15M-parameter configuration (dim 288, 6 layers, 6 heads, vocab 32000).
"""
from __future__ import annotations

import argparse
import collections
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.firmware import build_firmware, firmware_dir
from unikernel_sim.machine import Machine
from unikernel_sim.tinyllama.checkpoint import read_checkpoint, synthetic_weights, write_checkpoint
from unikernel_sim.tinyllama.config import PRESETS
from unikernel_sim.tinyllama.reference import ReferenceModel
from unikernel_sim.tinyllama.synthetic import synthetic_tokenizer
from unikernel_sim.tinyllama.tokenizer import Tokenizer
from markdown_table import print_table  # bench/markdown_table.py, beside this script

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NATIVE_SOURCES = ["tinyllama/forward.c", "tinyllama/model.c", "tinyllama/sampler.c", "kernel_lib/libm/math.c",
                  "boot/multiboot2.c",
                  "kernel_lib/memory/malloc_bump.c", "kernel_lib/libc/string.c", "kernel_lib/io/kprintf.c",
                  "kernel_lib/util/format.c"]
RENAMES = ["malloc", "calloc", "realloc", "free", "memcpy", "memmove", "memset", "memcmp", "strlen", "strnlen",
           "strcmp", "strncmp", "strchr", "strrchr", "strcpy", "strncpy"]
SPEED = re.compile(r"llama: (\d+) tokens, (\d+) cycles")


def padded_tokenizer(vocab_size: int) -> bytes:
    base = synthetic_tokenizer()
    pieces = base.pieces + [f"<pad{i}>".encode() for i in range(vocab_size - len(base.pieces))]
    scores = base.scores + [-1e6] * (vocab_size - len(base.pieces))
    return Tokenizer(pieces[:vocab_size], scores[:vocab_size], base.max_token_length + 8).to_bytes()


def models(folder: Path) -> dict[str, tuple[Path, Path]]:
    found = {}
    if (SHARED / "stories260K.bin").exists():
        found["stories260K"] = (SHARED / "stories260K.bin", SHARED / "tok512.bin")
    config = PRESETS["stories15m"]
    (folder / "15m.bin").write_bytes(write_checkpoint(synthetic_weights(config, seed=15)))
    (folder / "15m.tok").write_bytes(padded_tokenizer(config.vocab_size))
    found["synthetic 15M"] = (folder / "15m.bin", folder / "15m.tok")
    return found


def guest_run(kernel: str, checkpoint: Path, tokenizer: Path, tokens: int, *, count: bool, sample: bool):
    machine = Machine(deterministic=False, check_red_zone=False)
    machine.load(kernel, cmdline=f"job=llama steps={tokens} temp=0 prompt=", modules=[
        ModuleSpec(str(checkpoint), "model"), ModuleSpec(str(tokenizer), "tokenizer")])
    if count:
        machine.clock.start_counting()
    hits: collections.Counter = collections.Counter()
    start = time.perf_counter()
    while True:
        stop = machine.run(timeout=0.002 if sample else None)
        if stop.reason.value != "timeout":
            break
        found = machine.symbols.lookup(machine.rip)
        hits[found[0].name if found else hex(machine.rip)] += 1
    wall = time.perf_counter() - start
    match = SPEED.search(machine.serial.text())
    generated = int(match.group(1))
    guest_seconds = int(match.group(2)) / machine.clock.state.tsc_hz
    return generated, guest_seconds, wall, machine.instructions, hits


def native(checkpoint: Path, tokens: int, folder: Path) -> float:
    binary = folder / "llama_native"
    if not binary.exists():
        source = firmware_dir()
        command = ["cc", "-O2", "-march=x86-64-v2", "-fno-math-errno", "-fno-builtin", f"-I{source}",
                   *[f"-D{name}=k_{name}" for name in RENAMES],
                   str(Path(__file__).parent / "native" / "llama_native.c"),
                   *[str(source / s) for s in NATIVE_SOURCES], "-o", str(binary)]
        subprocess.run(command, check=True)
    out = subprocess.run([str(binary), str(checkpoint), str(tokens)], check=True, capture_output=True, text=True)
    return float(re.search(r"seconds ([\d.]+)", out.stdout).group(1))


def reference_seconds(checkpoint: Path, tokens: int) -> float:
    model = ReferenceModel(read_checkpoint(checkpoint.read_bytes()))
    token = 1
    start = time.perf_counter()
    for pos in range(tokens):
        token = int(np.argmax(model.forward(token, pos)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    kernel = str(build_firmware())
    folder = Path(tempfile.mkdtemp(prefix="unisim-llama-bench-"))
    rows, hot = [], {}
    for name, (checkpoint, tokenizer) in models(folder).items():
        tokens = args.tokens if name == "stories260K" else max(4, args.tokens // 4)
        generated, guest_s, wall, _, hits = guest_run(kernel, checkpoint, tokenizer, tokens, count=False, sample=True)
        counted = guest_run(kernel, checkpoint, tokenizer, min(tokens, 4), count=True, sample=False)
        per_token = counted[3] / counted[0]
        native_s = native(checkpoint, generated, folder)
        numpy_s = reference_seconds(checkpoint, generated)
        rows.append((name, generated, generated / guest_s, generated / numpy_s, generated / native_s,
                     guest_s / native_s, per_token))
        hot[name] = hits.most_common(5)
    print_table(["model", "tokens", "guest tok/s", "numpy tok/s", "native gcc -O2 tok/s", "native/guest",
                 "guest instructions/token"],
                ((name, generated, f"{guest:.1f}", f"{ref:.1f}", f"{nat:.1f}", f"{ratio:.1f}x", f"{per_token / 1e6:.2f} M")
                 for name, generated, guest, ref, nat, ratio, per_token in rows))
    for name, hits in hot.items():
        total = sum(count for _, count in hits) or 1
        print(f"\nhottest guest functions, {name} (RIP sampled every 2 ms): "
              + ", ".join(f"{fn} {100 * count / total:.0f}%" for fn, count in hits))


if __name__ == "__main__":
    main()
