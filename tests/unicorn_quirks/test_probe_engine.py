"""The one-off probes (QEMU's context layout, its CPUID leaf 1) run on a machine's
new engine lent to them (cpu/engine.py, probes_on) instead of an engine of their
own: they must find what an engine of their own finds, and give the engine back
as it was lent. Each case runs in a new process: the probes' answers are cached
per process."""
from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json, sys
from unicorn import UC_HOOK_INTR
from unicorn import x86_const as x86
from unikernel_sim.cpu import cpuid
from unikernel_sim.cpu.engine import create_engine, probes_on
from unikernel_sim.cpu.unicorn_compat import context_offsets

CONTEXT_HEADER = 32    # uc_context: size, mode, arch, snapshot level, ramblock_freed, last_block pointer
RAM = 0x20000
uc = create_engine()
uc.mem_map(0, RAM)                   # a machine lends its engine with its RAM mapped
before = bytes(uc.context_save())[CONTEXT_HEADER:]
if sys.argv[1] == "lent":
    with probes_on(uc):
        offsets, leaf = context_offsets(), cpuid.qemu_leaf1()
else:
    offsets, leaf = context_offsets(), cpuid.qemu_leaf1()
after = bytes(uc.context_save())[CONTEXT_HEADER:]
regions = list(uc.mem_regions())
zeroed = uc.mem_read(0, RAM) == bytes(RAM)
# the engine still works as new: an int3 reaches only the hook added now, and the run goes on
uc.mem_write(0x1000, b"\xcc\x90\xf4")
seen = []
uc.hook_add(UC_HOOK_INTR, lambda uc, vector, _: seen.append(vector))
uc.emu_start(0x1000, 0x1003)
print(json.dumps({"offsets": list(offsets), "leaf": list(leaf), "regions": regions, "same_context": before == after, "zeroed": zeroed,
                  "interrupts": seen, "rip": uc.reg_read(x86.UC_X86_REG_RIP)}))
"""


def probe(how: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, how], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_probes_on_a_lent_engine_find_what_an_engine_of_their_own_finds():
    own, lent = probe("own"), probe("lent")
    assert lent["offsets"] == own["offsets"]
    assert lent["leaf"] == own["leaf"]


def test_a_lent_engine_comes_back_with_its_ram_zeroed_no_hook_and_its_context():
    lent = probe("lent")
    assert lent["regions"] == [[0, 0x1FFFF, 7]]     # the probes mapped nothing of their own (see ProbeEngine)
    assert lent["zeroed"]
    assert lent["same_context"]
    assert lent["interrupts"] == [3]           # the probes' hook would have stopped the run here
    assert lent["rip"] == 0x1003
