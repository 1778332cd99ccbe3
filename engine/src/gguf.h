/*
 * gguf.h - a bounds-checked reader for GGUF v2/v3 files.
 *
 * The file is mmap'ed read-only; the parser walks the header with a cursor
 * that never reads past the mapping, records metadata and tensor infos, and
 * checks every tensor's extent against the file size. Nothing is copied.
 */
#ifndef QWEN_GGUF_H
#define QWEN_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum gguf_vtype {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3,
    GGUF_UINT32 = 4, GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7,
    GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12, GGUF_VTYPE_COUNT
};

typedef struct {
    const char *ptr;   /* not NUL-terminated */
    uint64_t    len;
} gguf_str;

typedef struct {
    gguf_str    key;
    uint32_t    type;
    uint32_t    arr_type;   /* element type when type == GGUF_ARRAY */
    uint64_t    arr_count;
    const void *data;       /* scalar value, or first array element */
} gguf_kv;

typedef struct {
    gguf_str    name;
    uint32_t    n_dims;
    uint64_t    ne[4];
    uint32_t    type;
    uint64_t    offset;     /* from the start of the data section */
    const void *data;
    uint64_t    n_bytes;
} gguf_tensor;

typedef struct {
    const char    *path;
    const uint8_t *base;
    size_t         size;
    uint32_t       version;
    uint64_t       n_kv;
    uint64_t       n_tensors;
    gguf_kv       *kv;
    gguf_tensor   *tensors;
    size_t         alignment;
    size_t         data_offset;
} gguf_file;

/* Parse an already mapped file. On error fills err and returns -1. */
int  qwen_gguf_parse(gguf_file *f, const char *path, const void *base, size_t size,
                char *err, size_t err_len);
void qwen_gguf_release(gguf_file *f);

const gguf_kv     *qwen_gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *qwen_gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed getters: 0 on success, -1 with a message when absent or mistyped. */
int qwen_gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out,
                 char *err, size_t err_len);
int qwen_gguf_get_f32(const gguf_file *f, const char *key, float *out,
                 char *err, size_t err_len);
/* Iterate the strings of a string array: returns the next string, advances *cursor. */
gguf_str qwen_gguf_array_next_str(const void **cursor);

#endif
