"""Profile-guided rebuilds (unikernel_sim/pgo.py): gcc's arc counters from a training run
in the emulator, written as .gcda beside the objects, feed `-fprofile-use`. The oracle
for the rebuilt firmware is the generic one: the same job must print the same story, and
the rebuild must have used the profile (fewer instructions for the same tokens; a
deterministic count, not a timing)."""
from __future__ import annotations

import subprocess
import sys

from tinyllama_support import CHECKPOINT_260K, TOKENIZER_512, needs_shared_data

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.cli.llama import _cmdline
from unikernel_sim.firmware import build_firmware
from unikernel_sim.run import boot

STEPS = 48


def story_and_count(kernel: str) -> tuple[list[str], int]:
    result = boot(kernel, modules=[ModuleSpec(str(CHECKPOINT_260K), "model"), ModuleSpec(str(TOKENIZER_512), "tokenizer")],
                  cmdline=_cmdline(STEPS, 0.0, 0.9, 1, "Once upon a time"), deterministic=True)
    assert result.exit_code == 0, result.stop.summary
    lines = result.serial.splitlines()
    end = next(n for n, line in enumerate(lines) if line.startswith("llama:"))
    start = next(n for n, line in enumerate(lines) if line.startswith("Once upon a time"))
    return lines[start:end], result.machine.clock.instructions


@needs_shared_data
def test_the_profile_guided_firmware_tells_the_same_story_in_fewer_instructions():
    done = subprocess.run([sys.executable, "-m", "unikernel_sim", "pgo", "--model", str(CHECKPOINT_260K),
                           "--tokenizer", str(TOKENIZER_512), "--train-steps", "16"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "memset gets a fast path for 32-byte calls" in done.stderr     # the attention scores' zeroing
    guided = done.stdout.strip()
    generic_story, generic_count = story_and_count(str(build_firmware()))
    guided_story, guided_count = story_and_count(guided)
    assert guided_story == generic_story and len(generic_story) > 0
    assert guided_count < 0.9 * generic_count
