/* The host timer's one entry point other C code calls (_host_timer.c has the rest). */
#ifndef UNISIM_HOST_TIMER_H
#define UNISIM_HOST_TIMER_H

#include <stdint.h>

struct host_timer;

/* Virtual time jumped ns ahead (fast mode): the next device event's deadline comes ns
 * sooner in host time. */
void host_timer_shift_event(struct host_timer *ht, uint64_t ns);

#endif
