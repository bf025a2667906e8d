/* The timer threads' life cycle (_timer_thread.h): one place for starting a thread on
 * a monotonic condition variable, sleeping on it and joining it. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "_timer_thread.h"
#include "_vclock.h"

int timer_thread_ours(const struct timer_thread *t)
{
    return t != NULL && t->owner == vclock_process();
}

int timer_thread_start(struct timer_thread **slot, void *(*main)(void *), void *argument)
{
    pthread_condattr_t attributes;
    if (timer_thread_ours(*slot))
        return 0;
    struct timer_thread *t = calloc(1, sizeof *t);   /* after a fork the parent's is not ours */
    if (t == NULL)
        return ENOMEM;
    t->owner = vclock_process();
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &attributes);
    pthread_condattr_destroy(&attributes);
    *slot = t;
    int error = pthread_create(&t->thread, NULL, main, argument);
    if (error) {
        *slot = NULL;
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->wake);
        free(t);
    }
    return error;
}

void timer_thread_sleep(struct timer_thread *t, uint64_t until)
{
    if (until == UINT64_MAX) {
        pthread_cond_wait(&t->wake, &t->lock);
        return;
    }
    struct timespec at = {(time_t)(until / 1000000000ull), (long)(until % 1000000000ull)};
    pthread_cond_timedwait(&t->wake, &t->lock, &at);
}

void timer_thread_close(struct timer_thread **slot)
{
    struct timer_thread *t = *slot;
    if (!timer_thread_ours(t))
        return;
    pthread_mutex_lock(&t->lock);
    t->quit = 1;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    *slot = NULL;
    free(t);
}

/* Called by a timer thread after it woke: if it runs on cpu (where the guest's thread ran
 * last) and the process may run elsewhere, move this thread elsewhere for good. A wake on
 * the guest's CPU preempts the guest: with both on one CPU a 10 kHz tick cost the guest
 * ~30 us of its time each instead of ~1 (docs/performance.md); the scheduler does put them
 * together now and then. The allowed CPUs are the ones the thread had at its first call
 * (the process's, when it started). */
void timer_thread_avoid_cpu(int64_t cpu)
{
    static __thread cpu_set_t allowed;
    static __thread int allowed_known;  /* 1: read, -1: unreadable */
    if (!allowed_known)
        allowed_known = sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? 1 : -1;
    if (allowed_known < 0 || cpu < 0 || cpu >= CPU_SETSIZE || sched_getcpu() != cpu)
        return;
    cpu_set_t elsewhere = allowed;
    CPU_CLR((int)cpu, &elsewhere);
    if (CPU_COUNT(&elsewhere) > 0)
        sched_setaffinity(0, sizeof elsewhere, &elsewhere);
}
