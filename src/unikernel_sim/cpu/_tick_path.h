/* struct tick_path: the timer ticks served in C - PIT channel 0 (or HPET timer 0 under
 * legacy replacement) -> 8259 master and/or I/O APIC pin 2 -> CPU, HPET timer 0 routed
 * to an I/O APIC pin -> CPU, and the local APIC timer -> CPU - mirrored by TickPathState
 * in cpu/tick_path.py (same order, same types).
 * See _tick_path.c for what it covers and when the host takes it back. */
#ifndef UNISIM_TICK_PATH_H
#define UNISIM_TICK_PATH_H

#include <stdint.h>

#include "_irq_delivery.h"
#include "_timer_thread.h"
#include "_vclock.h"

#define SAFE_RANGES 64                 /* functions known not to keep data in their red zone */
#define APIC_WORDS 4                   /* 256-bit IRR / ISR / TMR as four 64-bit words       */

typedef uint64_t (*mmio_read_fn)(void *uc, uint64_t offset, unsigned size, void *user);
typedef void (*mmio_write_fn)(void *uc, uint64_t offset, unsigned size, uint64_t value, void *user);

struct tick_path {
    struct vclock *clock;
    struct irq_ctx *irq;              /* the C interrupt delivery's context              */
    uint64_t live;                    /* 1: C owns the tick until the host takes it back */
    uint64_t generation;              /* bumped by the host whenever it reloads the copy */
    /* the 8259 master, copied in while live (fixed priority, edge-triggered)            */
    uint64_t irr;                     /* interrupt request register                      */
    uint64_t isr;                     /* in-service register                             */
    uint64_t imr;                     /* interrupt mask register                         */
    uint64_t vector_base;             /* ICW2: bits 7-3                                  */
    uint64_t auto_eoi;                /* ICW4 AEOI: the acknowledge sets no ISR bit       */
    uint64_t host_lines;              /* lines only the host acknowledges (the cascade)  */
    uint64_t output;                  /* INT output: a request the CPU has not taken     */
    /* PIT channel 0 in a periodic mode (2, 3), gate high                                */
    int64_t pit_loaded_at;            /* virtual ns when counting (re)started            */
    uint64_t pit_period;              /* input clocks per period                         */
    int64_t pit_accounted;            /* edges up to this virtual ns are accounted       */
    /* the I/O APIC's pin for IRQ 0 (masked while live)                                  */
    uint64_t ioapic_latches;          /* 1: an edge on the masked pin latches (edge mode) */
    uint64_t ioapic_edges;            /* edges that reached it (the host latches them)   */
    /* results                                                                            */
    uint64_t delivered;               /* IRQs delivered in C, not yet told to the host   */
    uint64_t handed_back;             /* stops asked so the host delivers (statistics)   */
    uint64_t edges;                   /* IRQ 0 edges accounted in C (statistics)         */
    uint64_t retry_blocks;            /* blocks left to wait for IF before handing back  */
    struct timer_thread *thread;      /* C only                                          */
    uint64_t sleeping_until;          /* the timer thread's wake-up, host ns; NEVER: idle */
    /* the red-zone watch (cpu/red_zone_watch.py): a 64-bit frame pushed on the          */
    /* interrupted stack may land in a red zone; the host looks unless the interrupted   */
    /* code is known not to use one                                                      */
    uint64_t red_zone_check;          /* 1: look at such deliveries                      */
    uint64_t red_zone_reach;          /* a frame within this many bytes below RSP        */
    uint64_t red_zone_pending;        /* 1: stopped after such a delivery for the host   */
    int64_t red_zone_quiet_until;     /* virtual ns: no look before (a look costs ~ms)    */
    uint64_t safe_count;
    uint64_t safe_start[SAFE_RANGES]; /* [start, end): code where a frame needs no look  */
    uint64_t safe_end[SAFE_RANGES];
    uint64_t deterministic;           /* 1: edges fall due at instruction counts (clock->tick_at) */
    int64_t next_edge_ns;             /* the next timer event (PIT edge, APIC expiry), virtual ns */
    uint64_t pit_live;                /* 1: the PIT -> 8259 path is C's (live = either)  */
    uint64_t apic_live;               /* 1: the local APIC timer is C's                  */
    /* the local APIC, copied in while apic_live (enabled, timer unmasked, xAPIC)         */
    uint64_t apic_irr[APIC_WORDS];
    uint64_t apic_isr[APIC_WORDS];
    uint64_t apic_tmr[APIC_WORDS];
    uint64_t apic_tpr;
    uint64_t apic_timer_vector;       /* LVT timer bits 0-7                              */
    uint64_t apic_periodic;           /* LVT timer bit 17                                */
    uint64_t apic_initial_count;
    uint64_t apic_divide_shift;       /* log2 of the divide configuration's divisor       */
    int64_t apic_timer_start;         /* virtual ns the count was loaded                  */
    int64_t apic_last_advance;        /* expiries up to this virtual ns are accounted      */
    uint64_t apic_expiries;           /* statistics                                       */
    mmio_read_fn apic_slow_read;      /* the host's handlers of the APIC page             */
    mmio_write_fn apic_slow_write;
    uint64_t apic_timer_live;         /* 1: the APIC's timer makes events (apic_live: its copy) */
    uint64_t pic_to_cpu;              /* 1: the 8259's INT reaches the CPU (LINT0 ExtINT)  */
    uint64_t pit_to_apic;             /* 1: the PIT's edge also reaches the APIC through   */
    uint64_t pit_apic_vector;         /*    I/O APIC pin 2 (edge, fixed) at this vector    */
    /* IRQ 0's edges from HPET timer 0 under legacy replacement instead of the PIT (the pit_ */
    /* fields above then mean IRQ 0: pit_live its path, pit_accounted its accounting)       */
    uint64_t irq0_from_hpet;          /* 1: periodic, edge-triggered                        */
    int64_t hpet_first_ns;            /* virtual ns of its next match when copied in        */
    int64_t hpet_period_ns;           /* its period: 10 ns a counter tick                   */
    uint64_t irq0_to_pic;             /* 1: the edges set the 8259 master's IR0 (the PIT, the  */
                                      /* HPET under legacy replacement); 0: HPET timer 0      */
                                      /* routed to an I/O APIC pin (pit_apic_vector) and      */
                                      /* nowhere else: no 8259 copy is loaded, its EOIs are   */
                                      /* the host's                                           */
    /* a hlt woken here (tick_path_wake_from_hlt): RunLoop._on_hlt's common case            */
    uint64_t hlt_wake;                /* 1: the host lets C wake a hlt in this slice           */
    uint64_t hlt_wakes;               /* hlts woken here (statistics)                          */
    int64_t guest_cpu;                /* the CPU the guest's thread served a tick on; -1: none  */
};

/* From vclock_block when clock->tick_attention is set: account PIT edges up to now and
 * deliver a request the CPU takes. Returns 1 if an interrupt was delivered (the block
 * does not run: RIP is the handler's). */
int tick_path_service(void *uc, struct tick_path *tp);

/* From the port hook: whether an OCW2 end of interrupt written to the master's command
 * port is served here (live, and in deterministic mode only if no request follows it,
 * which the host's path must raise where it would). */
int tick_path_takes_end_of_interrupt(const struct tick_path *tp, uint32_t value);

/* Serve it (after tick_path_takes_end_of_interrupt said yes and the access was charged). */
void tick_path_end_of_interrupt(struct tick_path *tp, uint32_t value);

/* A code hook's call in front of the instruction at address, a hlt site the host learnt:
 * if it is a hlt the next timer event ends (IF set, nothing else due first, its interrupt
 * taken), jump virtual time to that event as RunLoop._on_hlt does, complete the hlt and
 * deliver the interrupt (RIP at its handler). Returns 1 if it did (or stopped for the host
 * with the hlt completed and the request pending), 0 if the hlt is to run: the host's path. */
int tick_path_wake_from_hlt(void *uc, struct tick_path *tp, uint64_t address);

/* Recompute when the next edge falls due (clock->tick_at) after virtual time moved. */
void tick_path_rearm(struct tick_path *tp);

/* Unicorn MMIO callbacks for the local APIC's page (user data: the struct tick_path):
 * an EOI is served here while apic_live; everything else goes to the host's handlers. */
uint64_t tick_path_apic_read(void *uc, uint64_t offset, unsigned size, void *user);
void tick_path_apic_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *user);

#endif
