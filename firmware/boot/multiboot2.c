/* Walking the Multiboot2 boot information (specification section 3.6). */
#include "boot/multiboot2.h"
#include "kernel_lib/libc/string.h"

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

int mb2_find_module(const struct mb2_info *info, const char *name, const void **data, uint64_t *size)
{
    size_t length = strlen(name);

    for (const struct mb2_tag *tag = mb2_first_tag(info); tag && tag->type != MB2_TAG_TYPE_END;
         tag = mb2_next_tag(info, tag)) {
        const struct mb2_tag_module *module = (const struct mb2_tag_module *)tag;
        if (tag->type != MB2_TAG_TYPE_MODULE || strncmp(module->cmdline, name, length) != 0
            || (module->cmdline[length] != 0 && module->cmdline[length] != ' '))
            continue;
        *data = (const void *)(uintptr_t)module->mod_start;
        *size = module->mod_end - module->mod_start;
        return 0;
    }
    return -1;
}
