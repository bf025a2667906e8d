"""The timer tick served in C (cpu/tick_path.py, _tick_path.c), fast mode.

Oracles: the guest's own count of handler entries against the simulator's IRQ
count and the PIT periods that passed; the 8259's registers as the guest reads them
with OCW3 (datasheet: IRR/ISR read) while its handler runs; the same guests with
the C path switched off, where every tick takes the run loop's reference path.
"""
from __future__ import annotations

import pytest

from interrupts.harness import COUNTER_SLOT, IdtGuest, build_long, build_protected, compute_loop
from interrupts.harness import program_hpet_legacy, program_hpet_routed
from interrupts.harness import program_pit as harness_program_pit
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

TIMER_HZ = 1000
ITERATIONS = 30_000_000
BIOS_IRQ0_VECTOR = 0x08
ISR_SLOT = COUNTER_SLOT + 8            # OR of every ISR value the handler read
IRR_SEEN_SLOT = COUNTER_SLOT + 16      # OR of every IRR value the handler read
OCW3_READ_IRR, OCW3_READ_ISR = 0x0A, 0x0B
ICW4_8086_AEOI = 0x03


def program_pit(first: str = "") -> str:
    """first (e.g. a re-initialisation of the 8259), then the PIT at TIMER_HZ and IRQ 0 unmasked."""
    return first + "\n" + harness_program_pit(TIMER_HZ)


def counting_handler(bits: int, *, read_registers: bool = False, eoi: bool = True) -> str:
    a = "eax" if bits == 32 else "rax"
    iret = "iretd" if bits == 32 else "iretq"
    size = "dword" if bits == 32 else "qword"
    # every 4th tick only: a read takes the path back to Python for the rest of the slice,
    # so the ticks between are delivered in C and the 4th is read after a C delivery
    registers = f"""
        test {size} ptr [{COUNTER_SLOT:#x}], 3
        jnz skip_read
        mov al, {OCW3_READ_ISR}
        out 0x20, al
        in al, 0x20
        or byte ptr [{ISR_SLOT:#x}], al
        mov al, {OCW3_READ_IRR}
        out 0x20, al
        in al, 0x20
        or byte ptr [{IRR_SEEN_SLOT:#x}], al
    skip_read:
    """ if read_registers else ""
    return f"""
        push {a}
        inc {size} ptr [{COUNTER_SLOT:#x}]
        {registers}
        {"mov al, 0x20" if eoi else ""}
        {"out 0x20, al" if eoi else ""}
        pop {a}
        {iret}
    """


def timer_guest(bits: int, *, before: str = "", handler: str | None = None) -> IdtGuest:
    return IdtGuest(before=before or program_pit(), fault="nop", flags=0x202, after=compute_loop(ITERATIONS, bits),
                    handlers={BIOS_IRQ0_VECTOR: handler or counting_handler(bits)})


def run(tmp_path, guest: IdtGuest, bits: int, *, c_ticks: bool = True) -> Machine:
    image, _ = (build_protected if bits == 32 else build_long)(guest)
    path = tmp_path / f"timer{bits}.bin"
    path.write_bytes(image)
    machine = Machine(16)
    machine.load(str(path))
    machine.loop.tick_path.enabled = c_ticks
    stop = machine.run(timeout=120)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    return machine


def pit_periods(machine: Machine) -> int:
    return machine.clock.now_ns() * TIMER_HZ // 1_000_000_000


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("c_ticks", [True, False], ids=["c-path", "run-loop"])
def test_every_tick_reaches_the_guest_handler_once(tmp_path, bits, c_ticks):
    machine = run(tmp_path, timer_guest(bits), bits, c_ticks=c_ticks)
    handled = machine.ram.u64(COUNTER_SLOT) & (0xFFFFFFFF if bits == 32 else (1 << 64) - 1)
    assert handled == machine.interrupts.irq_count
    periods = pit_periods(machine)
    assert periods >= 50, "the run was too short to say anything"
    # no more ticks than the PIT made; at most a few lost to coalescing under a busy host
    assert 0.5 * periods <= handled <= periods + 1
    c_delivered = machine.loop.tick_path.counts["edges"]
    if c_ticks:
        assert c_delivered > 0.5 * handled, "the C path served almost nothing"
    else:
        assert c_delivered == 0


@pytest.mark.parametrize("bits", [32, 64])
def test_python_reads_the_8259_state_the_c_path_left(tmp_path, bits):
    """The handler reads ISR and IRR with OCW3: a Python port access, after the C path
    delivered the tick. IR0 must be in service (and only it), and no request left in IRR
    but a new tick's."""
    machine = run(tmp_path, timer_guest(bits, handler=counting_handler(bits, read_registers=True)), bits)
    assert machine.loop.tick_path.counts["edges"] > 0.5 * machine.interrupts.irq_count
    assert machine.ram.u8(ISR_SLOT) == 0x01
    assert machine.ram.u8(IRR_SEEN_SLOT) & ~0x01 == 0
    assert machine.ram.u64(COUNTER_SLOT) & 0xFFFFFFFF == machine.interrupts.irq_count
    assert machine.board.pic.master.isr == 0             # every tick ended with its EOI


@pytest.mark.parametrize("bits", [32, 64])
def test_without_eoi_the_8259_blocks_further_ticks(tmp_path, bits):
    """8259A fully nested mode: IR0 stays in service without an EOI, so the first tick is
    the only one the CPU ever takes; the later edges wait in IRR."""
    machine = run(tmp_path, timer_guest(bits, handler=counting_handler(bits, eoi=False)), bits)
    assert machine.ram.u64(COUNTER_SLOT) & 0xFFFFFFFF == 1 == machine.interrupts.irq_count
    master = machine.board.pic.master
    assert master.isr == 0x01 and master.irr & 0x01


def test_auto_eoi_mode_needs_no_eoi(tmp_path):
    """ICW4 AEOI: the acknowledge sets no ISR bit, so ticks keep coming without an EOI."""
    reinit = f"""
        mov al, 0x11
        out 0x20, al
        mov al, {BIOS_IRQ0_VECTOR}
        out 0x21, al
        mov al, 0x04
        out 0x21, al
        mov al, {ICW4_8086_AEOI}
        out 0x21, al
    """
    machine = run(tmp_path, timer_guest(64, before=program_pit(reinit), handler=counting_handler(64, eoi=False)), 64)
    handled = machine.ram.u64(COUNTER_SLOT)
    assert handled == machine.interrupts.irq_count >= 0.5 * pit_periods(machine)
    assert machine.board.pic.master.isr == 0
    assert machine.loop.tick_path.counts["edges"] > 0


def test_interrupts_disabled_for_a_while_hand_the_tick_to_the_run_loop(tmp_path):
    """A long stretch with IF=0: the C path gives the pending request back, and the
    run loop delivers it once the guest sets IF again (no tick is lost for good, none
    is taken while IF=0)."""
    after = f"""
        mov rcx, 5000000
    warm:
        dec rcx
        jnz warm
        cli
        mov rcx, 20000000
    spin:
        dec rcx
        jnz spin
        mov rbx, [{COUNTER_SLOT:#x}]
        mov [{COUNTER_SLOT + 24:#x}], rbx
        sti
        {compute_loop(5_000_000, 64)}
    """
    guest = IdtGuest(before=program_pit(), fault="nop", flags=0x202, after=after,
                     handlers={BIOS_IRQ0_VECTOR: counting_handler(64)})
    machine = run(tmp_path, guest, 64)
    taken_with_if_clear = machine.ram.u64(COUNTER_SLOT + 24)
    handled = machine.ram.u64(COUNTER_SLOT)
    assert handled == machine.interrupts.irq_count
    assert handled > taken_with_if_clear               # the pending tick came after sti
    assert machine.loop.tick_path.counts["handed_back"] >= 1


def test_irq0_masked_at_the_8259_is_never_taken_by_the_c_path(tmp_path):
    """With IRQ 0 masked at the 8259 the C path never takes the tick."""
    guest = timer_guest(64, before=program_pit().replace("mov al, 0xfe", "mov al, 0xff"))
    guest.after = compute_loop(2_000_000, 64)
    machine = run(tmp_path, guest, 64)
    assert machine.interrupts.irq_count == 0
    assert machine.loop.tick_path.counts["edges"] == 0


# --- deterministic mode: the C path lands every tick where the run loop would --------------
TRACE = 0x200000                      # the handler logs (return RIP, TSC) of every tick here
TRACE_ENTRIES = 4096


def tracing_handler(bits: int, eoi: str) -> str:
    """A handler that logs (return RIP, TSC) of its interrupt at TRACE, counts it, ends it
    with eoi (an 8259 OCW2 or a store to the APIC's EOI register) and returns. The count's
    address goes through a register: keystone assembles `mov rbx, [imm32]` in 64-bit mode
    as RIP-relative with imm32 as the displacement (every tick logged at entry 0)."""
    a, d, b, sp, word, iret = (("eax", "edx", "ebx", "esp", "dword", "iretd") if bits == 32
                               else ("rax", "rdx", "rbx", "rsp", "qword", "iretq"))
    return f"""
    push {a}
    push {d}
    push {b}
    mov {b}, {COUNTER_SLOT:#x}
    mov {b}, [{b}]
    and {b}, {TRACE_ENTRIES - 1}
    shl {b}, 4
    mov {a}, [{sp} + {3 * (bits // 8)}]
    mov [{TRACE:#x} + {b}], {a}
    rdtsc
    mov [{TRACE + 8:#x} + {b}], eax
    mov [{TRACE + 12:#x} + {b}], edx
    inc {word} ptr [{COUNTER_SLOT:#x}]
    {eoi}
    pop {b}
    pop {d}
    pop {a}
    {iret}
"""


PIC_EOI = "mov al, 0x20\nout 0x20, al"
# compute with short IF=0 windows (a tick landing in one waits for the run loop's
# pending-poll grid), a byte to COM1 (the C port path moves virtual time), a long stretch
# with IF=0, and hlt (the run loop sleeps to the next tick)
BUSY_BODY = """
    mov r8, 60
outer:
    mov rcx, 100000
inner:
    cli
    imul rax, rax, 3
    sti
    add rax, rcx
    dec rcx
    jnz inner
    mov dx, 0x3f8
    mov al, 0x78
    out dx, al
    cli
    mov rcx, 150000
spin:
    dec rcx
    jnz spin
    sti
    hlt
    dec r8
    jnz outer
    mov al, 0
    out 0xf4, al
"""


@pytest.fixture(scope="module")
def busy_image(tmp_path_factory):
    image, _ = build_long(IdtGuest(before=harness_program_pit(10_000), fault="nop", flags=0x202, after=BUSY_BODY,
                                   handlers={BIOS_IRQ0_VECTOR: tracing_handler(64, PIC_EOI)}))
    path = tmp_path_factory.mktemp("tick-det") / "busy.bin"
    path.write_bytes(image)
    return str(path)


def traced_outcome(image: str, *, deterministic: bool, c_ticks: bool, budget: int | None = None) -> tuple:
    """Run a tracing guest to its exit (in budgets if given): ((ticks, IRQs, the trace, the
    instruction count, the serial output, RAX at the exit), the tick path's counts, the machine)."""
    machine = Machine(16, deterministic=deterministic)
    machine.load(image)
    machine.loop.tick_path.enabled = c_ticks
    while True:
        stop = machine.run(max_instructions=budget) if budget else machine.run(timeout=120)
        if stop.reason is not StopReason.BUDGET:
            break
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    ticks = machine.ram.u32(COUNTER_SLOT)
    assert ticks <= TRACE_ENTRIES
    counts = machine.loop.tick_path.counts
    return ((ticks, machine.interrupts.irq_count, machine.ram.read(TRACE, 16 * ticks), machine.instructions,
             bytes(machine.serial.data), machine.cpu_state().gpr["rax"]), counts, machine)


def test_deterministic_ticks_land_where_the_run_loop_lands_them(busy_image):
    """Every tick's return RIP and TSC, the instruction count, the output: byte for byte
    the run loop's, with the C path serving the ticks."""
    with_c, counts, _ = traced_outcome(busy_image, deterministic=True, c_ticks=True)
    run_loop, run_loop_counts, _ = traced_outcome(busy_image, deterministic=True, c_ticks=False)
    assert with_c[0] > 100 and counts["edges"] > 0.5 * with_c[0]   # ticks happened, mostly in C
    assert run_loop_counts["edges"] == 0
    assert with_c == run_loop


@pytest.mark.parametrize("budget", [100_003, 7_919])
def test_deterministic_c_ticks_do_not_depend_on_how_the_run_is_cut(busy_image, budget):
    assert traced_outcome(busy_image, deterministic=True, c_ticks=True, budget=budget)[0] == \
        traced_outcome(busy_image, deterministic=True, c_ticks=True)[0]


# --- the local APIC timer (32-bit: the harness's protected-mode tables map the APIC page) ---
APIC_TIMER_VECTOR = 0x40
APIC_EOI = "mov dword ptr [0xfee000b0], 0"
APIC_ISR_WORD_OF_VECTOR = 0xFEE00100 + 0x10 * (APIC_TIMER_VECTOR >> 5)
APIC_NS_PER_TICK = 16                    # divide configuration 3: the 1 GHz bus clock / 16


def apic_timer(hz: int, *, tpr: int = 0) -> str:
    count = 1_000_000_000 // APIC_NS_PER_TICK // hz - 1
    return (f"mov dword ptr [0xfee00080], {tpr}\nmov dword ptr [0xfee003e0], 3\n"
            f"mov dword ptr [0xfee00320], {0x20000 | APIC_TIMER_VECTOR:#x}\nmov dword ptr [0xfee00380], {count}")


BUSY_BODY_32 = """
    mov edi, 40
outer:
    mov ecx, 100000
inner:
    cli
    imul eax, eax, 3
    sti
    add eax, ecx
    dec ecx
    jnz inner
    mov dx, 0x3f8
    mov al, 0x78
    out dx, al
    hlt
    dec edi
    jnz outer
    mov al, 0
    out 0xf4, al
"""


def apic_image(tmp_path, *, before: str, handlers: dict[int, str], after: str = BUSY_BODY_32) -> str:
    image, _ = build_protected(IdtGuest(before=before, fault="nop", flags=0x202, after=after, handlers=handlers))
    path = tmp_path / "apic.bin"
    path.write_bytes(image)
    return str(path)


def test_apic_timer_ticks_reach_the_handler_once_each(tmp_path):
    image = apic_image(tmp_path, before=apic_timer(1000),
                       handlers={APIC_TIMER_VECTOR: tracing_handler(32, APIC_EOI)},
                       after=compute_loop(ITERATIONS))
    (ticks, irqs, *_), counts, machine = traced_outcome(image, deterministic=False, c_ticks=True)
    assert ticks == irqs
    periods = pit_periods(machine)                                  # TIMER_HZ is the APIC's rate too
    assert periods >= 50 and 0.5 * periods <= ticks <= periods + 1
    assert counts["apic_expiries"] > 0.5 * ticks
    assert machine.board.lapic.isr == 0                             # every tick ended with its EOI


def test_python_reads_the_apic_state_the_c_path_left(tmp_path):
    """The handler reads the ISR word of its vector (a Python MMIO access after a C
    delivery): the vector's bit is set while it runs; the main loop reads it between
    ticks: clear, the EOI the C path served included."""
    read_isr = (f"test dword ptr [{COUNTER_SLOT:#x}], 3\njnz skip_read\n"     # every 4th: see the PIT's test
                f"mov eax, [{APIC_ISR_WORD_OF_VECTOR:#x}]\nor [{ISR_SLOT:#x}], eax\nskip_read:\n{APIC_EOI}")
    between = f"""
        mov edi, 200
    outer:
        mov ecx, 300000                    # long enough that C serves most ticks between reads
    inner:
        imul eax, eax, 3
        add eax, ecx
        dec ecx
        jnz inner
        test edi, 15                       # now and then: each read gives the tick back to Python
        jnz no_read
        mov eax, [{APIC_ISR_WORD_OF_VECTOR:#x}]
        or [{IRR_SEEN_SLOT:#x}], eax
    no_read:
        dec edi
        jnz outer
        mov al, 0
        out 0xf4, al
    """
    image = apic_image(tmp_path, before=apic_timer(1000), after=between,
                       handlers={APIC_TIMER_VECTOR: tracing_handler(32, read_isr)})
    (ticks, irqs, *_), counts, machine = traced_outcome(image, deterministic=False, c_ticks=True)
    assert ticks == irqs > 10 and counts["apic_expiries"] > 0.5 * ticks
    assert machine.ram.u32(ISR_SLOT) == 1 << (APIC_TIMER_VECTOR & 31)
    assert machine.ram.u32(IRR_SEEN_SLOT) == 0 and machine.board.lapic.isr == 0


IOAPIC_PIT_VECTOR = 0x30
PIT_THROUGH_IOAPIC = (                   # I/O APIC pin 2 -> vector 0x30, edge, fixed, CPU 0; the 8259 masked
    "mov dword ptr [0xfec00000], 0x15\nmov dword ptr [0xfec00010], 0\n"
    f"mov dword ptr [0xfec00000], 0x14\nmov dword ptr [0xfec00010], {IOAPIC_PIT_VECTOR:#x}\n"
    + harness_program_pit(6000).rsplit("\nmov al, 0xfe", 1)[0])


@pytest.mark.parametrize("timers", ["apic", "apic+pit", "pit-through-ioapic", "apic+pit-through-ioapic"])
def test_deterministic_apic_ticks_land_where_the_run_loop_lands_them(tmp_path, timers):
    """Every tick's return EIP and TSC byte for byte the run loop's: the APIC timer alone,
    with the PIT beside it through the 8259 (the APIC's vector is taken first, as on QEMU),
    the PIT through I/O APIC pin 2 alone and beside the APIC timer."""
    handlers, before = {}, []
    if timers.startswith("apic"):
        handlers[APIC_TIMER_VECTOR] = tracing_handler(32, APIC_EOI)
        before.append(apic_timer(7000))
    if timers == "apic+pit":
        before.append(harness_program_pit(3000))
        handlers[BIOS_IRQ0_VECTOR] = tracing_handler(32, PIC_EOI)
    if timers.endswith("through-ioapic"):
        before.append(PIT_THROUGH_IOAPIC)
        handlers[IOAPIC_PIT_VECTOR] = tracing_handler(32, APIC_EOI)
    image = apic_image(tmp_path, before="\n".join(before), handlers=handlers)
    with_c, counts, _ = traced_outcome(image, deterministic=True, c_ticks=True)
    run_loop, no_counts, _ = traced_outcome(image, deterministic=True, c_ticks=False)
    served = counts["apic_expiries"] + counts["edges"]
    assert with_c[0] > 100 and served > 0.5 * with_c[0] and no_counts == {**no_counts, "apic_expiries": 0, "edges": 0}
    assert with_c == run_loop
    assert traced_outcome(image, deterministic=True, c_ticks=True, budget=7_919)[0] == with_c


HPET_THROUGH_IOAPIC = (                  # the same HPET on I/O APIC pin 2 -> vector 0x30, the 8259 masked
    "mov dword ptr [0xfec00000], 0x15\nmov dword ptr [0xfec00010], 0\n"
    f"mov dword ptr [0xfec00000], 0x14\nmov dword ptr [0xfec00010], {IOAPIC_PIT_VECTOR:#x}\n"
    + program_hpet_legacy(5000).rsplit("\nmov al, 0xfe", 1)[0])


HPET_NEAR_2_TO_THE_32 = (1 << 32) - 25 * 20_000   # 25 periods of 5 kHz below the counter's 2^32


@pytest.mark.parametrize("route", ["8259", "ioapic", "ioapic+apic-timer", "8259, 32-bit comparator across 2^32"])
def test_deterministic_hpet_ticks_land_where_the_run_loop_lands_them(tmp_path, route):
    """HPET timer 0 under legacy replacement (periodic, edge) as IRQ 0's timer: every tick's
    return EIP and TSC byte for byte the run loop's, through the 8259, through I/O APIC pin 2,
    there beside the APIC timer, and with a 32-bit comparator while the counter passes 2^32;
    runs cut into budgets take the same ticks."""
    if route.startswith("8259, 32-bit"):
        before = program_hpet_legacy(5000, comparator_32=True, counter=HPET_NEAR_2_TO_THE_32)
        handlers = {BIOS_IRQ0_VECTOR: tracing_handler(32, PIC_EOI)}
    elif route == "8259":
        before, handlers = program_hpet_legacy(5000), {BIOS_IRQ0_VECTOR: tracing_handler(32, PIC_EOI)}
    else:
        before, handlers = HPET_THROUGH_IOAPIC, {IOAPIC_PIT_VECTOR: tracing_handler(32, APIC_EOI)}
    if route.endswith("apic-timer"):
        before += "\n" + apic_timer(7000)
        handlers[APIC_TIMER_VECTOR] = tracing_handler(32, APIC_EOI)
    image = apic_image(tmp_path, before=before, handlers=handlers)
    with_c, counts, machine = traced_outcome(image, deterministic=True, c_ticks=True)
    run_loop, no_counts, _ = traced_outcome(image, deterministic=True, c_ticks=False)
    hpet = machine.board.hpet
    assert hpet.legacy_replacement
    if "2^32" in route:
        assert hpet.counter(machine.clock.now_ns()) >> 32 == 1 and hpet.comparator[0] < 1 << 32   # it wrapped
    assert with_c[0] > 100 and counts["edges"] > 0.3 * with_c[0] and no_counts["edges"] == 0
    assert with_c == run_loop
    assert traced_outcome(image, deterministic=True, c_ticks=True, budget=7_919)[0] == with_c


def test_hpet_ticks_in_c_reach_the_handler_once_each_in_fast_mode(tmp_path):
    """Fast mode: every HPET match that passed reaches the handler once (coalesced at most
    when the guest runs late), served in C; the model the C path handed back, brought up to
    now, has its comparator at the next match."""
    hpet_ticks_in_fast_mode(tmp_path, program_hpet_legacy(TIMER_HZ),
                            {BIOS_IRQ0_VECTOR: tracing_handler(32, PIC_EOI)})


def hpet_ticks_in_fast_mode(tmp_path, before: str, handlers: dict[int, str]) -> Machine:
    """Run an HPET timer guest in fast mode: every match that passed reached the handler once
    (at most a few lost to coalescing under a busy host), most of them served in C, and the
    model handed back has its comparator at the next match."""
    image = apic_image(tmp_path, before=before, handlers=handlers, after=compute_loop(ITERATIONS))
    machine = Machine(16)
    machine.load(image)
    stop = machine.run(timeout=120)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    hpet, now = machine.board.hpet, machine.clock.now_ns()
    ticks, periods = machine.ram.u32(COUNTER_SLOT), hpet.counter(now) // hpet.period[0]
    assert periods >= 50, "the run was too short to say anything"
    assert machine.loop.tick_path.counts["edges"] > 0.5 * ticks
    assert 0.5 * periods <= ticks <= periods
    machine.board.catch_up()                            # fast mode: the clock runs on between calls
    assert hpet.comparator[0] == hpet.match[0]
    assert hpet.counter(now) < hpet.match[0] <= hpet.counter(machine.clock.now_ns()) + hpet.period[0]
    return machine


# --- HPET timer 0 routed to an I/O APIC pin, no legacy replacement (HPET 1.0a 2.3.9.2) ---
ROUTED_HPET_HZ = 5000


@pytest.mark.parametrize("setup", ["pin 2", "pin 11", "pin 2, the PIT on the 8259 beside it",
                                   "pin 2, the PIT on the same pin", "pin 2, the APIC timer beside it",
                                   "pin 2, IRQ 0 left in service at the 8259"])
def test_deterministic_routed_hpet_ticks_land_where_the_run_loop_lands_them(tmp_path, setup):
    """HPET timer 0 without legacy replacement, routed by Tn_INT_ROUTE_CNF straight to an
    I/O APIC pin: every tick's return EIP and TSC byte for byte the run loop's, alone, on
    another pin, beside the PIT on the 8259 (whose EOIs the C path must leave to the host:
    it holds no 8259 copy for this timer), beside the PIT on the same pin 2 (which the run
    loop keeps), beside the APIC timer, and with the PIT's IRQ 0 taken once through the
    8259 and never ended (the 8259's registers after the run must be the run loop's too:
    C holds no copy of them for this timer); runs cut into budgets take the same ticks."""
    pin = 11 if setup == "pin 11" else 2
    before = program_hpet_routed(ROUTED_HPET_HZ, pin=pin, vector=IOAPIC_PIT_VECTOR)
    handlers = {IOAPIC_PIT_VECTOR: tracing_handler(32, APIC_EOI)}
    if setup.endswith("8259 beside it"):
        before += "\n" + harness_program_pit(3000)
        handlers[BIOS_IRQ0_VECTOR] = tracing_handler(32, PIC_EOI)
    elif setup.endswith("same pin"):
        before += "\n" + harness_program_pit(3000).rsplit("\nmov al, 0xfe", 1)[0]
    elif setup.endswith("APIC timer beside it"):
        before += "\n" + apic_timer(7000)
        handlers[APIC_TIMER_VECTOR] = tracing_handler(32, APIC_EOI)
    elif setup.endswith("in service at the 8259"):
        before += "\n" + harness_program_pit(3000)
        handlers[BIOS_IRQ0_VECTOR] = "iretd"               # no EOI: IR0 stays in service
    image = apic_image(tmp_path, before=before, handlers=handlers)
    with_c, counts, machine = traced_outcome(image, deterministic=True, c_ticks=True)
    run_loop, no_counts, reference = traced_outcome(image, deterministic=True, c_ticks=False)
    pics = [(m.board.pic.master.irr, m.board.pic.master.isr, m.board.pic.master.imr) for m in (machine, reference)]
    assert pics[0] == pics[1]
    if setup.endswith("in service at the 8259"):
        assert pics[0][1] == 1                              # IR0 in service to the end
    hpet = machine.board.hpet
    assert hpet.config & 1 and not hpet.legacy_replacement
    # beside the PIT on the 8259, each of its ticks' EOIs hands the rest of the slice back
    share = 0.02 if setup.endswith("8259 beside it") else 0.3
    assert with_c[0] > 100 and counts["edges"] > share * with_c[0] and no_counts["edges"] == 0
    assert with_c == run_loop
    assert traced_outcome(image, deterministic=True, c_ticks=True, budget=7_919)[0] == with_c


STOP_PIT_CHANNEL_0 = "mov al, 0x30\nout 0x43, al"     # mode 0, no count written: it waits (8254 datasheet)


def test_routed_hpet_ticks_in_c_reach_the_handler_once_each_in_fast_mode(tmp_path):
    """Fast mode: every match that passed reaches the handler once (coalesced at most when
    the guest runs late), served in C, and never through the 8259 (with the PIT stopped and
    IRQ 0 unmasked, IRR and ISR stay clear: without legacy replacement the HPET does not
    drive IRQ 0); the model handed back has its comparator at the next match."""
    before = (STOP_PIT_CHANNEL_0 + "\n" + program_hpet_routed(TIMER_HZ, vector=IOAPIC_PIT_VECTOR)
              + "\nmov al, 0xfe\nout 0x21, al")
    machine = hpet_ticks_in_fast_mode(tmp_path, before, {IOAPIC_PIT_VECTOR: tracing_handler(32, APIC_EOI)})
    assert machine.board.pic.master.irr & 1 == 0 and machine.board.pic.master.isr == 0


def test_a_task_priority_above_the_timer_class_holds_its_ticks(tmp_path):
    """SDM 11.8.3: with TPR 0x40 the vector 0x40's class is not above the PPR's, so no
    tick is taken until the guest lowers TPR (the C path and the run loop agree)."""
    after = f"""
        mov ecx, 3000000
    held:
        dec ecx
        jnz held
        mov eax, [{COUNTER_SLOT:#x}]
        mov [{ISR_SLOT:#x}], eax
        mov dword ptr [0xfee00080], 0
        {compute_loop(1_000_000)}
    """
    image = apic_image(tmp_path, before=apic_timer(7000, tpr=0x40), after=after,
                       handlers={APIC_TIMER_VECTOR: tracing_handler(32, APIC_EOI)})
    with_c, _counts, machine = traced_outcome(image, deterministic=True, c_ticks=True)
    assert machine.ram.u32(ISR_SLOT) == 0 < with_c[0]            # none while held, some after
    assert with_c == traced_outcome(image, deterministic=True, c_ticks=False)[0]


def apic_store_64(address: int, value: int) -> str:
    """A dword store to an APIC register from 64-bit code (no disp32 reaches 0xFEE00000)."""
    return f"mov eax, {address:#x}\nmov dword ptr [rax], {value:#x}\n"


def test_deterministic_apic_and_ioapic_ticks_in_long_mode(tmp_path):
    """The same equivalence in 64-bit mode: the APIC timer and the PIT through I/O APIC pin 2
    together, the handlers' EOI a store to the APIC page."""
    eoi = apic_store_64(0xFEE000B0, 0)
    handler = tracing_handler(64, eoi)
    count = 1_000_000_000 // APIC_NS_PER_TICK // 7000 - 1
    before = (apic_store_64(0xFEE003E0, 3) + apic_store_64(0xFEE00320, 0x20000 | APIC_TIMER_VECTOR)
              + apic_store_64(0xFEE00380, count) + apic_store_64(0xFEC00000, 0x15) + apic_store_64(0xFEC00010, 0)
              + apic_store_64(0xFEC00000, 0x14) + apic_store_64(0xFEC00010, IOAPIC_PIT_VECTOR)
              + harness_program_pit(6000).rsplit("\nmov al, 0xfe", 1)[0])
    image, _ = build_long(IdtGuest(before=before, fault="nop", flags=0x202, after=BUSY_BODY,
                                   handlers={APIC_TIMER_VECTOR: handler, IOAPIC_PIT_VECTOR: handler}))
    path = tmp_path / "apic64.bin"
    path.write_bytes(image)
    with_c, counts, _ = traced_outcome(str(path), deterministic=True, c_ticks=True)
    run_loop, _, _ = traced_outcome(str(path), deterministic=True, c_ticks=False)
    assert with_c[0] > 100 and counts["edges"] > 0                 # ticks happened, PIT edges in C
    assert with_c == run_loop
