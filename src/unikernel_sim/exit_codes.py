"""The exit-code table of `unisim` (documented in docs/booting.md).

Guest exit codes and the simulator's own codes never collide: the simulator's
are even numbers from 64 up; the guest's are 0-63 in the plain convention and
odd numbers in QEMU's ``(value << 1) | 1`` convention. So a CI script can always
tell "the kernel said 5" from "the simulator gave up".
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0                  # clean halt (hlt with IF clear, nothing pending) or guest exit 0
    USAGE = 64              # bad command line (EX_USAGE)
    NO_INPUT = 66           # a named file is missing or unreadable (EX_NOINPUT)
    BAD_IMAGE = 68          # not a bootable Multiboot2 image, or it does not fit the machine
    CRASH = 70              # unhandled exception, triple fault, guest panic, access outside RAM
    TIMEOUT = 72            # --timeout (wall clock) expired
    BUDGET = 74             # --max-instructions reached
    EXPECT_FAILED = 76      # the run ended but --expect did not match the output
    STRICT_IO = 78          # --strict-io: the guest touched a port with no device
    INTERNAL_ERROR = 80     # a bug in unikernel_sim itself: please report it
    OUTPUT_FAILED = 82      # an output (stdout, --serial-out, --report-json, --screenshot) could not be written
    HOST_LIMIT = 84         # the host refused what the simulator needs (e.g. ulimit -v below the JIT buffer)
    TERMINATED = 86         # SIGTERM (not 128 + 15 = 143: odd codes belong to the guest's QEMU style)
    HANGUP = 88             # SIGHUP: the terminal went away (not 129, for the same reason)
    INTERRUPTED = 130       # Ctrl-C (128 + SIGINT, which happens to be even)


GUEST_PLAIN_MAX = 63
"""Largest guest code passed through unchanged in the plain convention."""


def guest_exit_status(value: int, style: str) -> int:
    """Map the value the guest wrote to the debug-exit port to a process status.

    ``plain``: the value itself for 0..63; larger values become 63 (the caller
    prints the real value). ``qemu``: ``((value << 1) | 1) & 0xFF``, what QEMU's
    isa-debug-exit device gives, always odd and so never one of ours.
    """
    if style == "qemu":
        return ((value << 1) | 1) & 0xFF
    return value if 0 <= value <= GUEST_PLAIN_MAX else GUEST_PLAIN_MAX
