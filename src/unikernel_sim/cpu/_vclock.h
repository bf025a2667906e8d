/* struct vclock: the virtual clock's state, shared by _vclock.c and _fast_ports.c.
 * Mirrored by VClockState in vclock.py (same order, same types). */
#ifndef UNISIM_VCLOCK_H
#define UNISIM_VCLOCK_H

#include <stdint.h>
#include <sys/types.h>

#define RETURN_HISTORY 16
#define POSITION_CACHE 64             /* (block, instruction) -> its index, for RDTSC in a block */
#define GUARD_MAX 32

typedef int (*uc_emu_stop_fn)(void *uc);
typedef int (*uc_reg_write_fn)(void *uc, int regid, const void *value);
typedef int (*uc_reg_read_fn)(void *uc, int regid, void *value);
typedef int (*uc_ctl_fn)(void *uc, int control, ...);
typedef uint64_t (*count_between_fn)(uint64_t start, uint64_t end);

#define MSR_TSC_AUX 0xC0000103u       /* IA32_TSC_AUX: what RDTSCP returns in ECX (SDM vol. 2B) */

struct uc_x86_msr {                   /* unicorn/x86.h */
    uint32_t rid;
    uint64_t value;
};

struct host_timer;

struct vclock {
    uint64_t instructions;            /* instructions started, all slices             */
    uint64_t stop_at;                 /* stop before this count; UINT64_MAX: never     */
    uint64_t stopped;                 /* set to 1 when stop_at stopped the run          */
    uint64_t stop_requested;          /* set by the host when a hook called emu_stop    */
    uint64_t deterministic;           /* 1: time from instructions; 0: host clock       */
    uint64_t tsc_offset;              /* TSC value at time zero                         */
    uint64_t tsc_hz;                  /* TSC ticks per second                           */
    uint64_t ns_per_instruction_q32;  /* virtual ns per instruction, 32.32 fixed point  */
    uint64_t host_ns_at_zero;         /* CLOCK_MONOTONIC at time zero (fast mode)        */
    uint64_t host_ns_paused;          /* ns excluded from host time (snapshots, sleeps)  */
    int64_t virtual_ns_skipped;       /* ns added by hlt sleeps, minus restores to the past */
    uint64_t rdtsc_count;             /* RDTSC executions seen                          */
    uc_emu_stop_fn emu_stop;
    uc_reg_write_fn reg_write;
    int64_t reg_rax;
    int64_t reg_rdx;
    uint64_t ret_count;               /* `ret` instructions seen by vclock_ret      */
    uint64_t last_returns[RETURN_HISTORY];   /* addresses of the latest ones (ring) */
    uc_reg_read_fn reg_read;
    int64_t reg_rcx;
    int64_t reg_msr;
    uint64_t async_stop;              /* set by another thread: stop at the next block   */
    uint64_t guard_count;             /* addresses the counting hook stops before (CR writes) */
    uint64_t guard_lo, guard_hi;      /* their range, a cheap first test                  */
    uint64_t guard_addresses[GUARD_MAX];
    uint64_t guard_hit;               /* the guarded address reached; UINT64_MAX: none     */
    uint64_t guard_skip;              /* let this guarded address run once (checked)       */
    void *align;                      /* struct align_table of the SSE alignment guard, or NULL */
    /* counting per translated block (vclock_block); see _vclock.c */
    uint64_t budget_at;               /* exact stop before this count (budgets); UINT64_MAX: none */
    uc_ctl_fn ctl;                    /* uc_ctl, for a block's instruction count             */
    uint64_t ctl_request_cache;       /* uc_ctl's control word for UC_CTL_TB_REQUEST_CACHE    */
    uint64_t counting;                /* 1: instructions are counted                          */
    uint64_t all_exact;               /* 1: vclock_count runs before every instruction         */
    uint64_t exact_lo, exact_hi;      /* else: the range where it runs (an exact budget stop)  */
    uint64_t exact_request_pc;        /* a block the host should cover exactly; UINT64_MAX: none */
    uint64_t exact_request_size;
    uint64_t in_block;                /* the current block was counted whole at entry          */
    uint64_t block_pc, block_size;    /* the current block                                     */
    uint64_t block_start;             /* instructions before it                                */
    uint64_t block_position;          /* its instructions started (vclock_count, covered only) */
    uint64_t block_covered;           /* 1: vclock_count runs in it                            */
    uint64_t block_lookups_failed;    /* uc_ctl could not say a block's size (counted as 1)    */
    int64_t reg_rip;
    count_between_fn count_between;   /* the host decodes [start, end): instructions in it     */
    uint64_t position_keys[POSITION_CACHE][2];    /* (block start, instruction address)     */
    uint64_t position_values[POSITION_CACHE];     /* instructions before it in the block    */
    uint64_t partial_pc;              /* the run resumes inside a block here: no deadline stop at it */
    uint64_t tick_attention;          /* set by the tick path's thread or EOI: serve it at the next block */
    void *tick;                       /* struct tick_path (_tick_path.h), or NULL             */
    uint64_t tick_at;                 /* deterministic: serve the tick path at this count; NEVER */
    uint64_t call_active;             /* 1: a guest call runs; vclock_call_return stops at its return */
    uint64_t timer_polls;             /* fast mode: POLL_ bits the host timer sets, vclock_block takes */
    /* the soft TLB's review (_vclock.c, "The soft TLB's size")                                 */
    uint64_t tlb_review_at;           /* deterministic: review at this count; 0: find it first;   */
                                      /* NEVER: none (fast mode, or reviews off)                   */
    uint64_t ctl_tlb_flush;           /* uc_ctl's control word for UC_CTL_TLB_FLUSH; 0: no reviews (before a run) */
    uint64_t tlb_reviews;             /* reviews made (statistics)                                */
    void *icounts;                    /* struct tb_icounts (_tb_icounts.c): block -> instructions; NULL: ask uc_ctl */
    uint64_t stop_pc;                 /* a hook here stopped the guest in front of this address; NEVER: none */
    uint64_t event_ns;                /* the machine's next device event other than the tick path's */
                                      /* timers (RunLoop._arm; virtual ns): NEVER none, 0 a poll due now */
    struct host_timer *host_timer;    /* fast mode: its event deadline moves with a jump (vclock_jump) */
};

/* timer_polls */
#define POLL_IRQ 1ull                 /* a request waits for IF: stop if the CPU would take it now */
#define POLL_TLB_REVIEW 2ull          /* flush the soft TLB (its review)                          */

/* The review schedule, in ns of run time: the first review at TLB_REVIEW_FIRST_NS, the
 * gaps doubling up to TLB_REVIEW_GAP_MAX_NS, then every TLB_REVIEW_GAP_MAX_NS. */
#define TLB_REVIEW_FIRST_NS 1000000ull         /* 1 ms                                      */
#define TLB_REVIEW_GAP_MAX_NS 100000000ull     /* 100 ms: QEMU's own resize window (cputlb.c) */
uint64_t vclock_tlb_review_after(uint64_t ns);  /* the first review time after ns         */

uint64_t vclock_now_ns(const struct vclock *vc);
uint64_t vclock_instruction_at(const struct vclock *vc, int64_t ns);   /* deterministic mode */
void vclock_request_async_stop(struct vclock *vc);
void vclock_stop_before(void *uc, struct vclock *vc, uint64_t pc);   /* from a hook in front of pc */
void vclock_jump(struct vclock *vc, uint64_t ns);   /* virtual time jumps ns ahead inside a slice */
uint64_t vclock_host_ns(void);                  /* CLOCK_MONOTONIC in ns: fast mode's clock */
pid_t vclock_process(void);          /* getpid(), cached (updated in a forked child) */

#endif
