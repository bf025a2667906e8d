"""Guests with their own GDT, IDT, TSS and page tables, built here byte by byte
from the Intel SDM layouts (vol. 3A: 3.4.5 segment descriptors, 6.11/6.14.1
gate descriptors, 7.7 64-bit TSS, 4.5 4-level paging, 4.3 32-bit paging), so
that what the simulator pushes can be checked against what the manual says.

Every vector's stub records the vector and RFLAGS in memory, then exits
through the debug-exit port with RSP still pointing at the frame.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import guestkit
from unikernel_sim.run import boot

BASE = 0x100000
CODE32 = 0x101000
CODE64 = 0x102000
PML4, PDPT, PD, PT0 = 0x110000, 0x111000, 0x112000, 0x113000
GDT, GDTR, IDTR = 0x114000, 0x114100, 0x114110
TSS = 0x114200
IDT = 0x115000
STUBS = 0x116000
STUB_SIZE = 32
VECTOR_SLOT = 0x11C000
FLAGS_SLOT = 0x11C008
COUNTER_SLOT = 0x11C010
STACK_TOP = 0x130000
IST_TOPS = {1: 0x138000, 2: 0x13C000}
RSP0_TOP = 0x134000
RO_PAGE = 0x140000
PD_HIGH = 0x142000                                       # 2 MiB pages of 3-4 GiB: the I/O APIC and local APIC
NP_PAGE = 0x141000
USER_CODE = 0x148000
USER_STACK_TOP = 0x150000
USER_CODE_SEL, USER_DATA_SEL = 0x43, 0x4B                # GDT entries 8 and 9, RPL 3
SYSRET_CODE_SEL = 0x53                                   # entry 10: 64-bit user code where SYSRET wants it
USER_CODE64 = 0x00AFFA000000FFFF                         # DPL 3, 64-bit
USER_DATA = 0x00CFF2000000FFFF                           # DPL 3, writable
HANDLERS = 0x120000
HANDLER_SIZE = 0x400
IMAGE_END = 0x150000

CODE64_SEL, DATA_SEL, CODE32_SEL, TSS_SEL, NP_DATA_SEL = 0x08, 0x10, 0x18, 0x28, 0x38
GATE_INTERRUPT, GATE_TRAP = 0xE, 0xF
FLAT_CODE64 = 0x00AF9A000000FFFF
FLAT_CODE32 = 0x00CF9A000000FFFF
FLAT_DATA = 0x00CF92000000FFFF
NOT_PRESENT_DATA = FLAT_DATA & ~(1 << 47)
TSS64_LIMIT = 103


@dataclass
class Gate:
    type: int = GATE_INTERRUPT
    ist: int = 0
    present: bool = True
    dpl: int = 0


@dataclass
class Frame:
    vector: int
    rsp: int                  # RSP in the handler (the frame's lowest address)
    words: list[int]          # the frame from RSP upwards
    handler_flags: int        # RFLAGS inside the handler


@dataclass
class IdtGuest:
    """before: setup lines; fault: the instruction whose address is reported; flags: RFLAGS just before it."""

    before: str = ""
    fault: str = "ud2"
    flags: int = 0x47
    gates: dict[int, Gate] = field(default_factory=dict)
    tss_limit: int = TSS64_LIMIT
    cr0_extra: int = 0
    handlers: dict[int, str] = field(default_factory=dict)   # vector -> assembly replacing the stub
    after: str = ""                                          # code after the fault instruction
    user_code: str = ""                                      # ring-3 code at USER_CODE (pages get U=1)


def _gdt_long(tss_limit: int) -> bytes:
    tss_low = ((tss_limit & 0xFFFF) | ((TSS & 0xFFFFFF) << 16) | (0x89 << 40)
               | (((tss_limit >> 16) & 0xF) << 48) | (((TSS >> 24) & 0xFF) << 56))
    entries = [0, FLAT_CODE64, FLAT_DATA, FLAT_CODE32, 0, tss_low, TSS >> 32, NOT_PRESENT_DATA,
               USER_CODE64, USER_DATA, USER_CODE64]
    return struct.pack(f"<{len(entries)}Q", *entries)


def _gate64(target: int, gate: Gate) -> bytes:
    attributes = (0x80 if gate.present else 0) | (gate.dpl << 5) | gate.type
    return struct.pack("<HHBBHII", target & 0xFFFF, CODE64_SEL, gate.ist, attributes,
                       (target >> 16) & 0xFFFF, target >> 32, 0)


def _stub64(vector: int) -> bytes:
    code = (b"\xc6\x04\x25" + struct.pack("<IB", VECTOR_SLOT, vector)     # mov byte [VECTOR_SLOT], v
            + b"\x9c"                                                      # pushfq
            + b"\x8f\x04\x25" + struct.pack("<I", FLAGS_SLOT)              # pop qword [FLAGS_SLOT]
            + b"\xb0\x00\xe6\xf4"                                          # mov al, 0; out 0xf4, al
            + b"\xeb\xfe")                                                 # jmp $: the exit lands at the block's end
    return code.ljust(STUB_SIZE, b"\x90")


def _page_tables_long(user: bool = False) -> dict[int, bytes]:
    """Identity map of the first GiB and of 3-4 GiB (the APICs' pages); with user, every
    page is user-accessible (U=1)."""
    u = 4 if user else 0
    pt = bytearray(struct.pack("<512Q", *[(i << 12) | 3 | u for i in range(512)]))
    struct.pack_into("<Q", pt, 8 * (RO_PAGE >> 12), RO_PAGE | 1 | u)
    struct.pack_into("<Q", pt, 8 * (NP_PAGE >> 12), 0)
    pd = struct.pack("<512Q", PT0 | 3 | u, *[(i << 21) | 0x83 | u for i in range(1, 512)])
    pd_high = struct.pack("<512Q", *[(3 << 30) + (i << 21) | 0x83 | u for i in range(512)])
    return {PML4: struct.pack("<Q", PDPT | 3 | u), PDPT: struct.pack("<4Q", PD | 3 | u, 0, 0, PD_HIGH | 3 | u),
            PD: pd, PT0: bytes(pt), PD_HIGH: pd_high}


ENTER_LONG_MODE = f"""
    mov eax, {PML4:#x}
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80010001
    mov cr0, eax
    lgdt [{GDTR:#x}]
"""


def long_mode_setup(cr0_extra: int) -> str:
    extra = f"mov rax, cr0\nor rax, {cr0_extra:#x}\nmov cr0, rax\n" if cr0_extra else ""
    return f"""
    mov ax, {DATA_SEL:#x}
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, {STACK_TOP:#x}
    lidt [{IDTR:#x}]
    mov ax, {TSS_SEL:#x}
    ltr ax
    mov al, 0xff
    out 0x21, al
    out 0xa1, al
    {extra}
"""


def build_long(guest: IdtGuest) -> tuple[bytes, int]:
    """The image and the address of the fault instruction."""
    memory = bytearray(IMAGE_END - CODE32)

    def put(address: int, data: bytes) -> None:
        memory[address - CODE32: address - CODE32 + len(data)] = data

    code32 = guestkit.assemble(ENTER_LONG_MODE, CODE32) + guestkit.far_jump(CODE64_SEL, CODE64)
    put(CODE32, code32)
    prefix = guestkit.assemble(long_mode_setup(guest.cr0_extra) + guest.before
                               + f"\npush {guest.flags:#x}\npopfq\n", CODE64, bits=64)
    fault_address = CODE64 + len(prefix)
    body = prefix + guestkit.assemble(guest.fault + "\n" + guest.after + "\nhlt", fault_address, bits=64)
    put(CODE64, body)
    for address, data in _page_tables_long(user=bool(guest.user_code)).items():
        put(address, data)
    if guest.user_code:
        put(USER_CODE, guestkit.assemble(guest.user_code, USER_CODE, bits=64))
    gdt = _gdt_long(guest.tss_limit)
    put(GDT, gdt)
    put(GDTR, struct.pack("<HQ", len(gdt) - 1, GDT))
    put(IDTR, struct.pack("<HQ", 256 * 16 - 1, IDT))
    tss = bytearray(104)
    struct.pack_into("<Q", tss, 4, RSP0_TOP)
    for ist, top in IST_TOPS.items():
        struct.pack_into("<Q", tss, 0x24 + 8 * (ist - 1), top)
    struct.pack_into("<H", tss, 0x66, 104)
    put(TSS, bytes(tss))
    for vector in range(256):
        stub = STUBS + vector * STUB_SIZE
        put(stub, _stub64(vector))
        put(IDT + vector * 16, _gate64(_handler(put, guest, vector, stub, 64), guest.gates.get(vector, Gate())))
    return guestkit.flat_image(bytes(memory)), fault_address


def _handler(put, guest: IdtGuest, vector: int, stub: int, bits: int) -> int:
    """The entry point for vector: the recording stub, or the guest's own handler."""
    if vector not in guest.handlers:
        return stub
    address = HANDLERS + list(guest.handlers).index(vector) * HANDLER_SIZE
    put(address, guestkit.assemble(guest.handlers[vector], address, bits=bits))
    return address


def run_long(guest: IdtGuest, tmp_path, **boot_options) -> tuple[Frame | None, int, object]:
    image, fault_address = build_long(guest)
    path = tmp_path / "idt_guest.bin"
    path.write_bytes(image)
    result = boot(str(path), deterministic=True, max_instructions=1_000_000, **boot_options)
    if result.stop.reason.value != "guest-exit":
        return None, fault_address, result
    machine = result.machine
    rsp = machine.cpu_state().gpr["rsp"]
    words = list(struct.unpack("<7Q", machine.ram.read(rsp, 56)))
    frame = Frame(machine.ram.u8(VECTOR_SLOT), rsp, words, machine.ram.u64(FLAGS_SLOT))
    return frame, fault_address, result


# --- 32-bit protected mode ---------------------------------------------------------
PD32 = 0x110000
PT32 = 0x111000
TSS32_SEL = 0x28


def _gdt32() -> bytes:
    tss = ((TSS64_LIMIT & 0xFFFF) | ((TSS & 0xFFFFFF) << 16) | (0x89 << 40) | (((TSS >> 24) & 0xFF) << 56))
    entries = [0, FLAT_CODE32, FLAT_DATA, 0, 0, tss, 0, NOT_PRESENT_DATA]
    return struct.pack(f"<{len(entries)}Q", *entries)


def _gate32(target: int, gate: Gate) -> bytes:
    attributes = (0x80 if gate.present else 0) | (gate.dpl << 5) | gate.type
    return struct.pack("<HHBBH", target & 0xFFFF, CODE64_SEL, 0, attributes, target >> 16)


def _stub32(vector: int) -> bytes:
    code = (b"\xc6\x05" + struct.pack("<IB", VECTOR_SLOT, vector)        # mov byte [VECTOR_SLOT], v
            + b"\x9c"                                                      # pushfd
            + b"\x8f\x05" + struct.pack("<I", FLAGS_SLOT)                  # pop dword [FLAGS_SLOT]
            + b"\xb0\x00\xe6\xf4"                                          # mov al, 0; out 0xf4, al
            + b"\xeb\xfe")                                                 # jmp $: the exit lands at the block's end
    return code.ljust(STUB_SIZE, b"\x90")


RELOAD_CS = f"""
    push {CODE64_SEL:#x}
    call reload_cs
reload_cs:
    add dword ptr [esp], 5
    retf
"""
"""Far return to the next instruction (push selector; push EIP+5; retf): the GDT just
loaded has its code at 0x08, the loader's CS is GRUB's 0x10."""


def protected_setup(cr0_extra: int) -> str:
    extra = f"mov eax, cr0\nor eax, {cr0_extra:#x}\nmov cr0, eax\n" if cr0_extra else ""
    return f"""
    lgdt [{GDTR:#x}]
    {RELOAD_CS}
    mov ax, {DATA_SEL:#x}
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, {STACK_TOP:#x}
    lidt [{IDTR:#x}]
    mov ax, {TSS32_SEL:#x}
    ltr ax
    mov eax, {PD32:#x}
    mov cr3, eax
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
    mov al, 0xff
    out 0x21, al
    out 0xa1, al
    {extra}
"""


def build_protected(guest: IdtGuest) -> tuple[bytes, int]:
    memory = bytearray(IMAGE_END - CODE32)

    def put(address: int, data: bytes) -> None:
        memory[address - CODE32: address - CODE32 + len(data)] = data

    prefix = guestkit.assemble(protected_setup(guest.cr0_extra) + guest.before
                               + f"\npush {guest.flags:#x}\npopfd\n", CODE32)
    fault_address = CODE32 + len(prefix)
    put(CODE32, prefix + guestkit.assemble(guest.fault + "\n" + guest.after + "\nhlt", fault_address))
    pt = bytearray(struct.pack("<1024I", *[(i << 12) | 3 for i in range(1024)]))
    struct.pack_into("<I", pt, 4 * (RO_PAGE >> 12), RO_PAGE | 1)
    struct.pack_into("<I", pt, 4 * (NP_PAGE >> 12), 0)
    put(PT32, bytes(pt))
    put(PD32, struct.pack("<1024I", PT32 | 3, *[(i << 22) | 0x83 for i in range(1, 1024)]))
    gdt = _gdt32()
    put(GDT, gdt)
    put(GDTR, struct.pack("<HI", len(gdt) - 1, GDT))
    put(IDTR, struct.pack("<HI", 256 * 8 - 1, IDT))
    tss = bytearray(104)
    struct.pack_into("<II", tss, 4, RSP0_TOP, DATA_SEL)
    put(TSS, bytes(tss))
    for vector in range(256):
        stub = STUBS + vector * STUB_SIZE
        put(stub, _stub32(vector))
        put(IDT + vector * 8, _gate32(_handler(put, guest, vector, stub, 32), guest.gates.get(vector, Gate())))
    return guestkit.flat_image(bytes(memory)), fault_address


def run_protected(guest: IdtGuest, tmp_path) -> tuple[Frame | None, int, object]:
    image, fault_address = build_protected(guest)
    path = tmp_path / "idt_guest32.bin"
    path.write_bytes(image)
    result = boot(str(path), deterministic=True, max_instructions=1_000_000)
    if result.stop.reason.value != "guest-exit":
        return None, fault_address, result
    machine = result.machine
    esp = machine.cpu_state().gpr["rsp"] & 0xFFFFFFFF
    words = list(struct.unpack("<6I", machine.ram.read(esp, 24)))
    frame = Frame(machine.ram.u8(VECTOR_SLOT), esp, words, machine.ram.u32(FLAGS_SLOT))
    return frame, fault_address, result


def run_protected_to_exit(guest: IdtGuest, tmp_path, *, deterministic: bool = True):
    """Build guest (32-bit), run it on a 16 MiB machine to its debug exit; the machine."""
    from unikernel_sim.machine import Machine
    from unikernel_sim.stops import StopReason

    image, _ = build_protected(guest)
    path = tmp_path / "guest32.bin"
    path.write_bytes(image)
    machine = Machine(16, deterministic=deterministic)
    machine.load(str(path))
    stop = machine.run(timeout=120)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    return machine


# --- shared by the benches (bench/*.py) ---------------------------------------------------
PIT_HZ = 1_193_182


def program_pit(hz: int) -> str:
    """PIT channel 0 in mode 2 at hz, and IRQ 0 unmasked at the 8259 (32-bit code)."""
    count = PIT_HZ // hz
    return (f"mov al, 0x34\nout 0x43, al\nmov al, {count & 0xFF}\nout 0x40, al\n"
            f"mov al, {count >> 8}\nout 0x40, al\nmov al, 0xfe\nout 0x21, al")


HPET_TICKS_PER_SECOND = 100_000_000      # QEMU's HPET: a 10 ns period


def program_hpet_routed(hz: int, bits: int = 32, *, pin: int = 2, vector: int = 0x30) -> str:
    """HPET timer 0 periodic at hz, edge-triggered, without legacy replacement: routed by
    Tn_INT_ROUTE_CNF to I/O APIC pin `pin`, whose redirection entry sends `vector`
    (edge, fixed, to CPU 0); the 8259 left masked."""
    period = HPET_TICKS_PER_SECOND // hz
    config = 0x4C | (pin << 9)                              # INT_ENB, periodic, VAL_SET, INT_ROUTE
    writes = [(0xFEC00000, 0x10 + 2 * pin + 1), (0xFEC00010, 0), (0xFEC00000, 0x10 + 2 * pin),
              (0xFEC00010, vector), (0xFED00010, 0), (0xFED000F0, 0), (0xFED000F4, 0), (0xFED00100, config),
              (0xFED00108, period), (0xFED00100, config), (0xFED0010C, 0), (0xFED00108, period),
              (0xFED00010, 1)]                          # ENABLE_CNF alone, last: the counter starts
    if bits == 32:
        return "\n".join(f"mov dword ptr [{address:#x}], {value:#x}" for address, value in writes)
    return "\n".join(f"mov eax, {address:#x}\nmov dword ptr [rax], {value:#x}" for address, value in writes)


def program_hpet_legacy(hz: int, bits: int = 32, *, comparator_32: bool = False, counter: int = 0) -> str:
    """HPET timer 0 periodic at hz, edge-triggered, under legacy replacement (it drives
    IRQ 0 and I/O APIC pin 2 instead of the PIT), IRQ 0 unmasked at the 8259 (the HPET page
    identity-mapped), the counter started at `counter`. The comparator's halves are written
    each with VAL_SET (a write clears it), so the comparator is one period on from the
    counter and the period is `period`; comparator_32: 32-bit comparator mode (Linux's)."""
    period = HPET_TICKS_PER_SECOND // hz
    config = 0x4C | (0x100 if comparator_32 else 0)     # INT_ENB (2), TYPE periodic (3), VAL_SET (6), 32BIT (8)
    first = counter + period
    writes = [(0x010, 0), (0x0F0, counter & 0xFFFFFFFF), (0x0F4, counter >> 32), (0x100, config),
              (0x108, first & 0xFFFFFFFF), (0x100, config), (0x10C, first >> 32), (0x108, period),
              (0x010, 3)]                                # ENABLE_CNF | LEG_RT_CNF last: the counter starts
    if bits == 32:
        stores = [f"mov dword ptr [{0xFED00000 + offset:#x}], {value:#x}" for offset, value in writes]
    else:                                                # no disp32 reaches 0xFED00000 in 64-bit mode
        stores = [f"mov eax, {0xFED00000 + offset:#x}\nmov dword ptr [rax], {value:#x}" for offset, value in writes]
    return "\n".join(stores + ["mov al, 0xfe", "out 0x21, al"])


def compute_loop(iterations: int, bits: int = 32) -> str:
    """A loop of four integer instructions per iteration, then the debug exit."""
    a, c = ("eax", "ecx") if bits == 32 else ("rax", "rcx")
    return f"""
    mov {c}, {iterations}
    xor eax, eax
work:
    imul {a}, {a}, 3
    add {a}, {c}
    dec {c}
    jnz work
    mov al, 0
    out 0xf4, al
"""
