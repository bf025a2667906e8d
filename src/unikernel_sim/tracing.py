"""--trace io and --trace calls: lines on stderr as the guest runs.

io: every port access (through the bus tracer, no extra hook).
calls: every entry to a function symbol of the kernel (a code hook on each
function's first byte; off by default because each entry costs a Python call).
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from unicorn import UC_HOOK_CODE

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

MAX_CALL_HOOKS = 4096


def trace_io(machine: "Machine", stream: TextIO = sys.stderr) -> None:
    def tracer(kind: str, port: int, size: int, value: int) -> None:
        arrow = "<-" if kind == "in" else "->"
        print(f"io: {kind:<3} port {port:#06x} {arrow} {value:#0{2 + 2 * size}x} ({size} byte{'s' if size > 1 else ''})",
              file=stream)

    machine.board.io.tracer = tracer
    machine.loop.fast_ports.disable()           # every COM1 access through the traced bus


def trace_calls(machine: "Machine", stream: TextIO = sys.stderr) -> int:
    """Hook every function entry; returns how many functions are traced."""
    functions = [s for s in machine.symbols.symbols if s.kind == "STT_FUNC" and s.size][:MAX_CALL_HOOKS]
    names = {s.address: s.name for s in functions}

    def on_entry(uc, address: int, size: int, _user) -> None:
        print(f"call: {names[address]} ({address:#x}) t={machine.clock.now_ns()}ns", file=stream)

    for symbol in functions:
        machine.uc.hook_add(UC_HOOK_CODE, on_entry, begin=symbol.address, end=symbol.address)
    machine.uc.ctl_flush_tb()
    return len(functions)
