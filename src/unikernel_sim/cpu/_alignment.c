/* The SSE alignment guard's check, in C: hardware raises #GP(0) for a movaps,
 * movdqa or legacy-SSE arithmetic instruction whose m128 operand is not 16-byte
 * aligned (SDM vol. 1 11.4.1, vol. 2 "Exceptions" of each instruction); Unicorn
 * 2.1.4 executes it. The host decodes the kernel's functions at load time and
 * hands the register-addressed operands here: align_hook is a native code hook
 * on each site (fast mode), and the counting hook calls align_check for
 * addresses whose bit is set (deterministic mode, where one-address hooks would
 * slow every instruction). A misaligned operand stops emulation before the
 * instruction runs; the host then delivers the #GP or records it. */
#include <stdint.h>

#include "_alignment.h"

static const struct align_site *find_site(const struct align_table *t, uint64_t address)
{
    uint64_t low = 0, high = t->count;
    while (low < high) {
        uint64_t middle = (low + high) / 2;
        if (t->sites[middle].address < address)
            low = middle + 1;
        else
            high = middle;
    }
    return low < t->count && t->sites[low].address == address ? &t->sites[low] : 0;
}

static uint64_t read_register(void *uc, const struct align_table *t, int64_t reg)
{
    uint64_t value = 0;
    if (reg)
        t->reg_read(uc, (int)reg, &value);
    return value;
}

int align_check(void *uc, struct align_table *t, uint64_t address)
{
    const struct align_site *site = find_site(t, address);
    uint64_t operand;

    if (!site)
        return 0;
    t->checked++;
    operand = read_register(uc, t, site->base_reg) + read_register(uc, t, site->index_reg) * site->scale
              + (uint64_t)site->displacement;
    operand = (operand & site->address_mask) + read_register(uc, t, site->segment_base_reg);
    if ((operand & 15) == 0)
        return 0;
    if (t->skip_address == address) {
        t->skip_address = UINT64_MAX;     /* reported by the host: this time it runs */
        return 0;
    }
    t->hit_address = address;
    t->hit_operand = operand;
    t->emu_stop(uc);
    return 1;
}

void align_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    (void)size;
    align_check(uc, user_data, address);
}
