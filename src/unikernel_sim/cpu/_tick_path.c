/* The timer ticks in C: PIT channel 0 (or HPET timer 0 under legacy replacement) -> 8259
 * master and/or I/O APIC pin 2 -> the guest's IDT, HPET timer 0 routed to an I/O APIC pin
 * (no legacy replacement: the 8259 never sees it) -> the guest's IDT, and the local APIC
 * timer -> the guest's IDT, with no Python between the timer's event and the handler's
 * first instruction.
 * The APIC's vector is taken before the 8259's request (PcBoard.acknowledge); the APIC's
 * EOI is served by the MMIO callbacks of its page (tick_path_apic_write), which hand
 * every other access to the device model.
 *
 * Through Python a tick cost ~120 us of host time: the host timer's thread wakes,
 * stops emu_start, the run loop brings every device up to date, delivers, re-arms
 * and restarts, and the handler's EOI is a Python port hook. Here:
 *   - fast mode: a timer thread of our own sleeps until the PIT's next rising edge
 *     (the channel's periodic schedule, computed as i8254.py computes it) and sets
 *     clock->tick_attention; it never stops the guest. Deterministic mode: the edge
 *     falls due at clock->tick_at, the instruction count at which the run loop's
 *     deadline would have stopped the guest, checked by the block hook right after
 *     that deadline under the same rules (not at the rest of a cut block), so a tick
 *     lands at the same instruction whichever path serves it;
 *   - the block hook (vclock_block) sees it at the next block boundary and
 *     calls tick_path_service: the edges are accounted, IRR bit 0 set, and if the
 *     CPU takes the request (IF, no STI shadow) it is acknowledged and delivered
 *     by irq_deliver (the same C delivery the run loop uses) with RIP set to the
 *     handler, so Unicorn goes on at the handler in the same emu_start;
 *   - the handler's OCW2 EOI (`out 0x20, al`) is served by the port hook.
 *
 * The host decides each slice whether this path may own the ticks (TickPath.begin
 * in tick_path.py: the master in its plain fully nested state, the PIT periodic,
 * IRQ 0 reaching the CPU through the 8259 and/or I/O APIC pin 2 (edge, fixed), the
 * APIC enabled, nothing pending, no diagnostics that watch deliveries) and copies the
 * 8259 master, the local APIC and the timers' accounting into this struct. The first Python device access of the
 * slice, or its end, copies them back (TickPath.take_back), so Python's device
 * models never see stale state. Anything unusual - a request for the cascade
 * line, IF clear (deterministic mode: at once, so the run loop's pending-poll grid
 * decides; fast mode: for longer than RETRY_BLOCKS blocks), a delivery the C path
 * declines (privilege change, fault) - stops the guest and leaves the request
 * pending for the run loop's reference path (hand_back). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <string.h>

#include "_tick_path.h"

#define NEVER UINT64_MAX
#define PIT_HZ 1193182
#define NS_PER_SECOND 1000000000ll
#define RETRY_BLOCKS 256               /* blocks to wait for IF=1 before the host takes over */
#define MIN_SIGNAL_INTERVAL_NS 10000   /* fast mode: the thread flags at most every 10 us; edges
                                        * between are accounted together (they coalesce in IRR,
                                        * as on a CPU that cannot keep up), and a PIT at its
                                        * fastest (count 2, 1.7 us) does not keep a core busy */
#define OCW_SELECT_BITS 0x18           /* D4 (ICW1) or D3 (OCW3): not an OCW2              */
#define OCW2_NONSPECIFIC_EOI 1         /* OCW2 bits 7-5 = 001                              */
#define OCW2_SPECIFIC_EOI 3            /* OCW2 bits 7-5 = 011, level in bits 2-0           */
#define VECTOR_BASE_MASK 0xF8

#define NONE INT64_MAX                 /* no event */
#define APIC_EOI 0x0B0                 /* local APIC register offsets (SDM table 11-1)        */
#define APIC_PRIORITY_CLASS 0xF0       /* a vector's or a priority's class: bits 7-4          */
#define OPCODE_HLT 0xF4
#define IRQ0_LINE 0x1ull               /* the 8259 master's IR0 as an IRR / ISR / IMR bit     */

enum { SERVICE_CONTINUE, SERVICE_DELIVERED, SERVICE_STOPPED };

/* --- the PIT's schedule, as i8254.py computes it (Python's floor division) --------- */
static int64_t floor_div(__int128 a, __int128 b)
{
    __int128 q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0)))
        q--;
    return (int64_t)q;
}

static int64_t ticks_at(int64_t ns)            /* input clocks elapsed in ns */
{
    return floor_div((__int128)ns * PIT_HZ, NS_PER_SECOND);
}

static int64_t ns_of_tick(int64_t ticks)       /* the first ns at which ticks have elapsed */
{
    return -floor_div(-(__int128)ticks * NS_PER_SECOND, PIT_HZ);
}

/* Virtual ns of the first rising edge after `after` (PitChannel.next_rising_edge). */
static int64_t next_pit_edge(const struct tick_path *tp, int64_t after)
{
    int64_t n = (int64_t)tp->pit_period;
    int64_t target = (floor_div(ticks_at(after - tp->pit_loaded_at), n) + 1) * n;
    return tp->pit_loaded_at + ns_of_tick(target);
}

/* Rising edges in (start, end] (PitChannel.rising_edges, periodic modes). */
static uint64_t rising_edges(const struct tick_path *tp, int64_t start, int64_t end)
{
    int64_t n = (int64_t)tp->pit_period;
    int64_t t0 = ticks_at(start - tp->pit_loaded_at), t1 = ticks_at(end - tp->pit_loaded_at);
    if (t1 <= t0)
        return 0;
    return (uint64_t)(floor_div(t1, n) - floor_div(t0, n));
}

/* --- HPET timer 0 under legacy replacement (hpet.py): periodic, edge-triggered ------ */
/* Its matches fall at hpet_first_ns + k * hpet_period_ns (10 ns a counter tick, exact). */
static int64_t hpet_matches_up_to(const struct tick_path *tp, int64_t t)   /* matches at or before t */
{
    return t < tp->hpet_first_ns ? 0 : floor_div(t - tp->hpet_first_ns, tp->hpet_period_ns) + 1;
}

/* IRQ 0's source: the first edge after `after`, and the edges in (start, end]. */
static int64_t next_irq0_edge(const struct tick_path *tp, int64_t after)
{
    if (tp->irq0_from_hpet)
        return tp->hpet_first_ns + hpet_matches_up_to(tp, after) * tp->hpet_period_ns;
    return next_pit_edge(tp, after);
}

static uint64_t irq0_edges(const struct tick_path *tp, int64_t start, int64_t end)
{
    if (tp->irq0_from_hpet)
        return end > start ? (uint64_t)(hpet_matches_up_to(tp, end) - hpet_matches_up_to(tp, start)) : 0;
    return rising_edges(tp, start, end);
}

/* --- the local APIC (local_apic.py; SDM vol. 3A 11.5.4, 11.8.3) -------------------- */
static int apic_highest(const uint64_t bits[APIC_WORDS])   /* the highest set bit, -1 for none */
{
    for (int word = APIC_WORDS - 1; word >= 0; word--)
        if (bits[word])
            return word * 64 + 63 - __builtin_clzll(bits[word]);
    return -1;
}

static void apic_set(uint64_t bits[APIC_WORDS], int vector, int value)
{
    uint64_t bit = 1ull << (vector & 63);
    bits[vector >> 6] = value ? bits[vector >> 6] | bit : bits[vector >> 6] & ~bit;
}

static int apic_test(const uint64_t bits[APIC_WORDS], int vector)
{
    return (int)((bits[vector >> 6] >> (vector & 63)) & 1);
}

/* The next time the count reaches zero after t (LocalApic._expiry_after), or NONE. */
static int64_t apic_expiry_after(const struct tick_path *tp, int64_t t)
{
    if (!tp->apic_initial_count)
        return NONE;
    int64_t period = (int64_t)((tp->apic_initial_count + 1) << tp->apic_divide_shift);
    if (tp->apic_periodic)
        return tp->apic_timer_start + (floor_div(t - tp->apic_timer_start, period) + 1) * period;
    int64_t end = tp->apic_timer_start + period;
    return end > t ? end : NONE;
}

/* LocalApic.advance: the timer's vector once for the expiries up to now. */
static void apic_advance(struct tick_path *tp, int64_t now)
{
    int64_t expiry = apic_expiry_after(tp, tp->apic_last_advance);
    if (expiry != NONE && expiry <= now) {
        apic_set(tp->apic_irr, (int)tp->apic_timer_vector, 1);
        apic_set(tp->apic_tmr, (int)tp->apic_timer_vector, 0);      /* edge-triggered */
        tp->apic_expiries++;
    }
    if (now > tp->apic_last_advance)
        tp->apic_last_advance = now;
}

/* The vector the APIC would have the CPU take with this IRR, or -1 (LocalApic._deliverable). */
static int apic_deliverable_with(const struct tick_path *tp, const uint64_t irr[APIC_WORDS])
{
    int requested = apic_highest(irr);
    int in_service = apic_highest(tp->apic_isr);
    if (requested < 0)
        return -1;
    if (in_service < 0)
        in_service = 0;
    uint64_t ppr = (tp->apic_tpr >> 4) >= ((uint64_t)in_service >> 4) ? tp->apic_tpr
                                                                       : (uint64_t)in_service & APIC_PRIORITY_CLASS;
    if (((uint64_t)requested & APIC_PRIORITY_CLASS) <= (ppr & APIC_PRIORITY_CLASS))
        return -1;
    return requested;
}

static int apic_deliverable(const struct tick_path *tp)
{
    return apic_deliverable_with(tp, tp->apic_irr);
}

/* --- the 8259 master in its fully nested mode: IR0 highest, IR7 lowest ------------- */
static int lowest_bit(uint64_t bits)
{
    return bits ? __builtin_ctzll(bits) : -1;
}

/* The line that interrupts the CPU now, or -1 (Pic8259._requested_line). */
static int requested_line_with(uint64_t irr, uint64_t isr, uint64_t imr)
{
    int line = lowest_bit(irr & ~imr & 0xFF);
    int blocking = lowest_bit(isr & 0xFF);
    if (line < 0 || (blocking >= 0 && blocking <= line))
        return -1;
    return line;
}

static int requested_line(const struct tick_path *tp)
{
    return requested_line_with(tp->irr, tp->isr, tp->imr);
}

/* The first event of a live source after `after` (and after what is accounted), or NONE. */
static int64_t next_due(const struct tick_path *tp, int64_t after)
{
    int64_t due = NONE;
    if (tp->pit_live)
        due = next_irq0_edge(tp, after > tp->pit_accounted ? after : tp->pit_accounted);
    if (tp->apic_timer_live) {
        int64_t expiry = apic_expiry_after(tp, after > tp->apic_last_advance ? after : tp->apic_last_advance);
        if (expiry < due)
            due = expiry;
    }
    return due;
}

void tick_path_rearm(struct tick_path *tp)
{
    if (!tp->live) {                   /* the copies are not loaded (the PIT's period may be 0) */
        tp->clock->tick_at = NEVER;
        return;
    }
    tp->next_edge_ns = next_due(tp, INT64_MIN);
    tp->clock->tick_at = tp->deterministic && tp->next_edge_ns != NONE
                         ? vclock_instruction_at(tp->clock, tp->next_edge_ns) : NEVER;
}

static void want_attention(struct tick_path *tp)
{
    __atomic_store_n(&tp->clock->tick_attention, 1, __ATOMIC_RELEASE);
}

/* Stop in front of the current block: a clock stop, so the run loop goes round. */
static void stop_here(void *uc, struct tick_path *tp)
{
    struct vclock *vc = tp->clock;
    uint64_t rip = 0;
    tp->irq->reg_read(uc, (int)tp->irq->reg_rip, &rip);    /* the block's, or its handler's */
    vc->stopped = 1;
    vclock_stop_before(uc, vc, rip);
}

/* Stop at this block boundary; the request stays pending for the run loop. */
static int hand_back(void *uc, struct tick_path *tp)
{
    tp->handed_back++;
    tick_path_rearm(tp);
    stop_here(uc, tp);
    return SERVICE_STOPPED;
}

/* The latest delivery pushed its frame just below the interrupted RSP in 64-bit mode,
 * where the interrupted code is not known to be free of red-zone use. */
static int needs_red_zone_look(const struct tick_path *tp)
{
    const struct irq_ctx *c = tp->irq;
    uint64_t pushed = c->last_old_rsp - c->last_new_rsp;
    if (!tp->red_zone_check || !c->last_long_mode || pushed == 0 || pushed > tp->red_zone_reach)
        return 0;
    for (uint64_t i = 0; i < tp->safe_count; i++)
        if (c->last_return_rip >= tp->safe_start[i] && c->last_return_rip < tp->safe_end[i])
            return 0;
    return tp->deterministic || (int64_t)vclock_now_ns(tp->clock) >= tp->red_zone_quiet_until;
}

/* Whether the 8259 master's copy is loaded (its request and EOIs are C's). */
static int pic_live(const struct tick_path *tp)
{
    return tp->pit_live && tp->irq0_to_pic;
}

/* A request other than the one just taken is waiting: serve it at the next block. */
static void look_again_if_requested(struct tick_path *tp)
{
    tp->output = pic_live(tp) && requested_line(tp) >= 0;
    if ((tp->output && tp->pic_to_cpu) || (tp->apic_live && apic_deliverable(tp) >= 0))
        want_attention(tp);
}

/* Deliver vector if the CPU takes it now; SERVICE_DELIVERED with RIP at its handler (the
 * caller then acknowledges it at its controller), or what the block should do instead. */
static int deliver(void *uc, struct tick_path *tp, uint32_t vector)
{
    if (!irq_ready(uc, tp->irq)) {     /* IF clear or an STI shadow: look again next block */
        if (tp->deterministic || tp->retry_blocks == 0)
            return hand_back(uc, tp);  /* deterministic: the run loop's pending-poll grid */
        tp->retry_blocks--;
        want_attention(tp);
        return SERVICE_CONTINUE;
    }
    if (irq_deliver(uc, tp->irq, vector) != IRQ_DELIVERED)
        return hand_back(uc, tp);      /* nothing changed: Python delivers it from scratch */
    tp->retry_blocks = RETRY_BLOCKS;
    tp->delivered++;
    if (needs_red_zone_look(tp)) {    /* stop in front of the handler: the host arms its watch */
        tp->red_zone_pending = 1;
        stop_here(uc, tp);
    }
    return SERVICE_DELIVERED;
}

int tick_path_service(void *uc, struct tick_path *tp)
{
    int result;
    if (!tp->live)
        return SERVICE_CONTINUE;
    __atomic_store_n(&tp->guest_cpu, (int64_t)sched_getcpu(), __ATOMIC_RELAXED);   /* the thread keeps off it */
    int64_t now = (int64_t)vclock_now_ns(tp->clock);
    if (tp->pit_live && now > tp->pit_accounted) {
        uint64_t edges = irq0_edges(tp, tp->pit_accounted, now);
        tp->pit_accounted = now;
        if (edges) {
            tp->edges += edges;
            if (tp->irq0_to_pic)
                tp->irr |= 1;          /* an edge on IR0 (edge-triggered: latched in IRR) */
            if (tp->pit_to_apic) {     /* and on its I/O APIC pin, unmasked: a fixed interrupt */
                apic_set(tp->apic_irr, (int)tp->pit_apic_vector, 1);
                apic_set(tp->apic_tmr, (int)tp->pit_apic_vector, 0);
            } else if (tp->ioapic_latches) {
                tp->ioapic_edges++;
            }
        }
    }
    if (tp->apic_timer_live)
        apic_advance(tp, now);
    tick_path_rearm(tp);
    /* the local APIC's vector first, then the 8259's request (PcBoard.acknowledge) */
    int vector = tp->apic_live ? apic_deliverable(tp) : -1;
    if (vector >= 0) {
        result = deliver(uc, tp, (uint32_t)vector);
        if (result == SERVICE_DELIVERED) {
            apic_set(tp->apic_irr, vector, 0);                  /* INTA (LocalApic.acknowledge) */
            apic_set(tp->apic_isr, vector, 1);
            look_again_if_requested(tp);
        }
        return result;
    }
    int line = pic_live(tp) ? requested_line(tp) : -1;
    tp->output = line >= 0;
    if (line < 0 || !tp->pic_to_cpu)
        return SERVICE_CONTINUE;
    if ((1ull << line) & tp->host_lines)
        return hand_back(uc, tp);
    result = deliver(uc, tp, (uint32_t)((tp->vector_base & VECTOR_BASE_MASK) | (uint64_t)line));
    if (result == SERVICE_DELIVERED) {
        tp->irr &= ~(1ull << line);    /* INTA (Pic8259.acknowledge) */
        if (!tp->auto_eoi)
            tp->isr |= 1ull << line;
        look_again_if_requested(tp);
    }
    return result;
}

/* --- a hlt the timer wakes (RunLoop._on_hlt without the run loop) --------------------- */
/* Whether the timer event at t, the first one due (next_due), interrupts the CPU: the
 * local APIC has its vector taken, or the 8259 master passes IR0 to the CPU (the order
 * tick_path_service delivers in). IF is the caller's to check. */
static int event_interrupts(const struct tick_path *tp, int64_t t)
{
    int irq0 = tp->pit_live && next_irq0_edge(tp, tp->pit_accounted) == t;
    int expiry = tp->apic_timer_live && apic_expiry_after(tp, tp->apic_last_advance) == t;
    if (tp->apic_live) {
        uint64_t irr[APIC_WORDS];
        memcpy(irr, tp->apic_irr, sizeof irr);
        if (expiry)
            apic_set(irr, (int)tp->apic_timer_vector, 1);
        if (irq0 && tp->pit_to_apic)
            apic_set(irr, (int)tp->pit_apic_vector, 1);
        if (apic_deliverable_with(tp, irr) >= 0)
            return 1;
    }
    return irq0 && tp->irq0_to_pic && tp->pic_to_cpu && !(tp->host_lines & IRQ0_LINE)
           && requested_line_with(tp->irr | IRQ0_LINE, tp->isr, tp->imr) == 0;
}

/* Whether a request waits already (the host's board.interrupt_pending: no time jump). */
static int request_waiting(const struct tick_path *tp)
{
    return (pic_live(tp) && tp->pic_to_cpu && requested_line(tp) >= 0) || (tp->apic_live && apic_deliverable(tp) >= 0);
}

/* The run loop, at a hlt with IF set: nothing pending, so virtual time jumps to the next
 * event; that event's interrupt ends the hlt and is delivered with RIP after it (frames
 * as delivery.py's, tests/interrupts). Here when the next event is the timer's. */
int tick_path_wake_from_hlt(void *uc, struct tick_path *tp, uint64_t address)
{
    struct vclock *vc = tp->clock;
    uint8_t opcode = 0;
    if (!tp->live || !tp->hlt_wake || vc->stop_requested || vc->block_covered || vc->all_exact)
        return 0;                      /* stops and exact counting: the host's path */
    if (guest_read_virtual(uc, tp->irq, address, &opcode, 1) || opcode != OPCODE_HLT
        || !irq_flag_set(uc, tp->irq) || request_waiting(tp))
        return 0;                      /* rewritten code, halted for good, or no jump */
    int64_t due = next_due(tp, INT64_MIN);
    if (due == NONE || due < 0 || (uint64_t)due >= vc->event_ns || !event_interrupts(tp, due))
        return 0;                      /* another device's event first (or with it), no interrupt */
    uint64_t resume = address + 1;
    if (irq_end_shadow(uc, tp->irq))
        return 0;
    tp->irq->reg_write(uc, (int)tp->irq->reg_rip, &resume);      /* the hlt completes */
    int64_t now = (int64_t)vclock_now_ns(vc);
    if (due > now)
        vclock_jump(vc, (uint64_t)(due - now));   /* the tick's edge: re-armed by the service */
    vc->in_block = 0;                  /* the hlt's block ran to its end */
    if (tick_path_service(uc, tp) == SERVICE_CONTINUE) {
        tp->irq->reg_write(uc, (int)tp->irq->reg_rip, &address);  /* not taken after all: the */
        return 0;                                                 /* hlt runs, the host serves */
    }
    tp->hlt_wakes++;
    return 1;
}

/* --- the local APIC's page: EOI here while apic_live, the rest for the host ---------- */
/* Whether an EOI is served here (LocalApic._end_of_interrupt); it is then done. */
static int apic_end_of_interrupt(struct tick_path *tp)
{
    int vector = apic_highest(tp->apic_isr);
    if (vector < 0)
        return 1;                      /* nothing in service: nothing to do */
    if (apic_test(tp->apic_tmr, vector))
        return 0;                      /* level-triggered: the I/O APIC must hear of it */
    apic_set(tp->apic_isr, vector, 0);
    if (apic_deliverable(tp) >= 0 || (pic_live(tp) && tp->pic_to_cpu && requested_line(tp) >= 0)) {
        if (tp->deterministic) {       /* the host's path stops where the request is raised */
            apic_set(tp->apic_isr, vector, 1);
            return 0;
        }
        want_attention(tp);
    }
    return 1;
}

uint64_t tick_path_apic_read(void *uc, uint64_t offset, unsigned size, void *user)
{
    struct tick_path *tp = user;
    return tp->apic_slow_read(uc, offset, size, NULL);
}

void tick_path_apic_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *user)
{
    struct tick_path *tp = user;
    if (tp->apic_live && offset == APIC_EOI && size >= 4 && apic_end_of_interrupt(tp))
        return;
    tp->apic_slow_write(uc, offset, size, value, NULL);
}

/* ISR after an OCW2 end of interrupt; -1 if value is not one. */
static int64_t isr_after_end_of_interrupt(const struct tick_path *tp, uint32_t value)
{
    unsigned command = (value >> 5) & 7;
    if (value & OCW_SELECT_BITS)
        return -1;
    if (command == OCW2_NONSPECIFIC_EOI)
        return (int64_t)(tp->isr & (tp->isr - 1));   /* the highest priority in service: the lowest bit */
    if (command == OCW2_SPECIFIC_EOI)
        return (int64_t)(tp->isr & ~(1ull << (value & 7)));
    return -1;
}

int tick_path_takes_end_of_interrupt(const struct tick_path *tp, uint32_t value)
{
    int64_t isr = isr_after_end_of_interrupt(tp, value);
    if (!pic_live(tp) || isr < 0)
        return 0;
    if (tp->deterministic)
        return !tp->pic_to_cpu || requested_line_with(tp->irr, (uint64_t)isr, tp->imr) < 0;
    return 1;
}

void tick_path_end_of_interrupt(struct tick_path *tp, uint32_t value)
{
    tp->isr = (uint64_t)isr_after_end_of_interrupt(tp, value);
    look_again_if_requested(tp);       /* fast mode: a tick that came while IR0 was in service */
}

/* --- the timer thread ------------------------------------------------------------- */
static uint64_t host_ns_of(const struct tick_path *tp, int64_t virtual_ns)
{
    const struct vclock *vc = tp->clock;
    return (uint64_t)(virtual_ns + (int64_t)vc->host_ns_at_zero + (int64_t)vc->host_ns_paused
                      - vc->virtual_ns_skipped);
}

static void *tick_thread_main(void *argument)
{
    struct tick_path *tp = argument;
    struct timer_thread *t = tp->thread;
    int64_t signalled = 0;
    uint64_t signalled_generation = NEVER;
    uint64_t signalled_at = 0;         /* host ns of the latest flag */
    pthread_mutex_lock(&t->lock);
    while (!t->quit) {
        timer_thread_avoid_cpu(__atomic_load_n(&tp->guest_cpu, __ATOMIC_RELAXED));
        if (!__atomic_load_n(&tp->live, __ATOMIC_ACQUIRE)) {
            tp->sleeping_until = NEVER;
            timer_thread_sleep(t, NEVER);
            continue;
        }
        uint64_t generation = tp->generation;
        int64_t after = generation == signalled_generation ? signalled : INT64_MIN;
        int64_t edge = next_due(tp, after);
        if (edge == NONE) {            /* a one-shot APIC timer that has expired */
            tp->sleeping_until = NEVER;
            timer_thread_sleep(t, NEVER);
            continue;
        }
        uint64_t target = host_ns_of(tp, edge);
        if (target < signalled_at + MIN_SIGNAL_INTERVAL_NS)
            target = signalled_at + MIN_SIGNAL_INTERVAL_NS;
        uint64_t now = vclock_host_ns();
        if (now >= target) {
            signalled = edge;
            signalled_generation = generation;
            signalled_at = now;
            want_attention(tp);
            continue;
        }
        tp->sleeping_until = target;
        timer_thread_sleep(t, target);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static int start_thread(struct tick_path *tp)
{
    if (timer_thread_ours(tp->thread))
        return 0;
    tp->sleeping_until = NEVER;
    return timer_thread_start(&tp->thread, tick_thread_main, tp);
}

/* The host loaded a new copy and set live: wake the thread if it sleeps past the next
 * edge (a notify costs a few us; the common slice start needs none). 0 on success. */
int tick_path_publish(struct tick_path *tp)
{
    tp->guest_cpu = sched_getcpu();
    int error = start_thread(tp);
    if (error)
        return error;
    struct timer_thread *t = tp->thread;
    pthread_mutex_lock(&t->lock);
    int64_t due = next_due(tp, INT64_MIN);
    if (due != NONE && host_ns_of(tp, due) < tp->sleeping_until)
        pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* Stop and free the thread (the machine is closed). */
void tick_path_close(struct tick_path *tp)
{
    timer_thread_close(&tp->thread);
}

uint64_t tick_path_struct_size(void)
{
    return sizeof(struct tick_path);
}
