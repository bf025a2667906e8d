/* Port I/O in C for the accesses that come by the thousand: COM1, and port 0x61.
 *
 * A kernel prints by polling LSR until THRE is set and writing THR, two port
 * instructions per byte. Through Python hooks that is ~1 us each (0.4 MB/s);
 * here, while the UART is in its plain state (no DLAB, no loopback, no THRE
 * interrupt, nothing received, no line error: the UART tells us, see
 * fast_ports.py), an LSR read returns the value the UART published and a THR
 * write appends the byte to a buffer that Python drains in chunks. Every other
 * access - other ports, and COM1 in any other state - goes to the Python
 * handlers (slow_in/slow_out), which first drain the buffer, so the order of
 * output on the host is the order the guest wrote it.
 *
 * Port 0x61 (the PIT's channel 2 output, the refresh toggle): a kernel calibrating
 * its TSC polls it for 10 ms or so, ~10,000 reads in deterministic mode (each takes
 * io_ns). The PIT publishes at each read it serves what such a read returns, the
 * refresh bit aside, and from when until when (i8254.py, output_steady_until); any
 * port write, reset or change by a restore withdraws it. Reads inside that span
 * are served here, the refresh bit from the time of the read, as Python computes it.
 *
 * Deterministic mode: a port access takes io_ns of virtual time, as in
 * Python (runloop.py, IO_ACCESS_NS); the next device stop is re-armed here the
 * way RunLoop._arm would (the instruction at which the next device event falls
 * due; the budget is the clock's own budget_at), and when that event is due the
 * access takes the Python path instead, which delivers it. */
#include <stddef.h>
#include <stdint.h>
#include "_tick_path.h"
#include "_vclock.h"

#define PIC_MASTER_COMMAND 0x20
#define PORT_B_REFRESH 0x10           /* port 0x61 bit 4: toggles every refresh period */

#define NEVER UINT64_MAX

typedef uint32_t (*in_fn)(void *uc, uint32_t port, int size, void *user);
typedef void (*out_fn)(void *uc, uint32_t port, int size, uint32_t value, void *user);
typedef void (*flush_fn)(void);

struct fast_ports {
    struct vclock *clock;
    uint64_t thr_port;                /* COM1 transmit holding register                    */
    uint64_t lsr_port;                /* COM1 line status register                         */
    uint64_t tx_ok;                   /* 1: a THR write is nothing but a byte out          */
    uint64_t lsr_ok;                  /* 1: an LSR read returns lsr_value, no side effect  */
    uint64_t lsr_value;
    uint64_t io_ns;                   /* deterministic mode: virtual ns per port access    */
    uint64_t length;                  /* bytes in buffer                                   */
    uint64_t capacity;
    uint8_t *buffer;
    in_fn slow_in;
    out_fn slow_out;
    flush_fn flush;
    uint64_t fast_accesses;           /* accesses served here (statistics)                 */
    uint64_t port_b;                  /* 0x61                                              */
    uint64_t port_b_ok;               /* 1: port_b_value holds in [since, until)            */
    uint64_t port_b_value;            /* what a read returns, the refresh bit aside         */
    uint64_t port_b_since_ns, port_b_until_ns;   /* virtual ns; until NEVER: no end        */
    uint64_t refresh_period_ns;       /* the refresh bit's half period                     */
};

/* Deterministic mode: charge the access, re-arm the stop. 0: an event falls due,
 * take the Python path. */
static int charge(struct fast_ports *fp)
{
    struct vclock *vc = fp->clock;
    if (!vc->deterministic)
        return 1;
    struct tick_path *tick = vc->tick;
    uint64_t now = vclock_now_ns(vc);
    if (now + fp->io_ns >= vc->event_ns)
        return 0;
    if (tick != NULL && tick->live && (int64_t)(now + fp->io_ns) >= tick->next_edge_ns)
        return 0;                     /* the PIT's edge falls due during the access: the run loop */
    vclock_jump(vc, fp->io_ns);       /* the next device stop re-armed; the budget is budget_at */
    if (tick != NULL)
        tick_path_rearm(tick);        /* time moved: the edge is fewer instructions away */
    return 1;
}

/* A port 0x61 read, if the published value holds at the time the read happens (in
 * deterministic mode, after its io_ns). Returns 0 if Python must serve it. */
static int read_port_b(struct fast_ports *fp, uint32_t *value)
{
    struct vclock *vc = fp->clock;
    uint64_t at = vclock_now_ns(vc) + (vc->deterministic ? fp->io_ns : 0);
    if (at < fp->port_b_since_ns || at >= fp->port_b_until_ns || !charge(fp))
        return 0;
    *value = (uint32_t)fp->port_b_value | ((at / fp->refresh_period_ns) & 1 ? PORT_B_REFRESH : 0);
    return 1;
}

uint32_t fast_ports_in(void *uc, uint32_t port, int size, void *user_data)
{
    struct fast_ports *fp = user_data;
    uint32_t value;
    if (port == fp->lsr_port && size == 1 && fp->lsr_ok && charge(fp)) {
        fp->fast_accesses++;
        return (uint32_t)fp->lsr_value;
    }
    if (port == fp->port_b && size == 1 && fp->port_b_ok && read_port_b(fp, &value)) {
        fp->fast_accesses++;
        return value;
    }
    return fp->slow_in(uc, port, size, NULL);
}

void fast_ports_out(void *uc, uint32_t port, int size, uint32_t value, void *user_data)
{
    struct fast_ports *fp = user_data;
    if (port == fp->thr_port && size == 1 && fp->tx_ok && charge(fp)) {
        fp->fast_accesses++;
        fp->buffer[fp->length++] = (uint8_t)value;
        if (fp->length == fp->capacity)
            fp->flush();
        return;
    }
    /* the timer handler's EOI, while the tick path owns the 8259 master (_tick_path.c) */
    if (port == PIC_MASTER_COMMAND && size == 1 && fp->clock->tick != NULL &&
        tick_path_takes_end_of_interrupt(fp->clock->tick, value & 0xFF) && charge(fp)) {
        tick_path_end_of_interrupt(fp->clock->tick, value & 0xFF);
        fp->fast_accesses++;
        return;
    }
    fp->slow_out(uc, port, size, value, NULL);
}

uint64_t fast_ports_struct_size(void)
{
    return sizeof(struct fast_ports);
}
