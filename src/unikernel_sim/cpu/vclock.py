"""The virtual clock: instruction counting and RDTSC without Python in the hot path.

Instructions are counted per translated block by a C block hook, and per instruction
only where a stop must land exactly (``_vclock.c``, "Instruction counting"); the host
settles the count when the guest stops inside a block (``VirtualClock.settle``).
The hooks and the RDTSC handler are C functions registered directly with Unicorn's C
API through ctypes.
Why not the Python binding: a Python code hook costs ~0.4 us per instruction,
and the binding refuses ``UC_HOOK_INSN`` for ``UC_X86_INS_RDTSC`` although the
C core (since 2.1.2) accepts it. Passing a C function pointer to the library's
own ``uc_hook_add`` reaches the core directly. RDTSCP gets the same treatment:
left to QEMU it returns a host-based counter, unrelated to RDTSC and different
on every run.
"""
from __future__ import annotations

import ctypes
import itertools
import time
import weakref

from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_EDGE_GENERATED, UC_HOOK_INSN, Uc
from unicorn.unicorn_const import UC_CTL_IO_READ_WRITE, UC_CTL_IO_WRITE, UC_CTL_TB_REQUEST_CACHE, UC_CTL_TLB_FLUSH
from unicorn.x86_const import (
    UC_X86_INS_RDTSC, UC_X86_INS_RDTSCP, UC_X86_REG_MSR, UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX,
    UC_X86_REG_RIP,
)

from unikernel_sim.cpu.native import check_mirror, library
from unikernel_sim.cpu.unicorn_compat import add_native_hook, delete_native_hook, native_function_address, run_to
from unikernel_sim.identity_cache import IdentityCache

NEVER = (1 << 64) - 1
RESTORED_COUNTERS_KEPT = 16     # snapshots whose saved counters restore keeps parsed
HOOK_ORDER = itertools.count()
"""Unicorn runs the code hooks of an instruction in the order they were added. A hook
that stops before an instruction runs (a breakpoint) must know whether the counting
hook, if added before it, has already counted that instruction: both draw from here."""
RETURN_HISTORY = 16
POSITION_CACHE = 64                 # _vclock.h
COUNT_BETWEEN = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)
GUARD_MAX = 32                      # addresses the counting hook can guard (_vclock.h)
NS_PER_SECOND = 1_000_000_000
# uc_ctl's control word: type | (argument count << 26) | (direction << 30) (unicorn.h, UC_CTL)
REQUEST_CACHE_CONTROL = UC_CTL_TB_REQUEST_CACHE | (2 << 26) | (UC_CTL_IO_READ_WRITE << 30)
TLB_FLUSH_CONTROL = UC_CTL_TLB_FLUSH | (0 << 26) | (UC_CTL_IO_WRITE << 30)


class VClockState(ctypes.Structure):
    """Mirror of ``struct vclock`` in _vclock.c (same order, same types)."""

    _fields_ = [
        ("instructions", ctypes.c_uint64),
        ("stop_at", ctypes.c_uint64),
        ("stopped", ctypes.c_uint64),
        ("stop_requested", ctypes.c_uint64),
        ("deterministic", ctypes.c_uint64),
        ("tsc_offset", ctypes.c_uint64),
        ("tsc_hz", ctypes.c_uint64),
        ("ns_per_instruction_q32", ctypes.c_uint64),
        ("host_ns_at_zero", ctypes.c_uint64),
        ("host_ns_paused", ctypes.c_uint64),
        ("virtual_ns_skipped", ctypes.c_int64),
        ("rdtsc_count", ctypes.c_uint64),
        ("emu_stop", ctypes.c_void_p),
        ("reg_write", ctypes.c_void_p),
        ("reg_rax", ctypes.c_int64),
        ("reg_rdx", ctypes.c_int64),
        ("ret_count", ctypes.c_uint64),
        ("last_returns", ctypes.c_uint64 * RETURN_HISTORY),
        ("reg_read", ctypes.c_void_p),
        ("reg_rcx", ctypes.c_int64),
        ("reg_msr", ctypes.c_int64),
        ("async_stop", ctypes.c_uint64),
        ("guard_count", ctypes.c_uint64),
        ("guard_lo", ctypes.c_uint64),
        ("guard_hi", ctypes.c_uint64),
        ("guard_addresses", ctypes.c_uint64 * GUARD_MAX),
        ("guard_hit", ctypes.c_uint64),
        ("guard_skip", ctypes.c_uint64),
        ("align", ctypes.c_void_p),
        ("budget_at", ctypes.c_uint64),
        ("ctl", ctypes.c_void_p),
        ("ctl_request_cache", ctypes.c_uint64),
        ("counting", ctypes.c_uint64),
        ("all_exact", ctypes.c_uint64),
        ("exact_lo", ctypes.c_uint64),
        ("exact_hi", ctypes.c_uint64),
        ("exact_request_pc", ctypes.c_uint64),
        ("exact_request_size", ctypes.c_uint64),
        ("in_block", ctypes.c_uint64),
        ("block_pc", ctypes.c_uint64),
        ("block_size", ctypes.c_uint64),
        ("block_start", ctypes.c_uint64),
        ("block_position", ctypes.c_uint64),
        ("block_covered", ctypes.c_uint64),
        ("block_lookups_failed", ctypes.c_uint64),
        ("reg_rip", ctypes.c_int64),
        ("count_between", ctypes.c_void_p),
        ("position_keys", (ctypes.c_uint64 * 2) * POSITION_CACHE),
        ("position_values", ctypes.c_uint64 * POSITION_CACHE),
        ("partial_pc", ctypes.c_uint64),
        ("tick_attention", ctypes.c_uint64),
        ("tick", ctypes.c_void_p),
        ("tick_at", ctypes.c_uint64),
        ("call_active", ctypes.c_uint64),
        ("timer_polls", ctypes.c_uint64),
        ("tlb_review_at", ctypes.c_uint64),
        ("ctl_tlb_flush", ctypes.c_uint64),
        ("tlb_reviews", ctypes.c_uint64),
        ("icounts", ctypes.c_void_p),
        ("stop_pc", ctypes.c_uint64),
        ("event_ns", ctypes.c_uint64),
        ("host_timer", ctypes.c_void_p),
    ]


_lib = library
check_mirror(VClockState, "_vclock.c's struct vclock", "vclock_struct_size")
_lib.vclock_now_ns.restype = ctypes.c_uint64
_lib.vclock_now_ns.argtypes = [ctypes.POINTER(VClockState)]
_lib.vclock_tsc.restype = ctypes.c_uint64
_lib.vclock_tsc.argtypes = [ctypes.POINTER(VClockState)]
_lib.vclock_host_ns.restype = ctypes.c_uint64
_COUNT_HOOK = ctypes.cast(_lib.vclock_count, ctypes.c_void_p)
_RDTSC_HOOK = ctypes.cast(_lib.vclock_rdtsc, ctypes.c_void_p)
_RDTSCP_HOOK = ctypes.cast(_lib.vclock_rdtscp, ctypes.c_void_p)
_RET_HOOK = ctypes.cast(_lib.vclock_ret, ctypes.c_void_p)
_CALL_RETURN_HOOK = ctypes.cast(_lib.vclock_call_return, ctypes.c_void_p)
_HLT_HOOK = ctypes.cast(_lib.vclock_hlt, ctypes.c_void_p)
_BLOCK_HOOK = ctypes.cast(_lib.vclock_block, ctypes.c_void_p)
_TB_GENERATED_HOOK = ctypes.cast(_lib.vclock_tb_generated, ctypes.c_void_p)
ONE_BLOCK = b"\xeb\x00"             # jmp $+2 (any mode): a block that runs to its end
_lib.tb_icounts_new.restype = ctypes.c_void_p
_lib.tb_icounts_free.argtypes = [ctypes.c_void_p]
_lib.tb_icounts_free.restype = None
_lib.tb_icounts_known.argtypes = _lib.tb_icounts_disputed.argtypes = [ctypes.c_void_p]
_lib.tb_icounts_known.restype = _lib.tb_icounts_disputed.restype = ctypes.c_uint64
_lib.vclock_request_async_stop.restype = None
_lib.vclock_request_async_stop.argtypes = [ctypes.POINTER(VClockState)]


def host_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds (the clock fast mode runs on; the C hooks read the
    same clock with clock_gettime, and Python's monotonic_ns is that call without ctypes)."""
    return time.monotonic_ns()


class VirtualClock:
    """One clock for the whole machine: PIT, TSC and IRQ timing read it.

    deterministic: time = instructions x ns_per_instruction (+ hlt sleeps), so
    runs repeat exactly. Otherwise time is the host's monotonic clock, and
    instructions are counted only while a budget or a guest call needs them.
    """

    def __init__(
        self,
        uc: Uc,
        *,
        deterministic: bool,
        tsc_hz: int,
        instructions_per_second: int,
    ) -> None:
        self.uc = uc
        self.state = VClockState()
        s = self.state
        s.stop_at = NEVER
        s.guard_lo, s.guard_hi = NEVER, 0
        s.guard_hit = s.guard_skip = NEVER
        s.deterministic = int(deterministic)
        s.tsc_hz = tsc_hz
        s.ns_per_instruction_q32 = (NS_PER_SECOND << 32) // instructions_per_second
        s.host_ns_at_zero = host_ns()
        s.emu_stop = native_function_address("uc_emu_stop")
        s.reg_write = native_function_address("uc_reg_write")
        s.reg_rax = UC_X86_REG_RAX
        s.reg_rdx = UC_X86_REG_RDX
        s.reg_read = native_function_address("uc_reg_read")
        s.reg_rcx = UC_X86_REG_RCX
        s.reg_msr = UC_X86_REG_MSR
        s.reg_rip = UC_X86_REG_RIP
        s.budget_at = s.exact_request_pc = s.exact_lo = s.partial_pc = s.tick_at = s.stop_pc = s.event_ns = NEVER
        s.ctl = native_function_address("uc_ctl")
        s.ctl_request_cache = REQUEST_CACHE_CONTROL
        s.ctl_tlb_flush = TLB_FLUSH_CONTROL          # the soft TLB's reviews (_vclock.c); 0: none
        self._pointer = ctypes.pointer(self.state)
        self._user_data = ctypes.cast(self._pointer, ctypes.c_void_p)
        self._restored_counters = IdentityCache(RESTORED_COUNTERS_KEPT)   # a snapshot's bytes -> its four counters
        self._count_hook: int | None = None          # vclock_count on every instruction (all_exact)
        self._count_hook_order: int | None = None
        self._exact_hook: int | None = None          # vclock_count on one block (an exact budget)
        self._exact_hook_order: int | None = None
        self._exact_range: tuple[int, int] | None = None
        self._stopped_before = False                 # a code hook stopped in front of RIP
        self.on_partial = None   # (block start, instructions counted, instructions run): a profiler's
        self._count_between = lambda start, end: 0
        self._count_between_c = COUNT_BETWEEN(lambda start, end: self._count_between(start, end))
        s.count_between = ctypes.cast(self._count_between_c, ctypes.c_void_p)
        self._add_hook(UC_HOOK_INSN, _RDTSC_HOOK, 1, 0, UC_X86_INS_RDTSC)
        self._add_hook(UC_HOOK_INSN, _RDTSCP_HOOK, 1, 0, UC_X86_INS_RDTSCP)
        self._add_hook(UC_HOOK_BLOCK, _BLOCK_HOOK, 1, 0)          # counts; Q19: where async stops land
        self._learn_block_counts()
        self.on_counting: list = []          # called when the per-instruction hook is installed
        self._paused_at: int | None = None
        self.pause()

    def _learn_block_counts(self) -> None:
        """Keep the instruction count of every block Unicorn translates (_tb_icounts.c), so
        that counting a block does not ask Unicorn (uc_ctl) each time. The table learns from
        translation reports, which Unicorn makes only once a block has run to its end in the
        engine's life (Q29): one is run here first, then the cache is flushed so that no
        block predates the table. Without memory for it, blocks are asked of Unicorn."""
        table = _lib.tb_icounts_new()
        if not table:
            return
        weakref.finalize(self, _lib.tb_icounts_free, table)
        self._run_one_block()
        self.state.icounts = table
        self._add_hook(UC_HOOK_EDGE_GENERATED, _TB_GENERATED_HOOK, 1, 0)
        self.uc.ctl_flush_tb()

    def _run_one_block(self) -> None:
        """`jmp $+2` at address 0, run up to its end: a block that ends by its jump (not by
        an exception or a stop), with the bytes and the CPU state put back after."""
        uc = self.uc
        saved = bytes(uc.mem_read(0, len(ONE_BLOCK)))
        context = uc.context_save()
        uc.mem_write(0, ONE_BLOCK)
        run_to(uc, 0, len(ONE_BLOCK))
        uc.mem_write(0, saved)
        uc.context_restore(context)

    def block_counts_learnt(self) -> tuple[int, int]:
        """(blocks whose count the table knows, blocks two translations disputed): statistics."""
        table = self.state.icounts
        if not table:
            return (0, 0)
        return (_lib.tb_icounts_known(table), _lib.tb_icounts_disputed(table))

    @property
    def deterministic(self) -> bool:
        return bool(self.state.deterministic)

    # --- hooks -----------------------------------------------------------
    def _add_hook(self, htype: int, callback: ctypes.c_void_p, begin: int, end: int, *extra: int) -> int:
        return add_native_hook(self.uc, htype, callback, self._user_data, begin, end, *extra)

    def watch_return(self, address: int) -> None:
        """Record executions of the `ret` at address (C hook, no Python)."""
        self._add_hook(UC_HOOK_CODE, _RET_HOOK, address, address)

    def watch_call_return(self, address: int) -> int:
        """Stop in front of address while call_active is set (a guest call's return
        address; C hook, no Python). Returns the hook's handle (delete_native_hook)."""
        return self._add_hook(UC_HOOK_CODE, _CALL_RETURN_HOOK, address, address)

    def watch_hlt(self, address: int) -> int:
        """Let the tick path wake the hlt at address in C (vclock_hlt: C hook, no Python);
        the caller drops the address's translations. Returns the hook's handle."""
        return self._add_hook(UC_HOOK_CODE, _HLT_HOOK, address, address)

    def last_return(self) -> int | None:
        """Address of the most recent watched `ret`, or None."""
        count = self.state.ret_count
        return None if count == 0 else self.state.last_returns[(count - 1) % RETURN_HISTORY]

    @property
    def count_between(self):
        """instructions in [start, end) of the running code: the Machine decodes them."""
        return self._count_between

    @count_between.setter
    def count_between(self, function) -> None:
        self._count_between = function

    @property
    def counting(self) -> bool:
        return bool(self.state.counting)

    @property
    def per_instruction(self) -> bool:
        """vclock_count runs before every instruction (exact stops after any instruction)."""
        return bool(self.state.all_exact)

    def start_counting(self, *, per_instruction: bool = False) -> None:
        """Count instructions from now on: per translated block (the block hook is on
        all code already, so nothing is retranslated). per_instruction: also run the
        C counting hook before every instruction (~12 ns each), for stops that must
        land right after any instruction (watchpoints). Unicorn applies a new code hook
        only to code translated afterwards, so that flushes the translation cache."""
        if not self.state.counting:
            self.state.in_block = 0
            self.state.counting = 1
        if per_instruction and self._count_hook is None:
            self._count_hook = self._add_hook(UC_HOOK_CODE, _COUNT_HOOK, 1, 0)
            self._count_hook_order = next(HOOK_ORDER)
            self.state.all_exact = 1
            self.uc.ctl_flush_tb()
            for callback in self.on_counting:
                callback()

    # --- stops inside a block --------------------------------------------------------------
    def settle(self, rip: int, *, faulting: bool = False, before: bool = False) -> None:
        """Make the count exact where the guest stopped (after every emu_start, and in the
        exception hook before delivery). The block hook counted the current block whole;
        if the guest stopped inside it, count only the instructions before RIP (plus the
        faulting one: an exception's instruction counts as started, as it does for the
        per-instruction hook). before: a hook stopped (or redirected) in front of RIP."""
        s = self.state
        before, self._stopped_before = before or self._stopped_before, False
        if not s.in_block:
            return
        s.in_block = 0
        whole = s.instructions
        if s.block_covered:
            s.instructions = s.block_start + s.block_position
            if s.block_position and not faulting:
                s.partial_pc = rip
        else:
            start, end = s.block_pc, s.block_pc + s.block_size
            if not start <= rip < end or (rip == start and not before and not faulting):
                return                                   # it ran to its end; RIP is where it went
            s.instructions = s.block_start + self.count_between(start, rip) + int(faulting)
            if not faulting and rip != start:
                s.partial_pc = rip                       # the next run resumes inside this block
        if self.on_partial is not None and s.instructions < whole:
            self.on_partial(s.block_pc, whole - s.block_start, s.instructions - s.block_start)

    def cover_requested_block(self) -> bool:
        """After a slice: drop the last exact range, and if the block hook asked (a budget
        ends inside a block), cover that block with the per-instruction hook for the
        next slice. True if it asked (the run goes on)."""
        s = self.state
        if self._exact_hook is not None:
            delete_native_hook(self.uc, self._exact_hook)
            self.uc.ctl_remove_cache(*self._exact_range)
            self._exact_hook = self._exact_range = None
            s.exact_lo, s.exact_hi = NEVER, 0
        if s.exact_request_pc == NEVER:
            return False
        start, end = s.exact_request_pc, s.exact_request_pc + max(1, s.exact_request_size)
        s.exact_request_pc = NEVER
        self._exact_hook = self._add_hook(UC_HOOK_CODE, _COUNT_HOOK, start, end - 1)
        self._exact_hook_order = next(HOOK_ORDER)
        self._exact_range = (start, end)
        s.exact_lo, s.exact_hi = start, end - 1
        self.uc.ctl_remove_cache(start, end)             # retranslated with the hook (Q23)
        return True

    @property
    def exact_instructions(self) -> int:
        """From a hook inside a block the per-instruction hook covers: instructions
        started so far, the current one included."""
        s = self.state
        if s.in_block and s.block_covered:
            return s.block_start + s.block_position
        return s.instructions

    # --- guarded addresses (counting only) -------------------------------------------------
    def guard(self, addresses: list[int]) -> list[int]:
        """Stop before each of addresses (counting mode); returns those that did not fit."""
        s = self.state
        taken = addresses[:GUARD_MAX - s.guard_count]
        for address in taken:
            s.guard_addresses[s.guard_count] = address
            s.guard_count += 1
            s.guard_lo, s.guard_hi = min(s.guard_lo, address), max(s.guard_hi, address)
        return addresses[len(taken):]

    def take_guard_hit(self) -> int | None:
        """The guarded address the last slice stopped before, or None."""
        hit = self.state.guard_hit
        if hit == NEVER:
            return None
        self.state.guard_hit = NEVER
        return hit

    def let_guarded_run(self, address: int) -> None:
        """The write at address was checked and is allowed: execute it once."""
        self.state.guard_skip = address

    # --- readings ----------------------------------------------------------
    @property
    def instructions(self) -> int:
        return self.state.instructions

    def now_ns(self) -> int:
        """vclock_now_ns, computed here: a ctypes call costs more than the arithmetic."""
        s = self.state
        if s.deterministic:
            return ((s.instructions * s.ns_per_instruction_q32) >> 32) + s.virtual_ns_skipped
        return time.monotonic_ns() - s.host_ns_at_zero - s.host_ns_paused + s.virtual_ns_skipped

    def tsc(self) -> int:
        return int(_lib.vclock_tsc(self._pointer))

    def arm_stop(self, at_instruction: int | None, *, keep_request: bool = False) -> None:
        """A device deadline: stop at the first block boundary at or after instruction
        number at_instruction (None: never); the same boundary however the count is kept.

        keep_request: re-arming from inside a hook must not forget a stop
        already requested in this slice."""
        self.state.stop_at = NEVER if at_instruction is None else at_instruction
        if not keep_request:
            self.state.stopped = 0
            self.state.stop_requested = 0
            self.state.stop_pc = NEVER

    def set_next_event(self, event_ns: int | None) -> None:
        """The machine's next device event other than the tick path's timers (virtual ns;
        None: none; 0: a poll due now), as RunLoop._arm armed it: C code that moves virtual
        time inside a slice (vclock_jump: a port access's time, a hlt woken in C) re-arms it,
        and never moves time to or past it."""
        self.state.event_ns = NEVER if event_ns is None else max(0, event_ns)

    def follow_host_timer(self, address: int) -> None:
        """Fast mode: a jump in C moves this host timer's event deadline (_host_timer.h)."""
        self.state.host_timer = address

    def arm_budget(self, at_instruction: int | None) -> None:
        """Stop exactly in front of instruction number at_instruction (None: never)."""
        self.state.budget_at = NEVER if at_instruction is None else at_instruction

    def uncount_stopped_instruction(self, hook_order: int) -> None:
        """A code hook added at hook_order stops before its instruction runs. In a block
        the per-instruction hook covers, that hook has counted the instruction if it came
        first (Q24): take it back. Elsewhere settle() counts up to RIP, told here that the
        stop is in front of RIP even at the block's first instruction."""
        s = self.state
        if not s.in_block:
            return
        if not s.block_covered:
            self._stopped_before = True
            return
        counter = self._count_hook_order if s.all_exact else self._exact_hook_order
        if counter is not None and counter < hook_order and s.block_position > 0:
            s.block_position -= 1

    def request_async_stop(self) -> None:
        """Stop the guest at its next block boundary; safe from any thread, and a
        request made between two slices stops the next one at its first block.
        Threads other than the one running emu_start must use this, never
        uc.emu_stop() (Q19: a stop landing inside a read-modify-write
        instruction makes it run twice)."""
        _lib.vclock_request_async_stop(self._pointer)

    def cancel_async_stop(self) -> None:
        """Forget a request left over from an earlier run (made after it ended)."""
        self.state.async_stop = 0

    def note_stop_request(self) -> None:
        """A hook asked Unicorn to stop: do not count the instruction it never runs."""
        self.state.stop_requested = 1

    @property
    def stopped_by_clock(self) -> bool:
        return bool(self.state.stopped)

    def stopped_in_front_of(self, address: int) -> bool:
        """A C hook stopped the guest in this slice in front of the instruction at address
        (so emu_start did not end there by itself)."""
        return self.state.stop_pc == address

    def instruction_at(self, ns: int) -> int:
        """Deterministic mode: the instruction count at which virtual time reaches ns."""
        s = self.state
        span = max(0, ns - s.virtual_ns_skipped)
        return -(-(span << 32) // s.ns_per_instruction_q32)

    def host_ns_at(self, ns: int) -> int:
        """Fast mode: the host CLOCK_MONOTONIC value at which virtual time reaches ns."""
        s = self.state
        return ns + s.host_ns_at_zero + s.host_ns_paused - s.virtual_ns_skipped

    def pause(self) -> None:
        """Stop fast-mode time while the machine is not running (between runs, snapshots)."""
        if not self.deterministic and self._paused_at is None:
            self._paused_at = host_ns()

    def resume(self) -> None:
        if self._paused_at is not None:
            self.state.host_ns_paused += host_ns() - self._paused_at
            self._paused_at = None

    def skip_ns(self, ns: int) -> None:
        """Jump virtual time forward (a hlt that sleeps until the next event)."""
        self.state.virtual_ns_skipped += max(0, ns)

    def _paused_now_ns(self) -> int:
        """Fast mode, paused: the virtual time at which the clock stopped."""
        s = self.state
        return self._paused_at - s.host_ns_at_zero - s.host_ns_paused + s.virtual_ns_skipped

    def snapshot(self) -> tuple[bytes, int]:
        """The clock's state and its virtual time (the machine must be paused)."""
        now = self.now_ns() if self.deterministic else self._paused_now_ns()
        return bytes(self.state), now

    def restore(self, saved: tuple[bytes, int]) -> None:
        """Back to a snapshot's time: deterministic mode restores the counters;
        fast mode shifts its offset so that time resumes at the snapshot's value."""
        data, then = saved
        counters = self._restored_counters.get(data)
        if counters is None:                                  # parsed once per snapshot
            old = VClockState.from_buffer_copy(data)
            counters = self._restored_counters.keep(
                data, (old.instructions, old.tsc_offset, old.virtual_ns_skipped, old.rdtsc_count))
        s = self.state
        s.instructions, s.tsc_offset, s.virtual_ns_skipped, s.rdtsc_count = counters
        s.stop_at = s.budget_at = s.partial_pc = NEVER
        s.stopped = s.stop_requested = s.in_block = 0
        s.stop_pc = NEVER
        s.tlb_review_at = 0                  # the next review after the restored count
        self._stopped_before = False
        if not self.deterministic:
            self.pause()
            self.state.virtual_ns_skipped += then - self._paused_now_ns()
