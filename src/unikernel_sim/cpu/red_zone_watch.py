"""Gathering red-zone evidence while the guest runs.

When an IRQ is delivered in 64-bit mode on the interrupted stack, its frame
lands in the 128 bytes below the interrupted RSP - the red zone that System V
code may use without moving RSP. The watch remembers which bytes the frame
overwrote, puts a read hook on that range, and retranslates the interrupted
function so the hook reaches it. A read by that function, at that RSP, of bytes
that still hold the frame's values is the evidence: the function was keeping
data in its red zone, and the interrupt destroyed it. Code built with
-mno-red-zone never reads below RSP, so it never fires there.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from unicorn import UC_HOOK_MEM_READ
from unicorn import x86_const as x86

from unikernel_sim.records import record_equal, record_repr

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

RED_ZONE_BYTES = 128
MAX_HITS = 64
WATCH_WINDOW_NS = 20_000
"""How long after an interrupt the watch stays armed. A read hook slows every
guest load while it exists (measured: TinyLlama 35 % slower with it always
armed), and code reads its red zone right after the interrupt returns, so a
short window keeps the evidence and drops the cost."""


class RedZoneHit:
    """A function that read a red-zone slot an interrupt frame had overwritten."""

    def __init__(self, function: str, where: str, rip: int, offsets: list[int] | None = None) -> None:
        self.function = function
        self.where = where
        self.rip = rip
        self.offsets: list[int] = [] if offsets is None else offsets     # relative to the interrupted RSP

    def __repr__(self) -> str:
        return record_repr(self)

    def __eq__(self, other: object) -> bool:
        return record_equal(self, other)


def may_use_red_zone(code: bytes, address: int) -> bool:
    """Whether compiled code could keep data in its red zone: a leaf function (no
    call: a callee's frame would overwrite the zone) that addresses memory below
    RSP, or below RBP without ever moving RSP down for a frame (GCC -O0 with the
    red zone). Code built with -mno-red-zone never qualifies, so the watch - a
    memory hook and a flush of all translated code on every interrupt - is only
    armed where evidence can exist. Read from capstone's lite text (its C library
    alone, cpu/x86_lite_decoder.py; tests compare with capstone's operand details)."""
    from unikernel_sim.cpu.x86_lite_decoder import LiteDecoder

    decoder = LiteDecoder(64)
    below_rsp = below_rbp = frame_reserved = False
    for _address, _size, mnemonic, op_str in decoder.disasm_lite(code, address):
        if mnemonic == "call":
            return False
        if mnemonic == "sub" and _FRAME_RESERVE.fullmatch(op_str):
            frame_reserved = True
        for base in _BELOW_BASE.findall(op_str):
            below_rsp |= base == "rsp"
            below_rbp |= base == "rbp"
    decoder.close()
    return below_rsp or (below_rbp and not frame_reserved)


_FRAME_RESERVE = re.compile(r"rsp, (?:0x[0-9a-f]+|\d+)")                 # sub rsp, imm
_BELOW_BASE = re.compile(r"\[(?:[a-z]s:)?(rsp|rbp)\b[^\]]*- (?:0x[0-9a-f]+|\d+)\]")   # [base ... - disp]


class RedZoneWatch:
    def __init__(self, machine: "Machine") -> None:
        self.machine = machine
        self.hits: list[RedZoneHit] = []
        self._candidates: dict[int, bool] = {}       # function address -> may_use_red_zone
        self._hook: int | None = None
        self._watch: dict | None = None
        self.expires_ns: int | None = None

    def interrupt_delivered(self, old_rsp: int, new_rsp: int, return_rip: int, now_ns: int) -> None:
        """Called right after an IRQ frame was pushed on the interrupted stack."""
        self.retire()
        symbols = self.machine.symbols
        found = symbols.lookup(return_rip) if symbols is not None else None
        low = max(new_rsp, old_rsp - RED_ZONE_BYTES)
        if found is None or found[0].size == 0 or low >= old_rsp or len(self.hits) >= MAX_HITS:
            return
        function = found[0]
        if not self._may_use(function):
            return
        frame = self.machine.read_virtual(low, old_rsp - low)
        if frame is None:
            return
        self._watch = {"low": low, "old_rsp": old_rsp, "frame": frame, "function": function,
                       "start": function.address, "end": function.address + function.size}
        self._hook = self.machine.uc.hook_add(UC_HOOK_MEM_READ, self._on_read, begin=low, end=old_rsp - 1)
        self.machine.uc.ctl_remove_cache(function.address, function.address + function.size)
        self.expires_ns = now_ns + WATCH_WINDOW_NS

    @property
    def armed(self) -> bool:
        """A watch is on: the next delivery must retire it (the run loop's path)."""
        return self._hook is not None

    def safe_range(self, return_rip: int) -> tuple[int, int] | None:
        """[start, end) around return_rip where an interrupt frame never needs the watch:
        the function, when it cannot use its red zone; the address alone, outside every
        sized function; everything, once the hits are full. None: the watch is on, or
        the function may use its red zone (each such delivery must be looked at)."""
        if len(self.hits) >= MAX_HITS:
            return 0, (1 << 64) - 1
        if self._hook is not None:
            return None
        symbols = self.machine.symbols
        found = symbols.lookup(return_rip) if symbols is not None else None
        if found is None or found[0].size == 0:
            return return_rip, return_rip + 1
        function = found[0]
        if self._may_use(function):
            return None
        return function.address, function.address + function.size

    def _may_use(self, function) -> bool:
        known = self._candidates.get(function.address)
        if known is None:
            code = self.machine.read_virtual(function.address, function.size)
            known = code is not None and may_use_red_zone(code, function.address)
            self._candidates[function.address] = known
        return known

    def expire(self, now_ns: int) -> None:
        if self.expires_ns is not None and now_ns >= self.expires_ns:
            self.retire()

    def retire(self) -> None:
        """Stop watching (before the next delivery, and when the run ends)."""
        if self._hook is not None:
            self.machine.uc.hook_del(self._hook)
            # Code translated while a memory hook existed keeps calling the hook
            # machinery on every access: drop all of it, not just the function.
            self.machine.uc.ctl_flush_tb()
        self._hook = None
        self._watch = None
        self.expires_ns = None

    def _on_read(self, uc, access: int, address: int, size: int, value: int, _user) -> None:
        watch = self._watch
        if watch is None:
            return
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        if not watch["start"] <= rip < watch["end"] or uc.reg_read(x86.UC_X86_REG_RSP) != watch["old_rsp"]:
            return
        now = self.machine.read_virtual(address, size)
        offsets = []
        for i in range(size):
            index = address + i - watch["low"]
            if 0 <= index < len(watch["frame"]) and now is not None and now[i] == watch["frame"][index]:
                offsets.append(address + i - watch["old_rsp"])
        if not offsets:
            return
        name = watch["function"].name
        hit = next((h for h in self.hits if h.function == name and h.rip == rip), None)
        if hit is None:
            if len(self.hits) >= MAX_HITS:
                return
            hit = RedZoneHit(name, self.machine.describe(rip), rip)
            self.hits.append(hit)
        hit.offsets = sorted(set(hit.offsets) | set(offsets))
