"""A hlt woken by the timer in C (cpu/hlt_sites.py, tick_path_wake_from_hlt in _tick_path.c).

Oracle: the run loop's own hlt path (RunLoop._on_hlt: virtual time jumps to the next
event, which delivers its interrupt with RIP after the hlt), reached by switching the
C wake off (`hlt_sites.enabled = False`): in deterministic mode every interrupt's return
RIP and TSC, the instruction count and the output are the same bytes either way. Fast
mode, where host time decides when ticks come, is checked against what the guest counts:
its handlers' entries and the RTC's interrupts the virtual time that passed allows.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from interrupts.harness import CODE32, COUNTER_SLOT, PIT_HZ, IdtGuest, build_long, build_protected, program_pit
from interrupts.test_tick_path import APIC_EOI, APIC_TIMER_VECTOR, PIC_EOI, TRACE, apic_timer, tracing_handler
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

BIOS_IRQ0_VECTOR = 0x08
RTC_VECTOR = 0x70                      # IRQ 8 at the slave 8259's BIOS vector base
RTC_COUNT_SLOT = COUNTER_SLOT + 0x20
RTC_HZ = 64                            # register A rate 10: 32,768 >> (10 - 1)
RTC_RATE_64_HZ = 0x2A                  # divider 010 (32.768 kHz), rate 1010
RTC_PERIODIC_ENABLE = 0x42             # register B: PIE, 24-hour
LOOPS_SLOT = COUNTER_SLOT + 0x28
TICK_HZ = 2000


def idle_body(bits: int, ticks: int, *, work: int = 300) -> str:
    """Idle until ticks handler entries (`sti; hlt`, then a little work per wake-up)."""
    c, word = ("ecx", "dword") if bits == 32 else ("rcx", "qword")
    return f"""
idle:
    sti
site:
    hlt
    mov {c}, {work}
spin:
    dec {c}
    jnz spin
    cmp {word} ptr [{COUNTER_SLOT:#x}], {ticks}
    jb idle
    mov al, 0
    out 0xf4, al
"""


RTC_PERIODIC = ("in al, 0x21\nand al, 0xfb\nout 0x21, al\nin al, 0xa1\nand al, 0xfe\nout 0xa1, al\n"
                f"mov al, 0x0a\nout 0x70, al\nmov al, {RTC_RATE_64_HZ:#x}\nout 0x71, al\n"
                f"mov al, 0x0b\nout 0x70, al\nmov al, {RTC_PERIODIC_ENABLE:#x}\nout 0x71, al")
RTC_TRACE = TRACE + 0x10000            # the RTC handler logs its TSC here
RTC_HANDLER_32 = f"""
    push eax
    push edx
    push ebx
    mov ebx, [{RTC_COUNT_SLOT:#x}]
    rdtsc
    mov [{RTC_TRACE:#x} + ebx * 8], eax
    mov [{RTC_TRACE + 4:#x} + ebx * 8], edx
    inc dword ptr [{RTC_COUNT_SLOT:#x}]
    mov al, 0x0c
    out 0x70, al
    in al, 0x71
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop ebx
    pop edx
    pop eax
    iretd
"""


def load(tmp_path, guest: IdtGuest, bits: int, *, deterministic: bool, c_wake: bool = True) -> Machine:
    image, _ = (build_protected if bits == 32 else build_long)(guest)
    path = tmp_path / f"idle{bits}.bin"
    path.write_bytes(image)
    machine = Machine(16, deterministic=deterministic)
    machine.load(str(path))
    machine.loop.hlt_sites.enabled = c_wake
    return machine


def outcome(machine: Machine) -> tuple:
    """(ticks, IRQs, the ticks' trace of return RIP and TSC, instructions, virtual ns, RTC
    interrupts, their TSCs)."""
    stop = machine.run(timeout=120)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    ticks, rtc = machine.ram.u32(COUNTER_SLOT), machine.ram.u32(RTC_COUNT_SLOT)
    return (ticks, machine.interrupts.irq_count, machine.ram.read(TRACE, 16 * min(ticks, 256)),
            machine.instructions, machine.clock.now_ns(), rtc, machine.ram.read(RTC_TRACE, 8 * rtc))


def pit_idle_guest(bits: int, ticks: int, *, before: str = "", handlers: dict | None = None,
                   work: int = 300) -> IdtGuest:
    eoi = PIC_EOI
    return IdtGuest(before=program_pit(TICK_HZ) + "\n" + before, fault="nop", flags=0x2,
                    after=idle_body(bits, ticks, work=work),
                    handlers={BIOS_IRQ0_VECTOR: tracing_handler(bits, eoi), **(handlers or {})})


@pytest.mark.parametrize("bits", [32, 64])
def test_deterministic_idle_ticks_land_where_the_run_loop_lands_them(tmp_path, bits):
    guest = pit_idle_guest(bits, 200)
    in_c = load(tmp_path, guest, bits, deterministic=True)
    woken_in_c = outcome(in_c)
    run_loop = load(tmp_path, guest, bits, deterministic=True, c_wake=False)
    assert woken_in_c == outcome(run_loop)
    counts = in_c.loop.tick_path.counts
    assert woken_in_c[0] == 200 and counts["hlt_wakes"] >= 195      # the first hlt teaches the site
    assert counts["handed_back"] == 0                                 # `sti; hlt`: the shadow ended
    assert run_loop.loop.tick_path.counts["hlt_wakes"] == 0


def test_deterministic_apic_timer_idle_ticks_land_where_the_run_loop_lands_them(tmp_path):
    guest = IdtGuest(before=apic_timer(3000), fault="nop", flags=0x2, after=idle_body(32, 150),
                     handlers={APIC_TIMER_VECTOR: tracing_handler(32, APIC_EOI)})
    in_c = load(tmp_path, guest, 32, deterministic=True)
    woken_in_c = outcome(in_c)
    assert woken_in_c == outcome(load(tmp_path, guest, 32, deterministic=True, c_wake=False))
    assert in_c.loop.tick_path.counts["hlt_wakes"] >= 145


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "fast"])
def test_another_devices_event_is_not_jumped_over(tmp_path, deterministic):
    """The RTC's periodic interrupt (the run loop's) beside the PIT's (C's): a hlt woken in
    C never jumps past the RTC's next event. The RTC interrupts the guest counted: as many
    as the virtual time allows (64 Hz), and in deterministic mode each at the run loop's
    instruction and TSC."""
    # busy for ~0.3 ms after each tick (of 0.5): the RTC's events fall inside work, too
    guest = pit_idle_guest(32, 800, before=RTC_PERIODIC, handlers={RTC_VECTOR: RTC_HANDLER_32}, work=150_000)
    machine = load(tmp_path, guest, 32, deterministic=deterministic)
    ticks, _, _, _, ns, rtc, _ = result = outcome(machine)
    expected = ns * RTC_HZ // 1_000_000_000
    wakes = machine.loop.tick_path.counts["hlt_wakes"]
    if deterministic:
        assert ticks == 800 and expected - 1 <= rtc <= expected + 1 and wakes > 600
    else:   # host time: a slow host makes the work longer (more ticks land in it, needing no wake)
        assert 800 <= ticks <= 810 and 0.8 * expected <= rtc <= expected + 1 and wakes > 100
    assert rtc >= 20
    if deterministic:
        assert result == outcome(load(tmp_path, guest, 32, deterministic=True, c_wake=False))


def test_fast_mode_idle_guest_gets_every_tick_at_its_edge(tmp_path):
    """Fast mode: each tick ends a hlt in C, virtual time jumping to its edge, so the
    handlers' TSCs are one PIT period apart (the guest's work between ticks is far shorter
    than a period). A stall of the host during that work is host time too (ticks then
    coalesce, as on a CPU that cannot keep up): most gaps, not all, are one period."""
    ticks_wanted = 3000
    machine = load(tmp_path, pit_idle_guest(64, ticks_wanted), 64, deterministic=False)
    ticks, irqs, _, _, _, _, _ = outcome(machine)
    assert ticks == irqs == ticks_wanted and machine.loop.tick_path.counts["hlt_wakes"] >= ticks_wanted - 100
    trace = machine.ram.read(TRACE, 16 * ticks)
    tscs = [int.from_bytes(trace[i * 16 + 8: i * 16 + 16], "little") for i in range(ticks)]
    period_tsc = (PIT_HZ // TICK_HZ) * machine.clock.state.tsc_hz / PIT_HZ
    one_period = sum(abs((b - a) - period_tsc) < 0.01 * period_tsc for a, b in zip(tscs, tscs[1:]))
    assert one_period >= 0.9 * (ticks - 1)


def site_address(machine: Machine) -> int:
    return machine.loop.hlt_sites.addresses[0]


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "fast"])
def test_a_breakpoint_on_a_learnt_site_stops_in_front_of_the_hlt(tmp_path, deterministic):
    machine = load(tmp_path, pit_idle_guest(32, 400), 32, deterministic=deterministic)
    assert machine.run(max_instructions=200_000).reason is StopReason.BUDGET
    site = site_address(machine)
    machine.add_breakpoint(site)
    for _ in range(3):
        stop = machine.run(timeout=60)
        assert stop.reason is StopReason.BREAKPOINT and machine.rip == site
    machine.remove_breakpoint(site)
    assert machine.run(timeout=60).reason is StopReason.GUEST_EXIT
    assert machine.ram.u32(COUNTER_SLOT) == 400


REWRITE_BODY = f"""
    xor esi, esi
idle:
    sti
site:
    hlt
    inc dword ptr [{LOOPS_SLOT:#x}]
    cmp dword ptr [{LOOPS_SLOT:#x}], 50
    jb idle
    test esi, esi
    jnz done
    inc esi
    mov dword ptr [{LOOPS_SLOT:#x}], 0
    mov byte ptr [site], 0x90
    jmp idle
done:
    mov al, 0
    out 0xf4, al
"""


def test_a_site_rewritten_to_another_instruction_is_not_woken(tmp_path):
    """The guest idles 50 times at `site`, then writes a nop over the hlt there and runs
    the loop 50 times more: those pass without waiting for a tick."""
    guest = IdtGuest(before=program_pit(TICK_HZ), fault="nop", flags=0x2, after=REWRITE_BODY,
                     handlers={BIOS_IRQ0_VECTOR: tracing_handler(32, PIC_EOI)})
    machine = load(tmp_path, guest, 32, deterministic=True)
    ticks = outcome(machine)[0]
    assert 50 <= ticks <= 52 and machine.loop.tick_path.counts["hlt_wakes"] >= 45


HALT_FOR_GOOD = f"""
idle:
    sti
site:
    hlt
    cmp dword ptr [{COUNTER_SLOT:#x}], 20
    jb idle
    cli
    jmp site
"""


def test_a_learnt_site_reached_with_interrupts_off_still_halts_the_machine(tmp_path):
    guest = IdtGuest(before=program_pit(TICK_HZ), fault="nop", flags=0x2, after=HALT_FOR_GOOD,
                     handlers={BIOS_IRQ0_VECTOR: tracing_handler(32, PIC_EOI)})
    machine = load(tmp_path, guest, 32, deterministic=True)
    stop = machine.run(timeout=60)
    assert stop.reason is StopReason.HALT and "interrupts disabled" in stop.summary
    assert machine.ram.u32(COUNTER_SLOT) == 20 and machine.loop.tick_path.counts["hlt_wakes"] >= 15


PRINTING_IDLE = f"""
idle:
    sti
    hlt
    mov dx, 0x3f8
    mov al, 0x2e
    out dx, al
    mov ecx, 3000
spin:
    dec ecx
    jnz spin
    cmp dword ptr [{COUNTER_SLOT:#x}], 300
    jb idle
    mov al, 0
    out 0xf4, al
"""


@pytest.mark.parametrize("c_wake", [True, False], ids=["c-wake", "run-loop"])
def test_output_drains_do_not_move_deterministic_ticks(tmp_path, c_wake):
    """Deterministic mode: the output watch stops the guest whenever its buffered output is
    due on the host (host time, anywhere). One landing right after a `hlt` an interrupt had
    ended, its handler returned there, was taken for the guest halting again: virtual time
    jumped to the next event and every later tick moved. The watch looking every 2 us here:
    the same ticks, instructions and output as with the watch at its usual period."""
    guest = IdtGuest(before=program_pit(TICK_HZ), fault="nop", flags=0x2, after=PRINTING_IDLE,
                     handlers={BIOS_IRQ0_VECTOR: tracing_handler(32, PIC_EOI)})
    reference = outcome(load(tmp_path, guest, 32, deterministic=True, c_wake=False))
    for _ in range(3):
        machine = load(tmp_path, guest, 32, deterministic=True, c_wake=c_wake)
        machine.host_timer.state.output_period_ns = 2_000
        assert outcome(machine) == reference


RTC_RATE_2_HZ = 0x2F                   # rate 15: 32,768 >> 14
DEBUG_EXIT = bytes.fromhex("b000e6f4")  # mov al, 0; out 0xf4, al


def stopped_before_exit(machine: Machine) -> None:
    """Run to a breakpoint in front of the guest's exit: a stop in the slice that woke the
    hlts, before anything re-arms the machine's next event."""
    code = machine.ram.read(CODE32, 0x1000)
    machine.add_breakpoint(CODE32 + code.index(DEBUG_EXIT))
    stop = machine.run(timeout=60)
    assert stop.reason is StopReason.BREAKPOINT, stop.summary


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "fast"])
def test_the_next_device_event_stays_where_its_virtual_time_is(tmp_path, deterministic):
    """RunLoop._arm arms the RTC's next event (2 Hz: none falls due here) as an instruction
    count (deterministic) or a host time (fast) from the virtual time it has; after 300
    hlts woken in C, each jumping virtual time, it must still be armed where that virtual
    time now falls. The APIC timer's EOI is an MMIO store (no port access re-arms it)."""
    rtc = RTC_PERIODIC.replace(f"{RTC_RATE_64_HZ:#x}", f"{RTC_RATE_2_HZ:#x}")
    guest = IdtGuest(before=apic_timer(TICK_HZ) + "\n" + rtc, fault="nop", flags=0x2, after=idle_body(32, 300),
                     handlers={APIC_TIMER_VECTOR: tracing_handler(32, APIC_EOI), RTC_VECTOR: RTC_HANDLER_32})
    machine = load(tmp_path, guest, 32, deterministic=deterministic)
    stopped_before_exit(machine)
    event_ns = machine.clock.state.event_ns
    assert machine.ram.u32(RTC_COUNT_SLOT) == 0 and machine.loop.tick_path.counts["hlt_wakes"] >= 295
    if deterministic:
        assert machine.clock.state.stop_at == machine.clock.instruction_at(event_ns)
    else:
        assert machine.host_timer.state.deadline[0] == machine.clock.host_ns_at(event_ns)



COLOCATED = """
import os, threading
from unikernel_sim.machine import Machine
machine = Machine(16)
machine.load({image!r})
machine.run(timeout=0.2)                   # the tick thread runs now
main = threading.get_native_id()
cpu = min(os.sched_getaffinity(0))
threads = [int(tid) for tid in os.listdir("/proc/self/task")]
for tid in threads:
    os.sched_setaffinity(tid, {{cpu}})      # all on one CPU, as the scheduler may put them
machine.run(timeout=0.3)
print(sum(cpu not in os.sched_getaffinity(tid) for tid in threads if tid != main))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs the process may use")
def test_the_tick_thread_moves_off_the_guests_cpu(tmp_path):
    """Fast mode: a tick thread woken on the CPU the guest runs on preempts the guest at
    every tick (~30 us each). Put there, it moves to another CPU the process may use at its
    next wake. Oracle: the kernel's record of each thread's CPUs (sched_getaffinity). In a
    child process: the test's own affinity must not change."""
    image, _ = build_protected(pit_idle_guest(32, 10**9, work=3_000_000))
    (tmp_path / "guest.bin").write_bytes(image)
    script = tmp_path / "colocated.py"
    script.write_text(COLOCATED.format(image=str(tmp_path / "guest.bin")))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]          # the tick thread; the host timer's stays
