/* A GGUF file (version 2 or 3) read in place: header, metadata and tensor
 * infos are checked once by gguf_open(), then looked up by name. Nothing is
 * copied: keys, strings and tensor data stay in the module.
 *
 * Layout (all little-endian): "GGUF", u32 version, u64 tensor count, u64
 * metadata count; metadata entries (string key, u32 type, value); tensor infos
 * (string name, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset); padding to
 * general.alignment (default 32); the data section, each tensor at its offset.
 * A string is a u64 length and that many bytes (not terminated). */
#ifndef GGUF_GGUF_H
#define GGUF_GGUF_H
#include <stdint.h>

#define GGUF_MAGIC              0x46554747u   /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT  32
#define GGUF_MAX_DIMS           4
#define GGUF_ERROR_MAX          160
#define GGUF_INDEXED_ENTRIES    128   /* metadata entries found without walking the ones before */

enum gguf_value_type {          /* metadata value types */
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

enum ggml_type {                /* tensor types this firmware computes with */
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q8_0 = 8,
};

struct gguf_string {
    uint64_t length;
    const char *bytes;          /* not terminated */
};

struct gguf_array {
    enum gguf_value_type type;  /* of the elements */
    uint64_t count;
    const uint8_t *first;       /* the first element's bytes */
};

struct gguf_tensor {
    struct gguf_string name;
    uint32_t type;              /* enum ggml_type, or another ggml type number */
    uint32_t n_dims;
    uint64_t dims[GGUF_MAX_DIMS]; /* dims[0] varies fastest (a row's length) */
    uint64_t bytes;
    const void *data;           /* inside the module, aligned */
};

struct gguf_file {
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    uint64_t n_tensors;
    uint64_t n_metadata;
    uint64_t alignment;
    const uint8_t *metadata;    /* the first metadata entry */
    const uint8_t *entries[GGUF_INDEXED_ENTRIES]; /* where each entry starts (the first ones): a
                                                   * lookup does not walk the 100,000 strings of a
                                                   * tokenizer's arrays again */
    const uint8_t *tensor_infos;
    const uint8_t *data;        /* the data section */
    char error[GGUF_ERROR_MAX]; /* why the last call failed, one line */
};

/* Checks the whole header of the module [base, base + size): every string,
 * array and tensor info inside the file, every tensor's data inside the data
 * section and aligned. Returns 0, or -1 with file->error saying what and where. */
int gguf_open(struct gguf_file *file, const void *base, uint64_t size);

/* Each lookup returns 0, or -1 with file->error naming the key (missing, or of
 * another type). Integers of any integer type are accepted when they fit. */
int gguf_get_uint(struct gguf_file *file, const char *key, uint64_t *out);
int gguf_get_float(struct gguf_file *file, const char *key, float *out);
int gguf_get_string(struct gguf_file *file, const char *key, struct gguf_string *out);
int gguf_get_array(struct gguf_file *file, const char *key, enum gguf_value_type type, struct gguf_array *out);
int gguf_has_key(const struct gguf_file *file, const char *key);

/* Reads the string at cursor (inside an array gguf_open checked: strings have
 * variable length, so a caller walks them in order). Returns the next cursor. */
const uint8_t *gguf_next_string(const uint8_t *cursor, struct gguf_string *out);

/* The tensor called name. Returns 0, or -1 with file->error naming the tensor. */
int gguf_get_tensor(struct gguf_file *file, const char *name, struct gguf_tensor *out);
int gguf_has_tensor(const struct gguf_file *file, const char *name);

/* Bytes of one row of n elements of type, or 0 if the type is not computed here
 * or n is not a whole number of its blocks. */
uint64_t ggml_row_bytes(uint32_t type, uint64_t n);

const char *ggml_type_name(uint32_t type);

int gguf_string_equals(struct gguf_string string, const char *text);

#endif
