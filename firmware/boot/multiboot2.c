/* Walking the Multiboot2 boot information (specification section 3.6). */
#include "boot/multiboot2.h"

static uintptr_t align_up(uintptr_t value, uintptr_t alignment)
{
    return (value + alignment - 1) & ~(alignment - 1);
}

const struct mb2_tag *mb2_first_tag(const struct mb2_info *info)
{
    return (const struct mb2_tag *)((uintptr_t)info + sizeof(*info));
}

const struct mb2_tag *mb2_next_tag(const struct mb2_info *info, const struct mb2_tag *tag)
{
    uintptr_t end = (uintptr_t)info + info->total_size;
    uintptr_t next;

    if (tag->type == MB2_TAG_TYPE_END || tag->size < sizeof(*tag))
        return 0;
    next = align_up((uintptr_t)tag + tag->size, MB2_TAG_ALIGN);
    if (next + sizeof(struct mb2_tag) > end)
        return 0;
    return (const struct mb2_tag *)next;
}

const struct mb2_tag *mb2_find_tag(const struct mb2_info *info, uint32_t type)
{
    const struct mb2_tag *tag;

    for (tag = mb2_first_tag(info); tag; tag = mb2_next_tag(info, tag))
        if (tag->type == type)
            return tag;
    return 0;
}
