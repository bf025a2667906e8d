/* Host-clock deadlines that stop emu_start: fast mode's next device event, a run's
 * wall-clock timeout, and the output watch (guest output waiting in the C port
 * buffer while the guest runs on).
 *
 * Why C: the same thread in Python cost a guest call ~15 us of its ~70 (measured by
 * turning it off): every arm woke it, and a woken Python thread competes for the GIL
 * with the thread that is about to return from emu_start. This thread never takes
 * the GIL; the host arms through ctypes (~1 us) and reads the fired bits from the
 * struct. A deadline that passes asks for a stop with vclock_request_async_stop(),
 * which takes effect at the guest's next block boundary (never inside an
 * instruction, Q19) or, between two slices, at the next slice's first block.
 *
 * Each armed deadline fires once (its bit stays set until the host takes it). The
 * output watch re-arms itself every period while it is on and fires only when the
 * port buffer holds bytes. The soft TLB's review (fast mode, _vclock.c) sets the
 * clock's POLL_TLB_REVIEW at the schedule's times while a run goes on and stops nothing. */
#include <errno.h>
#include <stdint.h>

#include "_host_timer.h"
#include "_timer_thread.h"
#include "_vclock.h"

#define HOST_TIMER_KINDS 5
#define KIND_EVENT 0
#define KIND_TIMEOUT 1                 /* host_timer.py: EVENT 0, TIMEOUT 1, OUTPUT 2,     */
#define KIND_OUTPUT 2                  /* IRQ_POLL 3, TLB_REVIEW 4                          */
#define KIND_IRQ_POLL 3
#define KIND_TLB_REVIEW 4
#define NEVER UINT64_MAX

/* Mirrored by HostTimerState in cpu/host_timer.py (same order, same types). */
struct host_timer {
    struct vclock *clock;              /* where the stop is asked for                     */
    const volatile uint64_t *output_length;   /* bytes in the C port buffer; NULL: no watch */
    uint64_t output_period_ns;         /* how often the output watch looks               */
    uint64_t deadline[HOST_TIMER_KINDS];   /* host ns (CLOCK_MONOTONIC); NEVER: disarmed */
    uint64_t fired;                    /* bit per kind: passed since armed, not yet taken */
    uint64_t sleeping_until;           /* the thread's wake-up; 0 while it is awake       */
    uint64_t output_watch;             /* 1 while a run goes on; else the watch retires   */
    struct timer_thread *thread;       /* C only                                          */
    uint64_t irq_poll_period_ns;       /* IRQ_POLL: set clock's POLL_IRQ this often, no stop */
    uint64_t tlb_review_on;            /* 1: TLB_REVIEW runs while a run goes on (fast mode) */
};

/* The host ns of the next TLB review after now (the schedule is in the clock's time). */
static uint64_t next_tlb_review(const struct host_timer *ht, uint64_t now)
{
    uint64_t run_ns = vclock_now_ns(ht->clock);
    return now + (vclock_tlb_review_after(run_ns) - run_ns);
}

/* (Lock held.) Fire what is due at now; returns the earliest deadline still to come. */
static uint64_t fire_due(struct host_timer *ht, uint64_t now)
{
    uint64_t earliest = NEVER;
    int stop = 0;
    for (int kind = 0; kind < HOST_TIMER_KINDS; kind++) {
        uint64_t bit = 1ull << kind;
        uint64_t due = ht->deadline[kind];
        if (due == NEVER)
            continue;
        if (kind == KIND_TLB_REVIEW) {
            if (due <= now) {          /* ask the block hook; again at the next review time */
                __atomic_or_fetch(&ht->clock->timer_polls, POLL_TLB_REVIEW, __ATOMIC_ACQ_REL);
                if (!__atomic_load_n(&ht->output_watch, __ATOMIC_ACQUIRE)) {
                    ht->deadline[kind] = NEVER;   /* no run: retire until the next one */
                    continue;
                }
                due = ht->deadline[kind] = next_tlb_review(ht, now);
            }
        } else if (kind == KIND_IRQ_POLL) {
            if (due <= now) {          /* ask the block hook, and again a period later */
                __atomic_or_fetch(&ht->clock->timer_polls, POLL_IRQ, __ATOMIC_ACQ_REL);
                due = ht->deadline[kind] = now + ht->irq_poll_period_ns;
            }
        } else if (kind == KIND_OUTPUT) {
            if (due <= now) {          /* look, and look again a period later */
                if (ht->output_length != NULL && *ht->output_length > 0) {
                    __atomic_or_fetch(&ht->fired, bit, __ATOMIC_ACQ_REL);
                    stop = 1;
                }
                if (!__atomic_load_n(&ht->output_watch, __ATOMIC_ACQUIRE)) {
                    ht->deadline[kind] = NEVER;   /* no run: retire until the next one */
                    continue;
                }
                due = ht->deadline[kind] = now + ht->output_period_ns;
            }
        } else if (__atomic_load_n(&ht->fired, __ATOMIC_ACQUIRE) & bit) {
            continue;                  /* fired once: waits for the host to take it */
        } else if (due <= now) {
            __atomic_or_fetch(&ht->fired, bit, __ATOMIC_ACQ_REL);
            stop = 1;
            continue;
        }
        if (due < earliest)
            earliest = due;
    }
    if (stop)
        vclock_request_async_stop(ht->clock);
    return earliest;
}

static void *host_timer_main(void *argument)
{
    struct host_timer *ht = argument;
    struct timer_thread *t = ht->thread;
    pthread_mutex_lock(&t->lock);
    while (!t->quit) {
        uint64_t until = fire_due(ht, vclock_host_ns());
        ht->sleeping_until = until;
        timer_thread_sleep(t, until);
        ht->sleeping_until = 0;        /* awake: it looks at every deadline before sleeping */
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static int start_thread(struct host_timer *ht)
{
    if (timer_thread_ours(ht->thread))
        return 0;
    ht->sleeping_until = 0;
    return timer_thread_start(&ht->thread, host_timer_main, ht);
}

/* (Lock held, or no thread of this process yet.) Arm kind at deadline and forget whether
 * it fired; returns whether the thread sleeps past the deadline and must be woken. */
static int set_deadline(struct host_timer *ht, uint32_t kind, uint64_t deadline)
{
    ht->deadline[kind] = deadline;
    __atomic_and_fetch(&ht->fired, ~(1ull << kind), __ATOMIC_ACQ_REL);
    return deadline < ht->sleeping_until;
}

/* Arm kind at host ns deadline (NEVER disarms) and forget whether it fired. The thread
 * is woken only if it sleeps past the new deadline (a wake-up costs a few us; a run
 * arms and disarms several kinds). 0 on success, an errno if the thread cannot start. */
int host_timer_arm(struct host_timer *ht, uint32_t kind, uint64_t deadline)
{
    if (kind >= HOST_TIMER_KINDS)
        return EINVAL;
    if (deadline != NEVER) {
        int error = start_thread(ht);
        if (error)
            return error;
    }
    struct timer_thread *t = ht->thread;
    if (!timer_thread_ours(t)) {       /* nothing armed in this process yet */
        set_deadline(ht, kind, deadline);
        return 0;
    }
    pthread_mutex_lock(&t->lock);
    if (set_deadline(ht, kind, deadline))
        pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* Virtual time jumped ns ahead inside emu_start (a hlt woken in C, _tick_path.c): the next
 * device event, armed at the host time its virtual time had then, comes ns sooner. The run
 * loop's path re-arms it at its next slice; here it moves, and the thread is woken only if
 * it sleeps past it. */
void host_timer_shift_event(struct host_timer *ht, uint64_t ns)
{
    struct timer_thread *t = ht->thread;
    if (!timer_thread_ours(t) || ht->deadline[KIND_EVENT] == NEVER)
        return;
    pthread_mutex_lock(&t->lock);
    uint64_t due = ht->deadline[KIND_EVENT];
    if (due != NEVER && !(__atomic_load_n(&ht->fired, __ATOMIC_ACQUIRE) & (1ull << KIND_EVENT))) {
        ht->deadline[KIND_EVENT] = due > ns ? due - ns : 0;
        if (ht->deadline[KIND_EVENT] < ht->sleeping_until)
            pthread_cond_signal(&t->wake);
    }
    pthread_mutex_unlock(&t->lock);
}

/* A run starts: its wall-clock timeout (NEVER: none) replaces the last run's, and the
 * output watch looks every period until the run ends (the host clears output_watch; the
 * thread then retires the watch at its next look, so a run that follows soon finds it
 * armed), and so do the TLB reviews if on. One call, one lock: a guest call is one run.
 * 0, or an errno. */
int host_timer_start_run(struct host_timer *ht, uint64_t timeout_deadline)
{
    int error = start_thread(ht);
    if (error)
        return error;
    struct timer_thread *t = ht->thread;
    pthread_mutex_lock(&t->lock);
    int wake = set_deadline(ht, KIND_TIMEOUT, timeout_deadline);
    __atomic_store_n(&ht->output_watch, 1, __ATOMIC_RELEASE);
    if (ht->deadline[KIND_OUTPUT] == NEVER)
        ht->deadline[KIND_OUTPUT] = vclock_host_ns() + ht->output_period_ns;
    if (ht->tlb_review_on && ht->deadline[KIND_TLB_REVIEW] == NEVER)
        ht->deadline[KIND_TLB_REVIEW] = next_tlb_review(ht, vclock_host_ns());
    if (wake || ht->deadline[KIND_OUTPUT] < ht->sleeping_until ||
        ht->deadline[KIND_TLB_REVIEW] < ht->sleeping_until)
        pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* Whether kind fired since it was armed; the bit is cleared (the deadline stays: an
 * event or timeout does not fire again until re-armed). */
int host_timer_take(struct host_timer *ht, uint32_t kind)
{
    uint64_t bit = 1ull << kind;
    return (__atomic_fetch_and(&ht->fired, ~bit, __ATOMIC_ACQ_REL) & bit) != 0;
}

/* Stop and free the thread (the machine is closed). */
void host_timer_close(struct host_timer *ht)
{
    timer_thread_close(&ht->thread);
}

uint64_t host_timer_struct_size(void)
{
    return sizeof(struct host_timer);
}
