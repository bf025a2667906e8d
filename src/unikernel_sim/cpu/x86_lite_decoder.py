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


_OP_STR = _CsInsn.op_str.offset
_OP_STR_END = _OP_STR + _CsInsn.op_str.size


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
        instructions. The decoded array is read as one buffer, so an instruction that is
        not wanted costs no Python object (15,000 of them took 15 ms one by one)."""
        if self._fallback is not None:
            found, decoded = [], 0
            for instruction in self._fallback.disasm_lite(code, address):
                decoded += instruction[1]
                if needle.decode() in instruction[3]:
                    found.append(instruction)
            return decoded, found
        lib = self._library
        instructions = ctypes.POINTER(_CsInsn)()
        count = lib.cs_disasm(self._handle.value, code, len(code), address, 0, ctypes.byref(instructions))
        if not count:
            return 0, []
        try:
            stride = ctypes.sizeof(_CsInsn)
            raw = ctypes.string_at(instructions, stride * count)
            last = instructions[count - 1]
            decoded = last.address + last.size - address
            found, seen = [], -1
            position = raw.find(needle, _OP_STR)
            while position >= 0:
                index = position // stride
                text_start = index * stride + _OP_STR
                # inside this record's operand text, before its terminator (the rest of the
                # field holds leftovers of earlier instructions)
                if (index != seen and text_start <= position < index * stride + _OP_STR_END
                        and raw.find(b"\0", text_start, position) < 0):
                    seen = index
                    item = instructions[index]
                    found.append((item.address, item.size, item.mnemonic.decode(), item.op_str.decode()))
                position = raw.find(needle, position + 1)
        finally:
            lib.cs_free(instructions, count)
        return decoded, found

    def close(self) -> None:
        if self._handle is not None:
            self._library.cs_close(ctypes.byref(self._handle))
            self._handle = None

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None and self._library is not None:
            self.close()
