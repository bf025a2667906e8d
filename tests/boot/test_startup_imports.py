"""What a plain `unisim boot` imports: start-up is a measured goal (docs/performance.md,
start-up), and each module below was taken off the boot path on purpose (pyelftools and
the capstone package: ~90 ms; dataclasses: its import and 23 generated classes; traceback:
only for an internal error). The boot runs in a new process, so nothing a test imported
before counts."""
from __future__ import annotations

import json
import subprocess
import sys

KEPT_OFF_THE_BOOT_PATH = ("elftools", "capstone", "dataclasses", "traceback", "keystone", "numpy", "sqlite3",
                          "unikernel_sim.boot.multiboot1", "unikernel_sim.serial_stream", "unikernel_sim.expect",
                          "unikernel_sim.snapshot", "unikernel_sim.cpu.return_watch", "encodings.cp437")

BOOT = """
import contextlib, io, json, sys
from unikernel_sim.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["boot", sys.argv[1]])
kept_off = sys.argv[2:]
sys.stderr.write(json.dumps([code, sorted(name for name in sys.modules
                                          if any(name == off or name.startswith(off + ".") for off in kept_off))]))
"""


def test_a_plain_boot_imports_none_of_the_report_and_debug_machinery(firmware_elf):
    done = subprocess.run([sys.executable, "-c", BOOT, firmware_elf, *KEPT_OFF_THE_BOOT_PATH],
                          capture_output=True, text=True, timeout=120)
    code, imported = json.loads(done.stderr.strip().splitlines()[-1])
    assert code == 0
    assert imported == []
