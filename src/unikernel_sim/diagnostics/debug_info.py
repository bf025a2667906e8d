"""What the kernel ELF knows about its own addresses: source lines (DWARF
.debug_line) and call-frame information (.eh_frame / .debug_frame), read with
pyelftools once per kernel and cached."""
from __future__ import annotations

import bisect
import io
from dataclasses import dataclass
from functools import lru_cache

DWARF_REGISTERS = ("rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
                   "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")
RETURN_ADDRESS_COLUMN = 16


@dataclass(frozen=True)
class SourceLine:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class FrameRule:
    """How to find the caller at one pc: CFA = register + offset; saved registers at CFA + offset."""

    cfa_register: str
    cfa_offset: int
    saved: tuple[tuple[str, int], ...]      # (register, offset from CFA)


class DebugInfo:
    def __init__(self, data: bytes) -> None:
        from elftools.elf.elffile import ELFFile

        self._elf = ELFFile(io.BytesIO(data))
        self._lines: list[tuple[int, SourceLine]] | None = None
        self._line_addresses: list[int] = []
        self._frames: list[tuple[int, int, list]] | None = None
        self._frame_starts: list[int] = []
        self.errors: dict[str, str] = {}        # "source lines"/"call frames" -> why they are missing

    def _degrade(self, part: str, error: Exception) -> None:
        """Corrupt or unusual DWARF costs that part only: lookups answer None."""
        self.errors.setdefault(part, f"{type(error).__name__}: {error}".rstrip(": ")[:200])

    # --- source lines ---------------------------------------------------------
    def _load_lines(self) -> None:
        rows: list[tuple[int, SourceLine | None]] = []
        if self._elf.has_dwarf_info():
            dwarf = self._elf.get_dwarf_info()
            for unit in dwarf.iter_CUs():
                program = dwarf.line_program_for_CU(unit)
                if program is None:
                    continue
                files = program["file_entry"]
                version = program["version"]
                for entry in program.get_entries():
                    state = entry.state
                    if state is None:
                        continue
                    if state.end_sequence:
                        rows.append((state.address, None))
                        continue
                    index = state.file if version >= 5 else state.file - 1
                    name = files[index].name.decode("utf-8", "replace") if 0 <= index < len(files) else "?"
                    rows.append((state.address, SourceLine(name, state.line)))
        rows.sort(key=lambda row: row[0])
        self._lines = rows
        self._line_addresses = [address for address, _ in rows]

    def source_line(self, address: int) -> SourceLine | None:
        """The source line of address, or None (no DWARF, or DWARF that cannot be read)."""
        if "source lines" in self.errors:
            return None
        try:
            return self._source_line(address)
        except Exception as error:  # noqa: BLE001 - pyelftools raises anything on bad input
            self._degrade("source lines", error)
            return None

    def _source_line(self, address: int) -> SourceLine | None:
        if self._lines is None:
            self._load_lines()
        index = bisect.bisect_right(self._line_addresses, address) - 1
        if index < 0:
            return None
        return self._lines[index][1]

    # --- call frame information --------------------------------------------------
    def _load_frames(self) -> None:
        from elftools.dwarf.callframe import FDE

        frames = []
        if self._elf.has_dwarf_info():
            dwarf = self._elf.get_dwarf_info()
            entries = []
            if dwarf.has_EH_CFI():
                entries += dwarf.EH_CFI_entries()
            if dwarf.has_CFI():
                entries += dwarf.CFI_entries()
            for entry in entries:
                if isinstance(entry, FDE):
                    start = entry.header["initial_location"]
                    frames.append((start, start + entry.header["address_range"], entry))
        frames.sort(key=lambda frame: frame[0])
        self._frames = frames
        self._frame_starts = [start for start, _, _ in frames]

    def frame_rule(self, pc: int) -> FrameRule | None:
        """How to find pc's caller (CFI), or None (none, or unreadable)."""
        if "call frames" in self.errors:
            return None
        try:
            return self._frame_rule(pc)
        except Exception as error:  # noqa: BLE001 - pyelftools raises anything on bad input
            self._degrade("call frames", error)
            return None

    def _frame_rule(self, pc: int) -> FrameRule | None:
        """The CFI row that applies at pc, or None when no FDE covers it."""
        from elftools.dwarf.callframe import CFARule, RegisterRule

        if self._frames is None:
            self._load_frames()
        index = bisect.bisect_right(self._frame_starts, pc) - 1
        if index < 0:
            return None
        start, end, fde = self._frames[index]
        if not start <= pc < end:
            return None
        table = fde.get_decoded().table
        row = None
        for candidate in table:
            if candidate["pc"] <= pc:
                row = candidate
            else:
                break
        if row is None or not isinstance(row.get("cfa"), CFARule) or row["cfa"].reg is None:
            return None
        saved = []
        for register, rule in row.items():
            if isinstance(register, int) and isinstance(rule, RegisterRule) and rule.type == RegisterRule.OFFSET:
                if register < len(DWARF_REGISTERS):
                    saved.append((DWARF_REGISTERS[register], rule.arg))
        return FrameRule(DWARF_REGISTERS[row["cfa"].reg], row["cfa"].offset, tuple(saved))


@lru_cache(maxsize=8)
def debug_info_for(data: bytes) -> DebugInfo:
    return DebugInfo(data)


def debug_info_of(machine) -> DebugInfo | None:
    """Source lines and call-frame information of the machine's kernel (None without
    an ELF, or when pyelftools cannot even open it)."""
    kernel = machine.kernel
    if kernel is None or kernel.elf is None:
        return None
    try:
        return debug_info_for(kernel.image_data)
    except Exception:  # noqa: BLE001 - the loader accepted the ELF; its debug parts may still be bad
        return None
