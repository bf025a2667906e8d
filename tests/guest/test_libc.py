"""The guest's mem*/str* functions against Python's semantics for the same
bytes (C11 7.24): hypothesis-generated buffers, unaligned pointers, lengths
0..4096, overlapping memmove both ways."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unikernel_sim.kernel_lib.scratch import GuestScratch

FIXTURE_OK = [HealthCheck.function_scoped_fixture]
SETTINGS = dict(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
buffers = st.binary(min_size=0, max_size=4096)
offsets = st.integers(0, 15)                         # unaligned pointers
text = st.binary(min_size=0, max_size=300).map(lambda b: b.replace(b"\0", b"x"))


def sign(value: int) -> int:
    value &= 0xFFFFFFFF
    value = value - (1 << 32) if value & (1 << 31) else value
    return (value > 0) - (value < 0)


def fresh(booted):
    machine = booted.fresh()
    return machine, GuestScratch.after_heap(machine)


@settings(**SETTINGS)
@given(buffers, offsets, offsets)
def test_memcpy(unisim_booted, data, src_offset, dst_offset):
    m, s = fresh(unisim_booted)
    src = s.put_bytes(data, offset=src_offset)
    dst = s.alloc(len(data) + 32) + dst_offset
    assert m.call("memcpy", dst, src, len(data)) == dst
    assert m.ram.read(dst, len(data)) == data


@settings(**SETTINGS)
@given(st.binary(min_size=1, max_size=2048), st.integers(-64, 64), st.data())
def test_memmove_overlapping_both_ways(unisim_booted, data, shift, draw):
    m, s = fresh(unisim_booted)
    base = s.alloc(len(data) + 256) + 128
    m.ram.write(base, data)
    length = draw.draw(st.integers(0, len(data)))
    region = bytearray(m.ram.read(base - 128, len(data) + 256))
    region[128 + shift:128 + shift + length] = region[128:128 + length]      # memmove semantics
    assert m.call("memmove", base + shift, base, length) == base + shift
    assert m.ram.read(base - 128, len(data) + 256) == bytes(region)


@settings(**SETTINGS)
@given(st.integers(0, 4096), st.integers(-300, 300), offsets)
def test_memset(unisim_booted, length, value, offset):
    m, s = fresh(unisim_booted)
    dst = s.alloc(length + 32) + offset
    m.ram.fill(dst - 1 if offset else dst, length + 2, 0xEE)
    assert m.call("memset", dst, value, length) == dst
    assert m.ram.read(dst, length) == bytes([value & 0xFF]) * length
    assert m.ram.read(dst + length, 1) == b"\xee"


@settings(**SETTINGS)
@given(buffers, st.data())
def test_memcmp(unisim_booted, a, draw):
    b = bytearray(a)
    if a and draw.draw(st.booleans()):
        b[draw.draw(st.integers(0, len(a) - 1))] = draw.draw(st.integers(0, 255))
    m, s = fresh(unisim_booted)
    result = m.call("memcmp", s.put_bytes(a, offset=3), s.put_bytes(bytes(b), offset=5), len(a))
    assert sign(result) == (a > bytes(b)) - (a < bytes(b))


@settings(**SETTINGS)
@given(text, st.integers(0, 400))
def test_strlen_strnlen(unisim_booted, data, limit):
    m, s = fresh(unisim_booted)
    address = s.put_bytes(data + b"\0", offset=1)
    assert m.call("strlen", address) == len(data)
    assert m.call("strnlen", address, limit) == min(len(data), limit)


@settings(**SETTINGS)
@given(text, text, st.integers(0, 400))
def test_strcmp_strncmp(unisim_booted, a, b, n):
    m, s = fresh(unisim_booted)
    pa, pb = s.put_c_string(a), s.put_c_string(b)
    assert sign(m.call("strcmp", pa, pb)) == (a > b) - (a < b)
    a_n, b_n = a[:n], b[:n]
    assert sign(m.call("strncmp", pa, pb, n)) == (a_n > b_n) - (a_n < b_n)


@settings(**SETTINGS)
@given(text, st.integers(0, 255))
def test_strchr_strrchr(unisim_booted, data, char):
    m, s = fresh(unisim_booted)
    address = s.put_c_string(data)
    first = (data + b"\0").find(bytes([char]))
    last = (data + b"\0").rfind(bytes([char]))
    assert m.call("strchr", address, char) == (address + first if first >= 0 else 0)
    assert m.call("strrchr", address, char) == (address + last if last >= 0 else 0)


@settings(**SETTINGS)
@given(text, st.integers(0, 400))
def test_strcpy_strncpy(unisim_booted, data, n):
    m, s = fresh(unisim_booted)
    src = s.put_c_string(data)
    dst = s.alloc(len(data) + 1)
    assert m.call("strcpy", dst, src) == dst
    assert m.ram.read(dst, len(data) + 1) == data + b"\0"
    dst2 = s.alloc(n + 16)
    m.ram.fill(dst2, n + 16, 0xEE)
    assert m.call("strncpy", dst2, src, n) == dst2
    expected = (data[:n] + b"\0" * max(0, n - len(data)))[:n]      # pads with NUL, no terminator if full
    assert m.ram.read(dst2, n) == expected
    assert m.ram.read(dst2 + n, 1) == b"\xee"


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 4095, 4096])
def test_memcpy_lengths_at_every_alignment(unisim_machine, unisim_scratch, length):
    data = bytes((i * 7 + 3) & 0xFF for i in range(length))
    for alignment in range(0, 16, 5):
        src = unisim_scratch.put_bytes(data, offset=alignment)
        dst = unisim_scratch.alloc(length + 16) + (15 - alignment)
        unisim_machine.call("memcpy", dst, src, length)
        assert unisim_machine.ram.read(dst, length) == data
