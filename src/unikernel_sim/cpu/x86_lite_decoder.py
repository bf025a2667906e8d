"""Capstone's x86 decoder in lite mode (address, size, mnemonic, operand text), reached
through its C library without importing the capstone package.

Why: the package's ``__init__`` imports the constants of all its 18 architectures,
54 ms of every start-up, and the boot path needs only the lite decoder to find the
SSE alignment guard's sites (cpu/alignment_guard.py). The library is the one the
installed package ships (found with importlib's spec, which imports nothing); its
``cs_insn`` layout is capstone 5's (id, address, size, bytes[24], mnemonic[32],
op_str[160], detail), checked against ``cs_version`` and a known decoding when it
is loaded. Anything unexpected falls back to the package's own ``Cs.disasm_lite``:
slower to import, same answers (tests compare the two).
"""
from __future__ import annotations

import ctypes
from typing import Iterator

from unikernel_sim.cpu.native import check_mirror, library as native
from unikernel_sim.native_preload import CAPSTONE_LIBRARY, library_in_package

CS_ARCH_X86 = 3
CS_MODE_32, CS_MODE_64 = 1 << 2, 1 << 3
CS_ERR_OK = 0
SUPPORTED_MAJOR = 5
KNOWN_INSTRUCTION = (b"\x0f\x28\x04\x24", "movaps", "xmm0, xmmword ptr [rsp]")   # 64-bit mode

LiteInstruction = tuple[int, int, str, str]   # (address, size, mnemonic, operand text)


class _CsInsn(ctypes.Structure):
    """struct cs_insn, capstone 5 (capstone.h)."""

    _fields_ = [("id", ctypes.c_uint), ("address", ctypes.c_uint64), ("size", ctypes.c_uint16),
                ("bytes", ctypes.c_ubyte * 24), ("mnemonic", ctypes.c_char * 32), ("op_str", ctypes.c_char * 160),
                ("detail", ctypes.c_void_p)]


FIRST_MATCH_CAPACITY = 256      # matches find_all makes room for before asking again


class LiteRegion(ctypes.Structure):
    """struct lite_region (cpu/_lite_scan.c): code to decode, and how much of it decoded."""

    _fields_ = [("code", ctypes.c_void_p), ("size", ctypes.c_uint64), ("address", ctypes.c_uint64),
                ("decoded", ctypes.c_uint64)]


class LiteMatch(ctypes.Structure):
    """struct lite_match (cpu/_lite_scan.c): one instruction whose operand text held the needle."""

    _fields_ = [("region", ctypes.c_uint64), ("address", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("mnemonic", ctypes.c_char * 32), ("op_str", ctypes.c_char * 160)]


check_mirror(LiteRegion, "struct lite_region", "lite_region_size")
check_mirror(LiteMatch, "struct lite_match", "lite_match_size")
_find_all = native.lite_find_all
_find_all.restype = ctypes.c_uint64
_find_all.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(LiteRegion), ctypes.c_uint64,
                      ctypes.c_char_p, ctypes.POINTER(LiteMatch), ctypes.c_uint64]


def _load_library() -> ctypes.CDLL | None:
    """The installed capstone package's libcapstone, set up; None if absent or not version 5."""
    path = library_in_package("capstone", CAPSTONE_LIBRARY)
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:
        return None
    lib.cs_version.restype = ctypes.c_int
    lib.cs_version.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.cs_version(ctypes.byref(major), ctypes.byref(minor))
    if major.value != SUPPORTED_MAJOR:
        return None
    lib.cs_open.restype = ctypes.c_int
    lib.cs_open.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_size_t)]
    lib.cs_close.restype = ctypes.c_int
    lib.cs_close.argtypes = [ctypes.POINTER(ctypes.c_size_t)]
    lib.cs_disasm.restype = ctypes.c_size_t
    lib.cs_disasm.argtypes = [ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_size_t,
                              ctypes.POINTER(ctypes.POINTER(_CsInsn))]
    lib.cs_free.restype = None
    lib.cs_free.argtypes = [ctypes.POINTER(_CsInsn), ctypes.c_size_t]
    return lib


class LiteDecoder:
    """disasm_lite over capstone's C library for one x86 mode (32 or 64 bits)."""

    _library: ctypes.CDLL | None = None
    _library_checked = False

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._handle: ctypes.c_size_t | None = None
        self._fallback = None
        lib = self._shared_library()
        if lib is not None:
            handle = ctypes.c_size_t()
            if lib.cs_open(CS_ARCH_X86, CS_MODE_64 if bits == 64 else CS_MODE_32, ctypes.byref(handle)) == CS_ERR_OK:
                self._handle = handle
        if self._handle is None or (bits == 64 and not self._decodes_known_instruction()):
            self._use_package()

    @classmethod
    def _shared_library(cls) -> ctypes.CDLL | None:
        if not cls._library_checked:
            cls._library, cls._library_checked = _load_library(), True
        return cls._library

    def _decodes_known_instruction(self) -> bool:
        code, mnemonic, operands = KNOWN_INSTRUCTION
        return list(self._disasm_c(code, 0)) == [(0, len(code), mnemonic, operands)]

    def _use_package(self) -> None:
        from capstone import CS_ARCH_X86 as ARCH, CS_MODE_32 as MODE_32, CS_MODE_64 as MODE_64, Cs

        self.close()
        self._fallback = Cs(ARCH, MODE_64 if self.bits == 64 else MODE_32)

    @property
    def uses_package(self) -> bool:
        """True when the capstone package decodes (the library could not be used alone)."""
        return self._fallback is not None

    def disasm_lite(self, code: bytes, address: int) -> Iterator[LiteInstruction]:
        """Instructions of code at address, in order, until one does not decode."""
        if self._fallback is not None:
            return self._fallback.disasm_lite(code, address)
        return self._disasm_c(code, address)

    def _disasm_c(self, code: bytes, address: int) -> Iterator[LiteInstruction]:
        lib = self._library
        instructions = ctypes.POINTER(_CsInsn)()
        count = lib.cs_disasm(self._handle.value, code, len(code), address, 0, ctypes.byref(instructions))
        try:
            decoded = [(instructions[i].address, instructions[i].size, instructions[i].mnemonic.decode(),
                        instructions[i].op_str.decode()) for i in range(count)]
        finally:
            if count:
                lib.cs_free(instructions, count)
        return iter(decoded)

    def find(self, code: bytes, address: int, needle: bytes) -> tuple[int, list[LiteInstruction]]:
        """(bytes decoded from the start, the instructions whose operand text holds needle):
        the alignment guard's scan, which decodes whole functions to keep only a few
        instructions."""
        return self.find_all([(address, code)], needle)[0]

    def find_all(self, regions: list[tuple[int, bytes]], needle: bytes) -> list[tuple[int, list[LiteInstruction]]]:
        """find() for every (address, code) of regions, in order."""
        search = self.prepare_find_all(regions, needle)
        search.run()
        return search.results()

    def prepare_find_all(self, regions: list[tuple[int, bytes]], needle: bytes) -> "FindAll":
        """find_all() in two steps: run() (any thread) and results() (the caller's)."""
        return FindAll(self, regions, needle)

    def close(self) -> None:
        if self._handle is not None:
            self._library.cs_close(ctypes.byref(self._handle))
            self._handle = None

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None and self._library is not None:
            self.close()


class FindAll:
    """A prepared find_all: run() is, with the C library, one call into cpu/_lite_scan.c
    that decodes every region with the GIL released, so a helper thread can make it
    while the loader runs (alignment_guard.SiteSearch) without waiting for the GIL in
    between; results() turns what it found into LiteInstructions. Without the library
    (the capstone package decodes), run() does the whole search in Python."""

    def __init__(self, decoder: LiteDecoder, regions: list[tuple[int, bytes]], needle: bytes) -> None:
        self.decoder, self.regions, self.needle = decoder, regions, needle
        self._results: list[tuple[int, list[LiteInstruction]]] | None = None
        if decoder.uses_package:
            return
        self._table = (LiteRegion * len(regions))()
        for slot, (address, code) in zip(self._table, regions):
            slot.code = ctypes.cast(ctypes.c_char_p(code), ctypes.c_void_p)   # self.regions keeps code alive
            slot.size, slot.address = len(code), address
        lib = decoder._library
        self._call = (ctypes.cast(lib.cs_disasm, ctypes.c_void_p), ctypes.cast(lib.cs_free, ctypes.c_void_p),
                      decoder._handle.value, self._table, len(regions), needle)
        self._capacity = FIRST_MATCH_CAPACITY
        self._matches = (LiteMatch * self._capacity)()
        self._found = 0

    def run(self) -> None:
        if self.decoder.uses_package:
            self._results = [self._find_by_package(code, address) for address, code in self.regions]
            return
        self._found = _find_all(*self._call, self._matches, self._capacity)

    def _find_by_package(self, code: bytes, address: int) -> tuple[int, list[LiteInstruction]]:
        found, decoded, needle = [], 0, self.needle.decode()
        for instruction in self.decoder.disasm_lite(code, address):
            decoded += instruction[1]
            if needle in instruction[3]:
                found.append(instruction)
        return decoded, found

    def results(self) -> list[tuple[int, list[LiteInstruction]]]:
        """(bytes decoded from the start, matching instructions) per region, in order."""
        if self._results is not None:
            return self._results
        if self._found > self._capacity:                  # rare: room for all of them, once more
            self._capacity = self._found
            self._matches = (LiteMatch * self._capacity)()
            self.run()
        results: list[tuple[int, list[LiteInstruction]]] = [(slot.decoded, []) for slot in self._table]
        for match in self._matches[:self._found]:
            results[match.region][1].append((match.address, match.size, match.mnemonic.decode(),
                                             match.op_str.decode()))
        self._results = results
        return results
