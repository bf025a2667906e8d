"""SSE instructions that need a 16-byte-aligned memory operand, checked as hardware
checks them: a misaligned movaps/movdqa/movntdq, or legacy-SSE arithmetic on an
m128 operand (xorps xmm0, [rcx]...), raises #GP(0) (SDM vol. 1 11.4.1; QEMU 7.2
does the same). Unicorn 2.1.4 executes them (docs/unicorn-quirks.md Q17), so a
kernel whose stack is misaligned by 8 ran here and crashed on QEMU.

Finding the instructions: each sized function symbol (STT_FUNC, st_size > 0: what
a compiler emits) is decoded in the ELF's own mode - a straight sweep of the
executable segments stops at the Multiboot header or at the 32-bit entry code of
an x86-64 kernel. A function that does not decode to its last byte is left out
(32-bit code in a 64-bit image, or data). Decoding is capstone's lite mode through
its C library alone (cpu/x86_lite_decoder.py: the package's import is 54 ms); the
memory operand of an instruction with an xmmword operand is read from its text
(the whole firmware in detail mode took 90 ms).

Checking: an operand addressed by RIP or by an absolute address has a known
address at load time (aligned ones are dropped, misaligned ones always fault);
the others go to the C check (_alignment.c), a native code hook on each in fast
mode, the counting hook's bitmap in deterministic mode. Modes: "hardware" (the
default: #GP(0) at the instruction, which does not run), "check" (record it for
the report and let it run, as Unicorn would), "off". Code the guest writes or
loads later (modules, JIT) is not covered.
"""
from __future__ import annotations

import ctypes
import re
import threading
from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_CODE, Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import Vector
from unikernel_sim.cpu import _vclock
from unikernel_sim.cpu.unicorn_compat import add_native_hook, delete_native_hook, native_function_address
from unikernel_sim.cpu.vclock import NEVER, VirtualClock
from unikernel_sim.records import Record

if TYPE_CHECKING:
    from unikernel_sim.boot.elf_image import ElfImage
    from unikernel_sim.boot.symbols import SymbolTable

MODES = ("hardware", "check", "off")
OPERAND_BYTES = 16
UNALIGNED_OK = frozenset({"movups", "movupd", "movdqu", "lddqu", "movq", "movd", "movss", "movsd",
                          "movhps", "movlps", "movhpd", "movlpd", "pinsrb", "pinsrw", "pinsrd", "pinsrq",
                          "pextrb", "pextrw", "pextrd", "pextrq", "insertps", "extractps", "cvtss2sd",
                          "cvtsd2ss", "comiss", "comisd", "ucomiss", "ucomisd", "movddup", "fxsave",
                          "fxsave64", "fxrstor", "fxrstor64", "ldmxcsr", "stmxcsr", "pcmpestri",
                          "pcmpestrm", "pcmpistri", "pcmpistrm"})
_SEGMENT_BASES = {"fs": x86.UC_X86_REG_FS_BASE, "gs": x86.UC_X86_REG_GS_BASE}


class AlignSite(ctypes.Structure):
    """Mirror of struct align_site (_alignment.h)."""

    _fields_ = [("address", ctypes.c_uint64), ("base_reg", ctypes.c_int64), ("index_reg", ctypes.c_int64),
                ("segment_base_reg", ctypes.c_int64), ("displacement", ctypes.c_int64),
                ("scale", ctypes.c_uint64), ("address_mask", ctypes.c_uint64)]


class AlignTable(ctypes.Structure):
    """Mirror of struct align_table (_alignment.h)."""

    _fields_ = [("count", ctypes.c_uint64), ("sites", ctypes.POINTER(AlignSite)), ("lo", ctypes.c_uint64),
                ("hi", ctypes.c_uint64), ("bitmap", ctypes.POINTER(ctypes.c_uint8)),
                ("hit_address", ctypes.c_uint64), ("hit_operand", ctypes.c_uint64),
                ("skip_address", ctypes.c_uint64), ("checked", ctypes.c_uint64),
                ("reg_read", ctypes.c_void_p), ("emu_stop", ctypes.c_void_p)]


_HOOK = ctypes.cast(ctypes.CDLL(_vclock.__file__).align_hook, ctypes.c_void_p)


def requires_alignment(instruction) -> int | None:
    """Index of the m128 operand that must be 16-byte aligned (capstone detail), or None."""
    from capstone import x86 as cs_x86

    if instruction.mnemonic.startswith("v") or instruction.mnemonic in UNALIGNED_OK:
        return None
    for index, operand in enumerate(instruction.operands):
        if operand.type == cs_x86.X86_OP_MEM and operand.size == OPERAND_BYTES:
            return index
    return None


def operand_address(instruction, operand, read_register: Callable[[int], int]) -> int:
    """The operand's address from the registers (read_register takes a Unicorn id)."""
    memory = operand.mem

    def value(register: int) -> int:
        if register == 0:
            return 0
        name = instruction.reg_name(register)
        if name == "rip":
            return instruction.address + instruction.size
        return read_register(getattr(x86, f"UC_X86_REG_{name.upper()}"))

    return (value(memory.base) + value(memory.index) * memory.scale + memory.disp) & ((1 << 64) - 1)


class Site(Record):
    """An aligned SSE access in the kernel's code and how to compute its operand's address."""

    address: int
    text: str
    base_reg: int             # Unicorn ids, 0 for none
    index_reg: int
    segment_base_reg: int
    displacement: int
    scale: int
    address_mask: int
    fixed_operand: int | None  # the operand's address when no register but RIP takes part


def function_regions(elf: "ElfImage", symbols: "SymbolTable") -> tuple[list[tuple[int, bytes, bool]], int] | None:
    """code_regions() for an ELF image with sized functions, from the file alone (so the
    search can start before the image is in RAM); None when it has none."""
    functions = [s for s in symbols.symbols if s.kind == "STT_FUNC" and s.size > 0]
    if not functions:
        return None
    regions = []
    for symbol in functions:
        code = _function_bytes(elf, symbol.address, symbol.size)
        if code is not None:
            regions.append((symbol.address, code, True))
    return regions, 64 if elf.elf_class == 64 else 32


def code_regions(elf: "ElfImage | None", symbols: "SymbolTable", entry: int,
                 read: Callable[[int, int], bytes], image_end: int) -> tuple[list[tuple[int, bytes, bool]], int]:
    """(regions as (address, bytes, must decode whole), bits) to search: every sized
    function, or - for an image without them (a stripped or hand-written kernel, a
    flat binary) - a straight sweep from the entry point in 32-bit mode, the mode a
    Multiboot kernel starts in (it ends where decoding fails)."""
    bits = 64 if elf is not None and elf.elf_class == 64 else 32
    found = function_regions(elf, symbols) if elf is not None else None
    if found is not None:
        return found
    if bits == 64:
        return [], bits                 # a 64-bit kernel starts in 32-bit code: no safe sweep
    if elf is not None:
        segment = next((s for s in elf.segments if s.executable and s.paddr <= entry < s.paddr + s.filesz), None)
        if segment is None:
            return [], bits
        start = entry - segment.paddr
        return [(segment.vaddr + start, bytes(segment.data[start:segment.filesz]), False)], bits
    return [(entry, read(entry, max(0, image_end - entry)), False)], bits


# Legacy SSE instructions with a 128-bit memory operand are 0F followed by one of these
# opcode bytes (or the 0F 38 / 0F 3A escapes; 0F AE and 0F C7 for fxsave and cmpxchg16b).
# Integer code's 0F opcodes (jcc, setcc, cmovcc, movzx, bt...) are outside it, so a function
# without such a pair holds no site: it is not decoded at all.
_SSE_ESCAPE = re.compile(rb"\x0f[\x10-\x17\x28-\x2f\x38\x3a\x50-\x7f\xae\xc2-\xc7\xd0-\xff]")


def find_sites(regions: list[tuple[int, bytes, bool]], bits: int) -> list[Site]:
    """Every instruction in regions that needs an aligned m128 operand."""
    search = SiteSearch(regions, bits, background=False)
    return search.result()


class SiteSearch:
    """find_sites() with capstone's decoding (~1.8 ms for the bundled firmware's 58 SSE
    functions, 28 KiB) on a helper thread when background: started while the loader
    is still placing the image, it overlaps the loader's Python instead of following
    it. Everything that needs the GIL happens here on the caller's thread, before the
    thread starts and in result(); the thread makes the one C call, which releases it
    (a first version decoded function by function on the thread and waited for the
    GIL at each: no faster than in turn). The answer does not depend on the timing."""

    def __init__(self, regions: list[tuple[int, bytes, bool]], bits: int, *, background: bool = True) -> None:
        self.bits = bits
        self.regions = [region for region in regions if _SSE_ESCAPE.search(region[1])]
        self._decoder = self._search = self._thread = None
        self._error: BaseException | None = None
        if not self.regions:
            return
        from unikernel_sim.cpu.x86_lite_decoder import LiteDecoder

        self._decoder = LiteDecoder(bits)
        self._search = self._decoder.prepare_find_all([(start, code) for start, code, _whole in self.regions],
                                                      b"xmmword ptr")
        if background and not self._decoder.uses_package:
            self._thread = threading.Thread(target=self._run, name="unisim-site-search", daemon=True)
            self._thread.start()
        else:
            self._run()

    def _run(self) -> None:
        try:
            self._search.run()
        except BaseException as error:          # handed to the caller of result()
            self._error = error

    def result(self) -> list[Site]:
        """The sites, in region order (what find_sites returns); raises what the search raised."""
        if self._search is None:
            return []
        if self._thread is not None:
            self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            found = self._search.results()
        finally:
            self._decoder.close()
        sites = []
        for (_start, code, whole), (decoded, candidates) in zip(self.regions, found):
            if whole and decoded != len(code):
                continue                                  # not code of this mode all the way through
            for address, size, mnemonic, op_str in candidates:
                if not mnemonic.startswith("v") and mnemonic not in UNALIGNED_OK:
                    site = _site_from_text(address, size, mnemonic, op_str, self.bits)
                    if site is not None:
                        sites.append(site)
        return sites


# capstone's Intel syntax for a memory operand: [segment:][base][ + index*scale][ +/- displacement]
_MEMORY_OPERAND = re.compile(r"xmmword ptr (?:(?P<segment>[a-z]s):)?\[(?P<inside>[^\]]*)\]")
_TERM = re.compile(r"\s*(?P<sign>[+-])?\s*(?P<term>[^+\-\s]+)")


def _site_from_text(address: int, size: int, mnemonic: str, op_str: str, bits: int) -> Site | None:
    """The Site of an instruction from capstone's lite text (what detail mode would give,
    without its cost: tests compare the two). None if the operand is not one we read."""
    match = _MEMORY_OPERAND.search(op_str)
    if match is None:
        return None
    base = index = None
    scale, displacement = 1, 0
    for term in _TERM.finditer(match["inside"]):
        text, negative = term["term"], term["sign"] == "-"
        if "*" in text:
            index, factor = text.split("*")
            scale = int(factor, 0)
        elif text[0].isdigit():
            displacement = -int(text, 0) if negative else int(text, 0)
        elif base is None:
            base = text
        else:
            index = text
    if displacement >= 1 << 63:
        displacement -= 1 << 64                       # capstone's int64 disp
    segment = match["segment"]
    mask = (1 << 64) - 1 if bits == 64 and not (base or "r").startswith("e") else 0xFFFFFFFF
    fixed = None
    if index is None and (base is None or base == "rip") and segment not in _SEGMENT_BASES:
        fixed = ((address + size if base == "rip" else 0) + displacement) & mask
    try:
        base_reg = 0 if base in (None, "rip") else getattr(x86, f"UC_X86_REG_{base.upper()}")
        index_reg = 0 if index is None else getattr(x86, f"UC_X86_REG_{index.upper()}")
    except AttributeError:
        return None
    return Site(address, f"{mnemonic} {op_str}", base_reg, index_reg, _SEGMENT_BASES.get(segment or "", 0),
                displacement, scale, mask, fixed)


def _function_bytes(elf: "ElfImage", address: int, size: int) -> bytes | None:
    for segment in elf.segments:
        if segment.vaddr <= address and address + size <= segment.vaddr + segment.filesz:
            start = address - segment.vaddr
            return bytes(segment.data[start:start + size])
    return None


class AlignmentGuard:
    def __init__(self, uc: Uc, clock: VirtualClock, raise_fault: Callable[[int, int | None, int], None],
                 mode: str = "hardware") -> None:
        if mode not in MODES:
            raise ValueError(f"alignment mode {mode!r}: give one of {', '.join(MODES)}")
        self.uc = uc
        self.clock = clock
        self.raise_fault = raise_fault
        self.mode = mode
        self.sites: dict[int, Site] = {}
        self.violations: list[tuple[int, int, str]] = []     # (rip, operand address, instruction)
        self.table = AlignTable()
        self.table.hit_address = self.table.skip_address = NEVER
        self.table.reg_read = native_function_address("uc_reg_read")
        self.table.emu_stop = native_function_address("uc_emu_stop")
        self._arrays: tuple = ()
        self._hooks: list[int] = []
        clock.on_counting.append(self._move_to_counting_hook)

    def watch(self, regions: list[tuple[int, bytes, bool]], bits: int) -> None:
        """Check every site in regions (code_regions) from now on."""
        if self.mode != "off":
            self.watch_sites(find_sites(regions, bits))

    def search(self, regions: list[tuple[int, bytes, bool]], bits: int) -> SiteSearch | None:
        """Start finding the sites of regions in the background (None when the guard is off);
        give the search's result() to watch_sites."""
        return SiteSearch(regions, bits) if self.mode != "off" else None

    def watch_sites(self, sites: list[Site]) -> None:
        """Check these sites (find_sites) from now on."""
        if self.mode == "off":
            return
        dynamic = []
        for site in sites:
            if site.fixed_operand is None or site.fixed_operand % OPERAND_BYTES:
                self.sites[site.address] = site
                dynamic.append(site)
        if not dynamic:
            return
        self._fill_table(sorted(dynamic, key=lambda s: s.address))
        if self.clock.per_instruction:
            self._move_to_counting_hook()
        else:
            pointer = ctypes.cast(ctypes.pointer(self.table), ctypes.c_void_p)
            self._hooks = [add_native_hook(self.uc, UC_HOOK_CODE, _HOOK, pointer, s.address, s.address)
                           for s in dynamic]
        self.uc.ctl_flush_tb()

    def _fill_table(self, sites: list[Site]) -> None:
        array = (AlignSite * len(sites))()
        for slot, site in zip(array, sites):
            slot.address, slot.base_reg, slot.index_reg = site.address, site.base_reg, site.index_reg
            slot.segment_base_reg, slot.scale, slot.address_mask = site.segment_base_reg, site.scale, site.address_mask
            slot.displacement = site.fixed_operand if site.fixed_operand is not None else site.displacement
        lo, hi = sites[0].address, sites[-1].address
        bitmap = (ctypes.c_uint8 * ((hi - lo) // 8 + 1))()
        for site in sites:
            bitmap[(site.address - lo) >> 3] |= 1 << ((site.address - lo) & 7)
        self._arrays = (array, bitmap)                     # keep them alive while C points at them
        self.table.count, self.table.lo, self.table.hi = len(sites), lo, hi
        self.table.sites = ctypes.cast(array, ctypes.POINTER(AlignSite))
        self.table.bitmap = ctypes.cast(bitmap, ctypes.POINTER(ctypes.c_uint8))

    def _move_to_counting_hook(self) -> None:
        """Once the C counting hook runs before every instruction, it checks the bitmap
        itself: one-address hooks would then cost a bounds walk on every instruction."""
        for handle in self._hooks:
            delete_native_hook(self.uc, handle)
        self._hooks = []
        if self.table.count:
            self.clock.state.align = ctypes.cast(ctypes.pointer(self.table), ctypes.c_void_p)

    # --- after a slice ------------------------------------------------------------------
    def take_hit(self) -> bool:
        """Act on a misaligned operand the C check stopped at: #GP(0) (hardware) or a
        record and one free run (check). True if there was one."""
        address = self.table.hit_address
        if address == NEVER:
            return False
        self.table.hit_address = NEVER
        site = self.sites[address]
        self.violations.append((address, self.table.hit_operand, site.text))
        if self.mode == "hardware":
            self.raise_fault(Vector.GP, 0, address)
        else:
            self.table.skip_address = address
        return True

    @property
    def checked(self) -> int:
        """Site executions the C check has looked at."""
        return self.table.checked
