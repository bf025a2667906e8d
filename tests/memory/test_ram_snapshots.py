"""Snapshots of guest memory by write protection (memory/ram_snapshots.py) against a
model that is Python's own bytearrays: every store made through Unicorn (translated
code, `rep stosb`, host writes) lands in the model too, and after every restore the
engine's memory must equal the model's copy taken at that snapshot, byte for byte."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from keystone import KS_ARCH_X86, KS_MODE_64, Ks
from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn.x86_const import UC_X86_REG_RAX

from unikernel_sim.memory.ram_snapshots import RamSnapshots, StaleSnapshotError

PAGE = 4096
RAM_PAGES = 24                      # region one: code page, then data pages
SECOND_BASE, SECOND_PAGES = 0x100000, 4   # region two (as the framebuffer is)
CODE = 0x0


def new_engine() -> tuple[Uc, RamSnapshots]:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    snapshots = RamSnapshots(uc)
    uc.mem_map_ptr(0, RAM_PAGES * PAGE, UC_PROT_ALL, snapshots.allocate(RAM_PAGES * PAGE))
    uc.mem_map_ptr(SECOND_BASE, SECOND_PAGES * PAGE, UC_PROT_ALL, snapshots.allocate(SECOND_PAGES * PAGE))
    return uc, snapshots


def run_code(uc: Uc, text: str, rax: int) -> None:
    code = bytes(Ks(KS_ARCH_X86, KS_MODE_64).asm(text + "; hlt", CODE)[0])
    uc.mem_write(CODE, code)
    uc.reg_write(UC_X86_REG_RAX, rax)
    uc.emu_start(CODE, CODE + len(code) - 1)


data_addresses = st.one_of(st.integers(PAGE, RAM_PAGES * PAGE - 8),
                           st.integers(SECOND_BASE, SECOND_BASE + SECOND_PAGES * PAGE - 8))


class SnapshotModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.uc, self.snapshots = new_engine()
        self.model = {0: bytearray(RAM_PAGES * PAGE), SECOND_BASE: bytearray(SECOND_PAGES * PAGE)}
        self.levels: list[tuple[object, dict]] = []          # (RamLevel, the model at it)
        self.dropped: list[object] = []

    def _model_write(self, address: int, data: bytes) -> None:
        base = SECOND_BASE if address >= SECOND_BASE else 0
        self.model[base][address - base:address - base + len(data)] = data

    @rule(address=data_addresses, value=st.binary(min_size=1, max_size=8))
    def host_write(self, address, value):
        self.uc.mem_write(address, value)
        self._model_write(address, value)

    @rule(address=data_addresses, value=st.integers(0, 2**64 - 1))
    def guest_store(self, address, value):
        run_code(self.uc, f"mov qword ptr [{address:#x}], rax", value)
        self._model_write(CODE, self.uc.mem_read(CODE, 64))            # the code written for it
        self._model_write(address, value.to_bytes(8, "little"))

    @rule(page=st.integers(1, RAM_PAGES - 3), fill=st.integers(0, 255))
    def guest_fills_pages(self, page, fill):
        """A `rep stosb` over two and a half pages: QEMU's string helper stores through."""
        run_code(self.uc, f"mov rdi, {page * PAGE + 100:#x}; mov rcx, {PAGE * 2 + PAGE // 2}; rep stosb", fill)
        self._model_write(CODE, self.uc.mem_read(CODE, 64))
        self._model_write(page * PAGE + 100, bytes([fill]) * (PAGE * 2 + PAGE // 2))

    @rule()
    def take(self):
        self.levels.append((self.snapshots.take(), {base: bytes(data) for base, data in self.model.items()}))

    @precondition(lambda self: self.levels)
    @rule(data=st.data())
    def restore(self, data):
        index = data.draw(st.integers(0, len(self.levels) - 1))
        level, memory = self.levels[index]
        self.snapshots.restore(level)
        self.dropped += [dropped for dropped, _ in self.levels[index + 1:]]
        del self.levels[index + 1:]
        self.model = {base: bytearray(content) for base, content in memory.items()}

    @precondition(lambda self: self.dropped)
    @rule(data=st.data())
    def restore_a_dropped_one(self, data):
        before = self.engine_memory()
        with pytest.raises(StaleSnapshotError):
            self.snapshots.restore(data.draw(st.sampled_from(self.dropped)))
        assert self.engine_memory() == before

    def engine_memory(self) -> dict:
        return {0: bytes(self.uc.mem_read(0, RAM_PAGES * PAGE)),
                SECOND_BASE: bytes(self.uc.mem_read(SECOND_BASE, SECOND_PAGES * PAGE))}

    @invariant()
    def memory_is_the_model(self):
        assert self.engine_memory() == {base: bytes(data) for base, data in self.model.items()}

    @invariant()
    def the_chain_is_the_models(self):
        assert self.snapshots.stats().levels == len(self.levels)


SnapshotModel.TestCase.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)
test_snapshots_follow_the_bytearray_model = SnapshotModel.TestCase


def test_a_page_written_before_every_restore_stays_writable_and_still_goes_back():
    """The pages a guest call writes every time are kept writable (no fault, no
    mprotect) and copied back at each restore: a restore must still undo them, and
    undo nothing else."""
    uc, snapshots = new_engine()
    uc.mem_write(PAGE, b"boot")
    level = snapshots.take()
    for round_ in range(6):
        uc.mem_write(PAGE, f"call {round_}".encode())
        uc.mem_write(3 * PAGE, b"x")
        snapshots.restore(level)
        assert bytes(uc.mem_read(PAGE, 4)) == b"boot"
        assert bytes(uc.mem_read(3 * PAGE, 1)) == b"\0"
    faults = snapshots.stats().pages_saved
    uc.mem_write(PAGE, b"again")
    assert snapshots.stats().pages_saved == faults          # no fault: the page stayed writable
    newer = snapshots.take()                                # a new level protects it again
    uc.mem_write(PAGE, b"newer")
    assert snapshots.stats().pages_saved == faults + 1
    snapshots.restore(newer)
    assert bytes(uc.mem_read(PAGE, 5)) == b"again"
    snapshots.restore(level)
    assert bytes(uc.mem_read(PAGE, 4)) == b"boot"


def test_scattered_writes_past_the_run_limit_stay_within_the_kernels_map_count():
    """Every other page written after a snapshot would split the memory into one kernel
    VMA per page (vm.max_map_count is 65,530): past 16,384 runs a fault unprotects its
    whole 2 MiB block. The process's mappings stay bounded, and the restore is exact."""
    pages = 40_000
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    snapshots = RamSnapshots(uc)
    uc.mem_map_ptr(0, pages * PAGE, UC_PROT_ALL, snapshots.allocate(pages * PAGE))
    level = snapshots.take()
    for page in range(0, pages, 2):
        uc.mem_write(page * PAGE, b"\x01")
    with open("/proc/self/maps") as maps:
        assert sum(1 for _ in maps) < 40_000
    assert snapshots.stats().writable_runs <= 16_384 + pages // 512
    snapshots.restore(level)
    assert bytes(uc.mem_read(0, pages * PAGE)).count(0) == pages * PAGE


def test_a_crash_that_is_not_a_snapshot_fault_still_reaches_faulthandler(tmp_path):
    """The write-fault handler passes faults outside guest memory to the handler before
    it (Python's faulthandler here): a real segfault is still reported and kills."""
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent("""
        import ctypes, faulthandler
        faulthandler.enable()
        from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc
        from unikernel_sim.memory.ram_snapshots import RamSnapshots
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        snapshots = RamSnapshots(uc)
        uc.mem_map_ptr(0, 1 << 20, UC_PROT_ALL, snapshots.allocate(1 << 20))
        snapshots.take()
        uc.mem_write(0x5000, b"guest store after the snapshot")
        print("stored", bytes(uc.mem_read(0x5000, 5)).decode(), flush=True)
        ctypes.string_at(0)
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.stdout == "stored guest\n"
    assert "Segmentation fault" in result.stderr
    assert result.returncode == -11


def test_a_faulthandler_enabled_after_the_snapshot_is_put_behind_the_write_fault_handler(tmp_path):
    """faulthandler.enable() after a snapshot puts Python's handler in front; the next
    run (ensure_handler) puts ours back in front, so a store after it is a snapshot fault
    handled silently, not a "Fatal Python error"."""
    script = tmp_path / "late.py"
    script.write_text(textwrap.dedent("""
        import faulthandler
        from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc
        from unikernel_sim.memory.ram_snapshots import RamSnapshots
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        snapshots = RamSnapshots(uc)
        uc.mem_map_ptr(0, 1 << 20, UC_PROT_ALL, snapshots.allocate(1 << 20))
        snapshots.take()
        faulthandler.enable()
        snapshots.ensure_handler()
        uc.mem_write(0x5000, b"late")
        print(bytes(uc.mem_read(0x5000, 4)).decode(), snapshots.stats().pages_saved, flush=True)
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert (result.stdout, result.stderr, result.returncode) == ("late 1\n", "", 0)


def test_machines_kept_only_by_reference_cycles_do_not_use_up_the_watch_table():
    """The handler's table holds 4,096 live memories; ones no longer used but still in
    reference cycles (a Machine is full of them) are collected before giving up."""
    import gc

    class Holder:
        pass

    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(4_200):
            holder = Holder()
            holder.uc = Uc(UC_ARCH_X86, UC_MODE_64)
            holder.snapshots = RamSnapshots(holder.uc)
            holder.cycle = holder
    finally:
        if enabled:
            gc.enable()
