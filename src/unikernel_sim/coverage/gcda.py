"""gcc coverage counters read out of guest memory, written as .gcda files for gcov.

A kernel built with `--coverage -fprofile-info-section` (GCC 12 and later) gets, per
object, a `struct gcov_info` with its functions' arc counters, and a pointer to each in
the section `.gcov_info` (bounded by `__gcov_info_start` / `__gcov_info_end` in the
firmware's linker script). libgcov would write the .gcda files at exit; a freestanding
kernel has neither exit nor files, so the host reads the structures itself and writes
what libgcov would (the layout of libgcov.h and gcov-io.h for the compiler version
the structure declares; tests compare the bytes with a .gcda the hosted libgcov wrote).

.gcda layout (32-bit little-endian words):
    'gcda' magic, version, stamp, checksum
    OBJECT_SUMMARY tag, 8 (bytes), runs, sum_max
    per function: FUNCTION tag, 12, ident, lineno_checksum, cfg_checksum
                  per active counter kind: COUNTER tag | kind << 17, 8 * n, n 64-bit values
    0 (the end)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

GCDA_MAGIC = 0x67636461                  # "gcda"
TAG_FUNCTION = 0x01000000
TAG_COUNTER_BASE = 0x01A10000
TAG_OBJECT_SUMMARY = 0xA1000000
FUNCTION_LENGTH = 12                     # bytes: ident, lineno_checksum, cfg_checksum
COUNTER_KINDS = {11: 8, 12: 8, 13: 8}    # GCOV_COUNTERS per gcc major version (gcov-counter.def)
POINTER = 8                              # x86-64 guests


@dataclass
class FunctionCounters:
    ident: int
    lineno_checksum: int
    cfg_checksum: int
    counters: dict[int, list[int]]       # counter kind -> values (kind 0: arcs)


@dataclass
class ObjectCounters:
    filename: str
    version: int
    stamp: int
    checksum: int
    functions: list[FunctionCounters | None] = field(default_factory=list)   # None: not emitted here

    def key(self) -> tuple:
        return self.filename, self.stamp, self.checksum


def gcc_major(version: int) -> int:
    """gcov's version word, e.g. 'B22*' for gcc 12.2: the digits after the letter."""
    text = version.to_bytes(4, "big").decode("latin-1")
    letter, digits = text[0], text[1:3]
    return (ord(letter) - ord("A")) * 10 + int(digits[0])


def read_objects(read: Callable[[int, int], bytes | None], start: int, end: int) -> list[ObjectCounters]:
    """The gcov_info structures the pointers in [start, end) point at.
    read(address, length) reads guest memory (virtual addresses)."""
    pointers = read(start, end - start) or b""
    objects = []
    for (address,) in struct.iter_unpack("<Q", pointers):
        objects.append(_read_object(read, address))
    return objects


def _read_object(read, address: int) -> ObjectCounters:
    version, = struct.unpack("<I", _must(read, address, 4))
    major = gcc_major(version)
    kinds = COUNTER_KINDS.get(major)
    if kinds is None:
        raise ValueError(f"coverage counters from gcc {major}: only gcc {min(COUNTER_KINDS)}-{max(COUNTER_KINDS)} "
                         "structures are known")
    size = 4 + 4 + POINTER + 4 + 4 + POINTER + kinds * POINTER + 4 + 4 + POINTER
    raw = _must(read, address, size)
    _, _, _, stamp, checksum, filename_at = struct.unpack_from("<IIQIIQ", raw)
    merge = struct.unpack_from(f"<{kinds}Q", raw, 32)
    n_functions, functions_at = struct.unpack_from("<I4xQ", raw, 32 + kinds * POINTER)
    active = [kind for kind in range(kinds) if merge[kind]]
    info = ObjectCounters(_c_string(read, filename_at), version, stamp, checksum)
    for pointer, in struct.iter_unpack("<Q", _must(read, functions_at, n_functions * POINTER) if n_functions else b""):
        info.functions.append(_read_function(read, pointer, address, active))
    return info


def _read_function(read, address: int, info: int, active: list[int]) -> FunctionCounters | None:
    if address == 0:
        return None
    key, ident, lineno_checksum, cfg_checksum = struct.unpack("<QIII", _must(read, address, 20))
    if key != info:
        return None                                  # a COMDAT copy another object owns
    counters = {}
    for slot, kind in enumerate(active):
        number, values_at = struct.unpack("<I4xQ", _must(read, address + 24 + 16 * slot, 16))
        counters[kind] = list(struct.unpack(f"<{number}q", _must(read, values_at, 8 * number))) if number else []
    return FunctionCounters(ident, lineno_checksum, cfg_checksum, counters)


def _must(read, address: int, length: int) -> bytes:
    data = read(address, length)
    if data is None or len(data) != length:
        raise ValueError(f"coverage data at {address:#x} is not readable guest memory")
    return data


def _c_string(read, address: int, limit: int = 4096) -> str:
    data = read(address, limit) or b""
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def gcda_bytes(info: ObjectCounters, runs: int = 1) -> bytes:
    """The .gcda libgcov writes for these counters."""
    arcs = [value for function in info.functions if function for value in function.counters.get(0, [])]
    words = [GCDA_MAGIC, info.version, info.stamp, info.checksum, TAG_OBJECT_SUMMARY, 8, runs,
             max(arcs, default=0) & 0xFFFFFFFF]
    out = bytearray(struct.pack(f"<{len(words)}I", *words))
    for function in info.functions:
        if function is None:
            out += struct.pack("<II", TAG_FUNCTION, 0)
            continue
        out += struct.pack("<5I", TAG_FUNCTION, FUNCTION_LENGTH, function.ident, function.lineno_checksum,
                           function.cfg_checksum)
        for kind, values in sorted(function.counters.items()):
            out += struct.pack("<II", TAG_COUNTER_BASE + (kind << 17), 8 * len(values))
            out += struct.pack(f"<{len(values)}q", *values)
    out += struct.pack("<I", 0)                      # the end, as libgcov marks it
    return bytes(out)


def parse_gcda(data: bytes, filename: str = "") -> tuple[ObjectCounters, int]:
    """A .gcda file back into counters, and its run count (to add a run to it)."""
    words = len(data) // 4
    if words < 8 or struct.unpack_from("<I", data)[0] != GCDA_MAGIC:
        raise ValueError(f"{filename or 'data'} is not a .gcda file")
    _, version, stamp, checksum = struct.unpack_from("<4I", data)
    info = ObjectCounters(filename, version, stamp, checksum)
    offset, runs = 16, 0
    function: FunctionCounters | None = None
    while offset + 8 <= len(data):
        tag, length = struct.unpack_from("<II", data, offset)
        if tag == 0:
            break
        body = offset + 8
        if tag == TAG_OBJECT_SUMMARY:
            runs = struct.unpack_from("<I", data, body)[0]
        elif tag == TAG_FUNCTION:
            function = FunctionCounters(*struct.unpack_from("<3I", data, body), {}) if length else None
            info.functions.append(function)
        elif tag >= TAG_COUNTER_BASE and (tag - TAG_COUNTER_BASE) % (1 << 17) == 0:
            kind = (tag - TAG_COUNTER_BASE) >> 17
            if function is not None:
                function.counters[kind] = list(struct.unpack_from(f"<{length // 8}q", data, body))
        offset = body + length
    return info, runs


def subtract(after: list[ObjectCounters], before: list[ObjectCounters]) -> list[ObjectCounters]:
    """Counters after minus before (a test's own share, from the snapshot it started at)."""
    earlier = {info.key(): info for info in before}
    result = []
    for info in after:
        base = earlier.get(info.key())
        functions = []
        for index, function in enumerate(info.functions):
            old = base.functions[index] if base and index < len(base.functions) else None
            if function is None:
                functions.append(None)
                continue
            counters = {kind: [a - (old.counters[kind][i] if old else 0) for i, a in enumerate(values)]
                        for kind, values in function.counters.items()}
            functions.append(FunctionCounters(function.ident, function.lineno_checksum, function.cfg_checksum,
                                              counters))
        result.append(ObjectCounters(info.filename, info.version, info.stamp, info.checksum, functions))
    return result


def add(total: list[ObjectCounters], more: list[ObjectCounters]) -> list[ObjectCounters]:
    """Sum two sets of counters of the same build (a session's tests)."""
    if not total:
        return more
    mine = {info.key(): info for info in more}
    for info in total:
        other = mine.get(info.key())
        if other is None:
            continue
        for function, extra in zip(info.functions, other.functions):
            if function is None or extra is None:
                continue
            for kind, values in function.counters.items():
                function.counters[kind] = [a + b for a, b in zip(values, extra.counters.get(kind, []))]
    return total


def write_all(objects: list[ObjectCounters], directory: str | None, build_root: str | None = None) -> list[Path]:
    """Write each object's .gcda: where the compiler said (its own path), or under
    directory (mirroring the path below build_root) with the .gcno copied beside it, so
    that `gcov -o` or gcovr finds both."""
    import shutil

    written = []
    for info in objects:
        target = Path(info.filename)
        if directory is not None:
            relative = target.relative_to(build_root) if build_root and target.is_relative_to(build_root) \
                else Path(target.name)
            target = Path(directory) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            notes = Path(info.filename).with_suffix(".gcno")
            if notes.exists():
                shutil.copyfile(notes, target.with_suffix(".gcno"))
        runs = 1
        if target.exists():                          # an earlier run of the same build: add to it
            try:
                earlier, earlier_runs = parse_gcda(target.read_bytes(), str(target))
            except ValueError:
                earlier = None
            if earlier is not None and (earlier.stamp, earlier.checksum) == (info.stamp, info.checksum):
                earlier.filename = info.filename
                info = add([earlier], [info])[0]
                runs = earlier_runs + 1
        target.write_bytes(gcda_bytes(info, runs))
        written.append(target)
    return written
