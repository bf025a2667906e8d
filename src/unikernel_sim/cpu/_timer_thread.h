/* struct timer_thread: a thread of our own that sleeps on a CLOCK_MONOTONIC condition
 * variable and never takes the GIL (the tick path's and the host timer's). It belongs to
 * the process that started it: a forked child starts its own instead of using a thread
 * it does not have. */
#ifndef UNISIM_TIMER_THREAD_H
#define UNISIM_TIMER_THREAD_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

struct timer_thread {
    pthread_t thread;
    pthread_mutex_t lock;              /* held by the thread except while it sleeps */
    pthread_cond_t wake;               /* on CLOCK_MONOTONIC */
    int quit;
    pid_t owner;
};

/* Start a thread running main(argument) into *slot, unless this process's is there
 * already. *slot is set before the thread runs. 0 on success, else an errno. */
int timer_thread_start(struct timer_thread **slot, void *(*main)(void *), void *argument);

/* Whether t is a thread this process started (a parent's, after a fork, is not). */
int timer_thread_ours(const struct timer_thread *t);

/* (Lock held.) Sleep until the CLOCK_MONOTONIC ns `until`, or until woken; UINT64_MAX:
 * until woken. */
void timer_thread_sleep(struct timer_thread *t, uint64_t until);

/* Stop, join and free this process's thread in *slot, and clear the slot. */
void timer_thread_close(struct timer_thread **slot);

/* From the thread itself: move off cpu (the guest's, -1: unknown) if it runs there. */
void timer_thread_avoid_cpu(int64_t cpu);


#endif
