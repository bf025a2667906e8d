/* The HPET's main counter read in C: the HPET's page is mapped to these callbacks
 * (devices/mmio.py serve_natively) and a read of MAIN_CNT (0x0F0, either half) is
 * answered from the virtual clock, as Hpet.counter computes it, with no Python call.
 * Every other access - and every access while the host watches them (--trace mmio) -
 * goes to the device's own handlers.
 *
 * Why: kernels calibrate their timers by polling the HPET counter; through Python a
 * read cost ~1.3 us of host time, so in deterministic mode, where virtual time moves
 * with instructions, 10 ms of polling took seconds. The device publishes what the
 * counter depends on (running, its value at start, when it started) whenever that
 * changes (cpu/hpet_counter.py). */
#include <stddef.h>
#include <stdint.h>

#include "_vclock.h"

#define MAIN_COUNTER 0x0F0           /* 64-bit register; the guest may read each half */
#define REGISTER_MASK (~(uint64_t)7)
#define NS_PER_TICK 10               /* 100 MHz: GCAP_ID's period of 10,000,000 fs */

typedef uint64_t (*mmio_read_fn)(void *uc, uint64_t offset, unsigned size, void *user);
typedef void (*mmio_write_fn)(void *uc, uint64_t offset, unsigned size, uint64_t value, void *user);

struct hpet_counter {
    struct vclock *clock;
    uint64_t served;                 /* 1: counter reads are answered here             */
    uint64_t running;                /* GEN_CONF ENABLE_CNF                             */
    uint64_t counter_at_start;       /* the counter when it last started (or frozen)   */
    int64_t start_ns;                /* virtual ns it last started at                  */
    uint64_t reads;                  /* reads answered here (statistics)               */
    mmio_read_fn slow_read;          /* the device's handlers                          */
    mmio_write_fn slow_write;
};

static int64_t floor_div(int64_t a, int64_t b)   /* Python's // for b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

uint64_t hpet_counter_read(void *uc, uint64_t offset, unsigned size, void *user)
{
    struct hpet_counter *h = user;
    if (!h->served || (offset & REGISTER_MASK) != MAIN_COUNTER || size > 8)
        return h->slow_read(uc, offset, size, NULL);
    uint64_t value = h->counter_at_start;
    if (h->running)
        value += (uint64_t)floor_div((int64_t)vclock_now_ns(h->clock) - h->start_ns, NS_PER_TICK);
    value >>= 8 * (offset & 7);
    h->reads++;
    return size == 8 ? value : value & ((1ull << (8 * size)) - 1);
}

void hpet_counter_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *user)
{
    struct hpet_counter *h = user;
    h->slow_write(uc, offset, size, value, NULL);
}

uint64_t hpet_counter_struct_size(void)
{
    return sizeof(struct hpet_counter);
}
