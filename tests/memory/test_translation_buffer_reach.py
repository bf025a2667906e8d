"""Machines made one after another in one process keep their translated code within
reach of Unicorn's helpers (cpu/engine.py, ENGINES_BETWEEN_COLLECTIONS).

The oracle is the x86-64 encoding itself: a direct CALL takes a signed 32-bit
displacement (SDM vol. 2A, CALL: E8 cd), so generated code more than 2 GiB from
libunicorn's text must call every helper through a register. /proc/self/maps says
where each engine's translation buffer (its one read-write-execute mapping) landed.
Run in a fresh interpreter: the test process's own machines would move the mappings.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

CALL_REACH = 2 ** 31                    # rel32

PROBE = r"""
import json
from unikernel_sim.machine import Machine

def mappings():
    text, buffers = None, set()
    for line in open("/proc/self/maps"):
        fields = line.split()
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if "libunicorn" in line and fields[1] == "r-xp":
            text = (low, high)
        elif fields[1] == "rwxp" and high - low >= 64 << 20:
            buffers.add((low, high))
    return text, buffers

def farthest():
    text, buffers = mappings()
    return max(max(abs(high - text[0]), abs(text[1] - low)) for low, high in buffers)

dropped = []
for _ in range(12):
    machine = Machine({memory_mb})          # dropped at the next iteration: garbage in a cycle
    dropped.append(farthest())
del machine
kept = []
for _ in range(4):
    kept.append(Machine({memory_mb}))       # alive together, as a program may keep them
print(json.dumps(dropped + [farthest()]))
"""


@pytest.mark.parametrize("memory_mb", [16, 512], ids=["16-MiB", "512-MiB-default"])
def test_machines_made_in_turn_keep_their_code_within_call_reach(memory_mb):
    """Twelve machines dropped one after another, then four kept alive together: every
    translation buffer stays within a call's reach of libunicorn's code. Guest RAM (512
    MiB by default) is mapped away from the libraries (memory/_ram_snapshots.c), else
    the third machine's buffer lay 2.3 GiB away."""
    result = subprocess.run([sys.executable, "-c", PROBE.replace("{memory_mb}", str(memory_mb))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    distances = json.loads(result.stdout)
    assert len(distances) == 13
    assert max(distances) < CALL_REACH, [f"{d / 2**30:.2f} GiB" for d in distances]
