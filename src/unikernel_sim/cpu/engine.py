"""Creating the Unicorn engine and reading the CPU state in one place.

The engine is created in UC_MODE_64 even for 32-bit kernels: in a UC_MODE_32
engine the register API is fixed to 32 bits, so after the guest enters long
mode RIP and R8-R15 read back as 0 (docs/unicorn-quirks.md, Q0). The Multiboot2 32-bit
entry state is then reached by running a stub (boot/handoff.py).
"""
from __future__ import annotations

import gc
import threading
import weakref
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_64, Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import EFER, GPR_NAMES, MSR, RFLAGS, SEGMENT_NAMES
from unikernel_sim.records import Record



TRANSLATION_BUFFER = 256 << 20
"""Unicorn reserves 1 GiB of address space per engine for translated code by
default, and QEMU's code exits the process when it cannot (no error to catch).
256 MiB holds far more than any unikernel's hot code (TinyLlama uses a few MiB),
and keeps the simulator inside `ulimit -v` limits that fit its guest RAM."""
PROBE_TRANSLATION_BUFFER = 4 << 20     # scratch engines run a handful of instructions


ENGINES_BETWEEN_COLLECTIONS = 3
"""A machine's engine lives until its Machine is freed, and a Machine sits in reference
cycles (hooks that call back into it), so only Python's cyclic collector frees it, and
it may not run between one machine and the next. Each engine's translation buffer is
mapped below the last (256 MiB each); from about the seventh, the buffer lies more
than 2 GiB from libunicorn's code, out of reach of x86-64's 32-bit call displacement,
and QEMU's code generator calls every helper indirectly: the same guest loop ran 1.7x
slower in the seventh machine of a process (docs/performance.md). So creating an
engine collects garbage first once this many more engines are alive than after the
last collection (engines still in use are not freed by it and move the mark up). Three,
not four: with four, four machines kept alive after twelve dropped ones reached 2.02 GiB
in 3 of 16 fresh processes (tests/memory/test_translation_buffer_reach.py; the holes
freed buffers leave vary from process to process with address-space randomization)."""
_live_engines: "weakref.WeakSet[Uc]" = weakref.WeakSet()
_collect_at = ENGINES_BETWEEN_COLLECTIONS


def _free_dead_engines() -> None:
    global _collect_at
    if len(_live_engines) >= _collect_at:
        gc.collect()
        _collect_at = len(_live_engines) + ENGINES_BETWEEN_COLLECTIONS


def create_engine(translation_buffer: int = TRANSLATION_BUFFER) -> Uc:
    _free_dead_engines()
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_tcg_buffer_size(translation_buffer)
    _live_engines.add(uc)
    return uc


PROBE_MEMORY = 0x10000                  # what every probe may use, from address 0


class ProbeEngine:
    """An engine for the process's one-off probes (the context layout, QEMU's CPUID
    answers). Each probe starts from the same clean CPU context, zeroed memory and an
    empty translation cache, as a new engine would: a new engine per probe cost ~3 ms
    each (its first emu_start sets up the translator), 18 ms of every start-up.
    An interrupt or exception stops the run; the CPU context at it is in `captured`.

    uc: an engine to borrow (a machine's, with its RAM mapped from address 0 and
    nothing run yet): the probes then pay no engine of their own (~5 ms: its
    creation, QEMU's set-up at the first mem_map, the translator's at the first
    run), and `give_back` leaves it as it was. The probes use the lender's RAM: an
    engine that ever unmapped RAM pays several times more for Unicorn's memory
    snapshots (docs/unicorn-quirks.md), which the machine used until its snapshots
    became write protection (memory/ram_snapshots.py)."""

    def __init__(self, uc: Uc | None = None) -> None:
        if uc is None:
            uc = create_engine(PROBE_TRANSLATION_BUFFER)
            uc.mem_map(0, PROBE_MEMORY)
        self.uc = uc
        self.captured: list[bytes] = []
        self._hook = uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self._clean = uc.context_save()

    def _on_interrupt(self, uc: Uc, vector: int, _user) -> None:
        self.captured.append(bytes(uc.context_save()))
        uc.emu_stop()

    def fresh(self) -> Uc:
        """The engine as new: clean registers, zeroed memory, nothing translated."""
        uc = self.uc
        uc.context_restore(self._clean)
        uc.mem_write(0, bytes(PROBE_MEMORY))
        uc.ctl_flush_tb()
        self.captured.clear()
        return uc

    def give_back(self) -> None:
        """A borrowed engine as it was lent: no hook, the clean context, the probes'
        memory zeroed as new RAM is, an empty translation cache."""
        uc = self.uc
        uc.hook_del(self._hook)
        uc.context_restore(self._clean)
        uc.mem_write(0, bytes(PROBE_MEMORY))
        uc.ctl_flush_tb()


_lender: Uc | None = None                # a machine's engine, lent for the probes of a block
_lent: ProbeEngine | None = None         # its probe set-up, made when a probe first asks
_lending = threading.Lock()              # machines made in two threads lend one at a time


@lru_cache(maxsize=1)
def _own_probe_engine() -> ProbeEngine:
    return ProbeEngine()


def probe_engine() -> ProbeEngine:
    """The engine the probes run on: a lent one (probes_on), else the process's own
    (made on first use)."""
    global _lent
    if _lender is None:
        return _own_probe_engine()
    if _lent is None:
        _lent = ProbeEngine(_lender)
    return _lent


@contextmanager
def probes_on(uc: Uc) -> Iterator[None]:
    """Run the probes made inside the block on uc (a new engine with RAM mapped from
    address 0, nothing run) instead of an engine of their own (the process keeps
    what they find). The engine is touched only if a probe runs: once the answers
    are cached, a machine's block costs nothing."""
    global _lender, _lent
    with _lending:
        _lender = uc
        try:
            yield
        finally:
            lent, _lender, _lent = _lent, None, None
            if lent is not None:
                lent.give_back()


def reg_id(name: str) -> int:
    return getattr(x86, f"UC_X86_REG_{name.upper()}")


class CpuState(Record):
    """A plain copy of the registers a report or a test looks at."""

    gpr: dict[str, int]
    rip: int
    rflags: int
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    efer: int
    segments: dict[str, int]
    gdtr: tuple[int, int]   # (base, limit)
    idtr: tuple[int, int]

    @property
    def long_mode(self) -> bool:
        return bool(self.efer & EFER.LMA)

    @property
    def interrupts_enabled(self) -> bool:
        return bool(self.rflags & RFLAGS.IF)


def read_cpu_state(uc: Uc) -> CpuState:
    gdtr = uc.reg_read(x86.UC_X86_REG_GDTR)
    idtr = uc.reg_read(x86.UC_X86_REG_IDTR)
    return CpuState(
        gpr={name: uc.reg_read(reg_id(name)) for name in GPR_NAMES},
        rip=uc.reg_read(x86.UC_X86_REG_RIP),
        rflags=uc.reg_read(x86.UC_X86_REG_RFLAGS),
        cr0=uc.reg_read(x86.UC_X86_REG_CR0),
        cr2=uc.reg_read(x86.UC_X86_REG_CR2),
        cr3=uc.reg_read(x86.UC_X86_REG_CR3),
        cr4=uc.reg_read(x86.UC_X86_REG_CR4),
        efer=uc.msr_read(MSR.EFER),
        segments={name: uc.reg_read(reg_id(name)) for name in SEGMENT_NAMES},
        gdtr=(gdtr[1], gdtr[2]),
        idtr=(idtr[1], idtr[2]),
    )
