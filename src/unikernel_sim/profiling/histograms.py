"""What specialisation needs to know about a function's calls: the sizes it is asked
for and the alignments of the pointers it gets, per call site.

One Python code hook on the function's first instruction (a few microseconds per
call, nothing elsewhere) reads the argument registers of the System V AMD64 calling
convention (the firmware's and most kernels'), and the return address at [RSP] names
the call site."""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unicorn import UC_HOOK_CODE
from unicorn import x86_const as x86

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

MAX_ALIGNMENT = 64                        # alignments above this are reported as 64
ARGUMENT_REGISTERS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")     # System V AMD64, in order
DEFAULTS = {                              # function: (size argument, pointer arguments)
    "memcpy": ("rdx", ("rdi", "rsi")),
    "memmove": ("rdx", ("rdi", "rsi")),
    "memset": ("rdx", ("rdi",)),
    "malloc": ("rdi", ()),
}


@dataclass(frozen=True)
class HistogramSpec:
    function: str
    size_register: str
    pointer_registers: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "HistogramSpec":
        """SYMBOL:REGISTER, e.g. memcpy:rdx (the size); pointer arguments as in DEFAULTS."""
        function, _, register = text.partition(":")
        register = register.lower()
        if not function or register not in ARGUMENT_REGISTERS:
            raise ValueError(f"{text!r}: give SYMBOL:REGISTER with one of {', '.join(ARGUMENT_REGISTERS)}")
        return cls(function, register, DEFAULTS.get(function, ("", ()))[1])


def alignment(address: int) -> int:
    """The largest power of two (up to MAX_ALIGNMENT) that divides address."""
    if address == 0:
        return MAX_ALIGNMENT
    return min(MAX_ALIGNMENT, address & -address)


class ArgumentHistograms:
    def __init__(self, machine: "Machine", specs: list[HistogramSpec]) -> None:
        self.machine = machine
        # function -> call site -> {"size": Counter, "align rdi": Counter, ...}
        self.data: dict[str, dict[str, dict[str, collections.Counter]]] = {}
        self._hooks = []
        for spec in specs:
            address = machine.symbols.address_of(spec.function)
            if address is None:
                continue
            self.data[spec.function] = {}
            self._hooks.append(machine.uc.hook_add(UC_HOOK_CODE, self._on_call(spec), begin=address, end=address))
            machine.uc.ctl_remove_cache(address, address + 1)

    @classmethod
    def with_defaults(cls, machine: "Machine", extra: list[HistogramSpec]) -> "ArgumentHistograms":
        specs = {spec.function: spec for spec in
                 [HistogramSpec(name, size, pointers) for name, (size, pointers) in DEFAULTS.items()] + extra}
        return cls(machine, list(specs.values()))

    def _on_call(self, spec: HistogramSpec):
        size_register = getattr(x86, f"UC_X86_REG_{spec.size_register.upper()}")
        pointer_registers = [(name, getattr(x86, f"UC_X86_REG_{name.upper()}")) for name in spec.pointer_registers]
        sites = self.data[spec.function]

        def on_call(uc, address: int, size: int, _user) -> None:
            rsp = uc.reg_read(x86.UC_X86_REG_RSP)
            raw = self.machine.memory.read(rsp, 8)
            site = self.machine.describe(int.from_bytes(raw, "little")) if raw else "?"
            counters = sites.setdefault(site, collections.defaultdict(collections.Counter))
            counters["size"][uc.reg_read(size_register)] += 1
            for name, register in pointer_registers:
                counters[f"align {name}"][alignment(uc.reg_read(register))] += 1

        return on_call

    def as_dict(self) -> dict:
        return {function: {site: {kind: dict(counter) for kind, counter in counters.items()}
                           for site, counters in sites.items()}
                for function, sites in self.data.items()}

    def close(self) -> None:
        for handle in self._hooks:
            self.machine.uc.hook_del(handle)
        self._hooks = []


def summary(histograms: dict, top: int = 5) -> str:
    """Per function: calls, the most common sizes and alignments over all call sites."""
    lines = []
    for function, sites in sorted(histograms.items()):
        totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for counters in sites.values():
            for kind, counter in counters.items():
                totals[kind].update({int(k): v for k, v in counter.items()})
        calls = sum(totals["size"].values())
        if not calls:
            continue
        parts = [f"{function}: {calls:,} calls from {len(sites)} sites"]
        for kind, counter in sorted(totals.items()):
            common = ", ".join(f"{value} x{count:,}" for value, count in counter.most_common(top))
            parts.append(f"  {kind}: {common}")
        lines += parts
    return "\n".join(lines) + ("\n" if lines else "")
