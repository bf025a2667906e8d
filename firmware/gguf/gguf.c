/* GGUF reading with every length checked against the end of the module. */
#include "gguf/gguf.h"
#include "kernel_lib/io/kprintf.h"
#include "kernel_lib/libc/string.h"

#define NAME_SHOWN_MAX  64        /* characters of a key or tensor name in an error line */
#define MAX_NESTING     2         /* an array of arrays is as deep as GGUF files go */

struct cursor {
    const uint8_t *at;
    const uint8_t *end;
};

/* Bytes of one scalar value of type, or 0 for strings, arrays and unknown types. */
static uint64_t scalar_bytes(uint32_t type)
{
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static int take(struct cursor *c, uint64_t bytes, const uint8_t **out)
{
    if (bytes > (uint64_t)(c->end - c->at))
        return -1;
    *out = c->at;
    c->at += bytes;
    return 0;
}

static int read_u32(struct cursor *c, uint32_t *out)
{
    const uint8_t *p;

    if (take(c, sizeof(*out), &p) != 0)
        return -1;
    memcpy(out, p, sizeof(*out));
    return 0;
}

static int read_u64(struct cursor *c, uint64_t *out)
{
    const uint8_t *p;

    if (take(c, sizeof(*out), &p) != 0)
        return -1;
    memcpy(out, p, sizeof(*out));
    return 0;
}

static int read_string(struct cursor *c, struct gguf_string *out)
{
    const uint8_t *p;

    if (read_u64(c, &out->length) != 0 || take(c, out->length, &p) != 0)
        return -1;
    out->bytes = (const char *)p;
    return 0;
}

/* Skips one value of type (an array: its element type, count and elements). */
static int skip_value(struct cursor *c, uint32_t type, int depth)
{
    struct gguf_string string;
    const uint8_t *p;
    uint32_t element;
    uint64_t count;

    if (type == GGUF_TYPE_STRING)
        return read_string(c, &string);
    if (type != GGUF_TYPE_ARRAY)
        return scalar_bytes(type) ? take(c, scalar_bytes(type), &p) : -1;
    if (depth >= MAX_NESTING || read_u32(c, &element) != 0 || read_u64(c, &count) != 0)
        return -1;
    if (scalar_bytes(element))
        return count > (uint64_t)(c->end - c->at) / scalar_bytes(element) ? -1
                                                                         : take(c, count * scalar_bytes(element), &p);
    for (uint64_t i = 0; i < count; i++)
        if (skip_value(c, element, depth + 1) != 0)
            return -1;
    return 0;
}

/* name as a terminated, shortened copy for an error line */
static const char *shown(struct gguf_string name, char *buffer)
{
    uint64_t length = name.length < NAME_SHOWN_MAX ? name.length : NAME_SHOWN_MAX;

    for (uint64_t i = 0; i < length; i++)
        buffer[i] = name.bytes[i] >= ' ' && name.bytes[i] <= '~' ? name.bytes[i] : '?';
    buffer[length] = 0;
    return buffer;
}

int gguf_string_equals(struct gguf_string string, const char *text)
{
    return strlen(text) == string.length && memcmp(string.bytes, text, string.length) == 0;
}

uint64_t ggml_row_bytes(uint32_t type, uint64_t n)
{
    switch (type) {
    case GGML_TYPE_F32: return 4 * n;
    case GGML_TYPE_F16: return 2 * n;
    case GGML_TYPE_Q4_1: return n % 32 ? 0 : n / 32 * 20;   /* f16 d, f16 m, 16 bytes of nibbles */
    case GGML_TYPE_Q8_0: return n % 32 ? 0 : n / 32 * 34;   /* f16 d, 32 int8 */
    default: return 0;
    }
}

const char *ggml_type_name(uint32_t type)
{
    static const char *const names[] = {"F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0",
                                        "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"};
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "an unknown type";
}

static int failed(struct gguf_file *file, const char *what, struct gguf_string name, uint64_t offset)
{
    char buffer[NAME_SHOWN_MAX + 1];

    ksnprintf(file->error, sizeof(file->error), "%s '%s' (file offset %lu)", what, shown(name, buffer),
              (unsigned long)offset);
    return -1;
}

static int open_metadata(struct gguf_file *file, struct cursor *c)
{
    struct gguf_string key = {0, ""};
    uint32_t type;

    file->metadata = c->at;
    for (uint64_t i = 0; i < file->n_metadata; i++) {
        uint64_t at = (uint64_t)(c->at - file->base);
        if (i < GGUF_INDEXED_ENTRIES)
            file->entries[i] = c->at;
        if (read_string(c, &key) != 0 || read_u32(c, &type) != 0)
            return failed(file, "gguf: the file ends inside the metadata key after", key, at);
        if (type >= GGUF_TYPE_COUNT)
            return failed(file, "gguf: unknown value type in metadata key", key, at);
        if (skip_value(c, type, 0) != 0)
            return failed(file, "gguf: the file ends inside the value of metadata key", key, at);
        if (gguf_string_equals(key, "general.alignment")) {
            uint32_t alignment;
            memcpy(&alignment, c->at - sizeof(alignment), sizeof(alignment));
            if (type != GGUF_TYPE_UINT32 || alignment == 0 || (alignment & (alignment - 1)))
                return failed(file, "gguf: general.alignment is not a power-of-two u32 in", key, at);
            file->alignment = alignment;
        }
    }
    return 0;
}

/* One tensor info at c: name, shape, type, offset. */
static int read_tensor_info(struct cursor *c, struct gguf_tensor *t)
{
    uint64_t offset;

    if (read_string(c, &t->name) != 0 || read_u32(c, &t->n_dims) != 0 || t->n_dims == 0
        || t->n_dims > GGUF_MAX_DIMS)
        return -1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t->dims[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (read_u64(c, &t->dims[d]) != 0)
            return -1;
    if (read_u32(c, &t->type) != 0 || read_u64(c, &offset) != 0)
        return -1;
    t->data = (const void *)(uintptr_t)offset;       /* relative until checked */
    return 0;
}

/* Elements of t, or 0 if a dimension is 0 or the product overflows. */
static uint64_t element_count(const struct gguf_tensor *t)
{
    uint64_t count = 1;

    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        if (t->dims[d] == 0 || count > UINT64_MAX / t->dims[d])
            return 0;
        count *= t->dims[d];
    }
    return count;
}

/* Fills t->bytes and makes t->data absolute, checked against the data section. */
static int place_tensor(struct gguf_file *file, struct gguf_tensor *t)
{
    uint64_t offset = (uint64_t)(uintptr_t)t->data, section = file->size - (uint64_t)(file->data - file->base);
    uint64_t row = ggml_row_bytes(t->type, t->dims[0]), rows = element_count(t) / t->dims[0];

    if (element_count(t) == 0)
        return failed(file, "gguf: empty or overflowing shape of tensor", t->name, offset);
    if (row == 0) {
        char what[GGUF_ERROR_MAX];
        ksnprintf(what, sizeof(what), "gguf: type %s (%u) is not supported (F32, F16, Q4_1, Q8_0 are) in tensor",
                  ggml_type_name(t->type), t->type);
        return failed(file, what, t->name, offset);
    }
    if (offset % file->alignment)
        return failed(file, "gguf: data not aligned to general.alignment in tensor", t->name, offset);
    if (rows > UINT64_MAX / row || offset > section || rows * row > section - offset)
        return failed(file, "gguf: data past the end of the file in tensor", t->name, offset);
    t->bytes = rows * row;
    t->data = file->data + offset;
    return 0;
}

int gguf_open(struct gguf_file *file, const void *base, uint64_t size)
{
    struct cursor c = {base, (const uint8_t *)base + size};
    struct gguf_tensor tensor;
    uint32_t magic;
    uint64_t header_end;

    memset(file, 0, sizeof(*file));
    file->base = base;
    file->size = size;
    file->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (read_u32(&c, &magic) != 0 || magic != GGUF_MAGIC) {
        ksnprintf(file->error, sizeof(file->error), "gguf: not a GGUF file (no \"GGUF\" magic in its first 4 bytes)");
        return -1;
    }
    if (read_u32(&c, &file->version) != 0 || read_u64(&c, &file->n_tensors) != 0
        || read_u64(&c, &file->n_metadata) != 0) {
        ksnprintf(file->error, sizeof(file->error), "gguf: the file ends inside its 24-byte header");
        return -1;
    }
    if (file->version < 2 || file->version > 3) {
        ksnprintf(file->error, sizeof(file->error), "gguf: version %u is not supported (2 and 3 are)", file->version);
        return -1;
    }
    if (open_metadata(file, &c) != 0)
        return -1;
    file->tensor_infos = c.at;
    for (uint64_t i = 0; i < file->n_tensors; i++) {
        struct gguf_string none = {0, ""};
        if (read_tensor_info(&c, &tensor) != 0)
            return failed(file, "gguf: the file ends inside (or a bad rank in) the tensor info after",
                          i ? tensor.name : none, (uint64_t)(c.at - file->base));
    }
    header_end = (uint64_t)(c.at - file->base);
    header_end = (header_end + file->alignment - 1) & ~(file->alignment - 1);
    if (header_end > size) {
        ksnprintf(file->error, sizeof(file->error), "gguf: the file ends before its data section (%lu bytes)",
                  (unsigned long)header_end);
        return -1;
    }
    file->data = file->base + header_end;
    c.at = file->tensor_infos;
    for (uint64_t i = 0; i < file->n_tensors; i++)   /* every tensor's data checked now, not when used */
        if (read_tensor_info(&c, &tensor) != 0 || place_tensor(file, &tensor) != 0)
            return -1;
    return 0;
}

/* The value of key: its type and a cursor on its bytes. Returns 0, or -1. */
static int find_key(const struct gguf_file *file, const char *key, uint32_t *type, struct cursor *value)
{
    struct cursor c = {file->metadata, file->base + file->size};
    struct gguf_string name;

    for (uint64_t i = 0; i < file->n_metadata; i++) {
        if (i < GGUF_INDEXED_ENTRIES)
            c.at = file->entries[i];
        read_string(&c, &name);                     /* checked by gguf_open */
        read_u32(&c, type);
        *value = c;
        if (gguf_string_equals(name, key))
            return 0;
        if (i + 1 >= GGUF_INDEXED_ENTRIES)          /* past the index: walk to the next entry */
            skip_value(&c, *type, 0);
    }
    return -1;
}

int gguf_has_key(const struct gguf_file *file, const char *key)
{
    uint32_t type;
    struct cursor value;

    return find_key(file, key, &type, &value) == 0;
}

static int key_failed(struct gguf_file *file, const char *what, const char *key)
{
    ksnprintf(file->error, sizeof(file->error), "gguf: metadata key '%s' %s", key, what);
    return -1;
}

int gguf_get_uint(struct gguf_file *file, const char *key, uint64_t *out)
{
    struct cursor value;
    uint32_t type;
    int64_t signed_value = 0;

    if (find_key(file, key, &type, &value) != 0)
        return key_failed(file, "is missing", key);
    switch (type) {
    case GGUF_TYPE_UINT8: *out = *value.at; return 0;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, value.at, 2); *out = v; return 0; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, value.at, 4); *out = v; return 0; }
    case GGUF_TYPE_UINT64: memcpy(out, value.at, 8); return 0;
    case GGUF_TYPE_INT8: signed_value = (int8_t)*value.at; break;
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, value.at, 2); signed_value = v; break; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, value.at, 4); signed_value = v; break; }
    case GGUF_TYPE_INT64: memcpy(&signed_value, value.at, 8); break;
    default: return key_failed(file, "is not an integer", key);
    }
    if (signed_value < 0)
        return key_failed(file, "is negative", key);
    *out = (uint64_t)signed_value;
    return 0;
}

int gguf_get_float(struct gguf_file *file, const char *key, float *out)
{
    struct cursor value;
    uint32_t type;

    if (find_key(file, key, &type, &value) != 0)
        return key_failed(file, "is missing", key);
    if (type == GGUF_TYPE_FLOAT32) {
        memcpy(out, value.at, 4);
    } else if (type == GGUF_TYPE_FLOAT64) {
        double v;
        memcpy(&v, value.at, 8);
        *out = (float)v;
    } else {
        return key_failed(file, "is not a float", key);
    }
    return 0;
}

int gguf_get_string(struct gguf_file *file, const char *key, struct gguf_string *out)
{
    struct cursor value;
    uint32_t type;

    if (find_key(file, key, &type, &value) != 0)
        return key_failed(file, "is missing", key);
    if (type != GGUF_TYPE_STRING)
        return key_failed(file, "is not a string", key);
    return read_string(&value, out);
}

int gguf_get_array(struct gguf_file *file, const char *key, enum gguf_value_type type, struct gguf_array *out)
{
    struct cursor value;
    uint32_t kind, element;

    if (find_key(file, key, &kind, &value) != 0)
        return key_failed(file, "is missing", key);
    if (kind != GGUF_TYPE_ARRAY || read_u32(&value, &element) != 0 || element != (uint32_t)type)
        return key_failed(file, "is not an array of the expected type", key);
    read_u64(&value, &out->count);
    out->type = type;
    out->first = value.at;
    return 0;
}

const uint8_t *gguf_next_string(const uint8_t *cursor, struct gguf_string *out)
{
    memcpy(&out->length, cursor, sizeof(out->length));
    out->bytes = (const char *)cursor + sizeof(out->length);
    return cursor + sizeof(out->length) + out->length;
}

/* The info of tensor name, data still relative. Returns 0, or -1 if absent. */
static int find_tensor(const struct gguf_file *file, const char *name, struct gguf_tensor *out)
{
    struct cursor c = {file->tensor_infos, file->data};

    for (uint64_t i = 0; i < file->n_tensors; i++) {
        read_tensor_info(&c, out);                  /* checked by gguf_open */
        if (gguf_string_equals(out->name, name))
            return 0;
    }
    return -1;
}

int gguf_has_tensor(const struct gguf_file *file, const char *name)
{
    struct gguf_tensor tensor;

    return find_tensor(file, name, &tensor) == 0;
}

int gguf_get_tensor(struct gguf_file *file, const char *name, struct gguf_tensor *out)
{
    if (find_tensor(file, name, out) == 0)
        return place_tensor(file, out);
    ksnprintf(file->error, sizeof(file->error), "gguf: tensor '%s' is missing", name);
    return -1;
}
