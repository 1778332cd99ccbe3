/*
 * gguf.c - GGUF header parser. Every read goes through a cursor that checks
 * the remaining bytes first, and every count is checked against what the
 * file could possibly hold, so a truncated or hostile file is an error
 * message, never an out-of-bounds read or a huge allocation.
 */
#include "gguf.h"
#include "quant.h"
#include "errors.h"
#include "qwen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC          0x46554747u   /* "GGUF" little endian */
#define GGUF_DEFAULT_ALIGN  32
#define GGUF_MAX_DIMS       4

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

static int
take(cursor *c, void *out, size_t n)
{
    if ((size_t) (c->end - c->p) < n) {
        return -1;
    }
    memcpy(out, c->p, n);
    c->p += n;
    return 0;
}

static int
take_str(cursor *c, gguf_str *s)
{
    uint64_t len;

    if (take(c, &len, 8) != 0 || len > (uint64_t) (c->end - c->p)) {
        return -1;
    }
    s->ptr = (const char *) c->p;
    s->len = len;
    c->p += len;
    return 0;
}

static size_t
scalar_size(uint32_t t)
{
    switch (t) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Skip over a value of type t, checking bounds; strings and arrays nest. */
static int
skip_value(cursor *c, uint32_t t, gguf_kv *kv, int depth)
{
    size_t   sz;
    uint32_t at;
    uint64_t count, i;
    gguf_str s;

    if (t == GGUF_STRING) {
        return take_str(c, &s);
    }
    if (t == GGUF_ARRAY) {
        if (depth > 2 || take(c, &at, 4) != 0 || take(c, &count, 8) != 0) {
            return -1;
        }
        if (at >= GGUF_VTYPE_COUNT) {
            return -1;
        }
        if (kv != NULL) {
            kv->arr_type = at;
            kv->arr_count = count;
            kv->data = c->p;
        }
        if (at == GGUF_STRING || at == GGUF_ARRAY) {
            /* each element takes at least 8 bytes: reject absurd counts early */
            if (count > (uint64_t) (c->end - c->p) / 8) {
                return -1;
            }
            for (i = 0; i < count; i++) {
                if (skip_value(c, at, NULL, depth + 1) != 0) {
                    return -1;
                }
            }
            return 0;
        }
        sz = scalar_size(at);
        if (sz == 0 || count > (uint64_t) (c->end - c->p) / sz) {
            return -1;
        }
        c->p += count * sz;
        return 0;
    }
    sz = scalar_size(t);
    if (sz == 0 || (size_t) (c->end - c->p) < sz) {
        return -1;
    }
    c->p += sz;
    return 0;
}

static int
str_eq(gguf_str s, const char *z)
{
    size_t n = strlen(z);
    return s.len == n && memcmp(s.ptr, z, n) == 0;
}

int
qwen_gguf_parse(gguf_file *f, const char *path, const void *base, size_t size,
           char *err, size_t err_len)
{
    cursor    c;
    uint32_t  magic, align32;
    uint64_t  i, j, nel, nbytes, bs;
    size_t    hdr_end;
    gguf_kv  *kv;
    gguf_tensor *t;
    const gguf_kv *akv;

    memset(f, 0, sizeof(*f));
    f->path = path;
    f->base = base;
    f->size = size;
    c.p = base;
    c.end = (const uint8_t *) base + size;

    if (take(&c, &magic, 4) != 0 || magic != GGUF_MAGIC) {
        return qwen_fail(err, err_len, "%s: not a GGUF file (wrong magic)", path);
    }
    if (take(&c, &f->version, 4) != 0) {
        return qwen_fail(err, err_len, "%s: truncated GGUF header", path);
    }
    if (f->version != 2 && f->version != 3) {
        return qwen_fail(err, err_len, "%s: unsupported GGUF version %u (need 2 or 3)", path,
                    f->version);
    }
    if (take(&c, &f->n_tensors, 8) != 0 || take(&c, &f->n_kv, 8) != 0) {
        return qwen_fail(err, err_len, "%s: truncated GGUF header", path);
    }
    /* a KV pair needs at least 12 bytes and a tensor info at least 28 */
    if (f->n_kv > size / 12 || f->n_tensors > size / 28) {
        return qwen_fail(err, err_len, "%s: absurd counts in header: %llu tensors, %llu metadata keys "
                    "for a file of %zu bytes", path, (unsigned long long) f->n_tensors,
                    (unsigned long long) f->n_kv, size);
    }

    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof(gguf_kv));
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof(gguf_tensor));
    if (f->kv == NULL || f->tensors == NULL) {
        qwen_fail(err, err_len, "%s: out of memory reading the header", path);
        qwen_gguf_release(f);
        return -1;
    }

    for (i = 0; i < f->n_kv; i++) {
        kv = &f->kv[i];
        if (take_str(&c, &kv->key) != 0 || take(&c, &kv->type, 4) != 0) {
            qwen_fail(err, err_len, "%s: truncated metadata at key %llu", path,
                        (unsigned long long) i);
            qwen_gguf_release(f);
            return -1;
        }
        if (kv->type >= GGUF_VTYPE_COUNT) {
            qwen_fail(err, err_len, "%s: metadata key '%.*s' has unknown type %u", path,
                        (int) kv->key.len, kv->key.ptr, kv->type);
            qwen_gguf_release(f);
            return -1;
        }
        kv->data = c.p;
        if (skip_value(&c, kv->type, kv, 0) != 0) {
            qwen_fail(err, err_len, "%s: metadata key '%.*s' runs past the end of the file or is malformed", path,
                        (int) kv->key.len, kv->key.ptr);
            qwen_gguf_release(f);
            return -1;
        }
    }

    f->alignment = GGUF_DEFAULT_ALIGN;
    akv = qwen_gguf_find_kv(f, "general.alignment");
    if (akv != NULL) {
        if (akv->type != GGUF_UINT32) {
            qwen_fail(err, err_len, "%s: general.alignment is not a uint32", path);
            qwen_gguf_release(f);
            return -1;
        }
        memcpy(&align32, akv->data, 4);
        if (align32 == 0 || (align32 & (align32 - 1)) != 0 || align32 > 65536) {
            qwen_fail(err, err_len, "%s: general.alignment %u is not a power of two", path,
                        align32);
            qwen_gguf_release(f);
            return -1;
        }
        f->alignment = align32;
    }

    for (i = 0; i < f->n_tensors; i++) {
        t = &f->tensors[i];
        if (take_str(&c, &t->name) != 0 || take(&c, &t->n_dims, 4) != 0) {
            qwen_fail(err, err_len, "%s: truncated tensor info %llu", path,
                        (unsigned long long) i);
            qwen_gguf_release(f);
            return -1;
        }
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
            qwen_fail(err, err_len, "%s: tensor '%.*s' has %u dimensions (1 to 4 allowed)", path,
                        (int) t->name.len, t->name.ptr, t->n_dims);
            qwen_gguf_release(f);
            return -1;
        }
        nel = 1;
        for (j = 0; j < 4; j++) {
            t->ne[j] = 1;
        }
        for (j = 0; j < t->n_dims; j++) {
            if (take(&c, &t->ne[j], 8) != 0) {
                qwen_fail(err, err_len, "%s: truncated tensor info '%.*s'", path,
                            (int) t->name.len, t->name.ptr);
                qwen_gguf_release(f);
                return -1;
            }
            if (t->ne[j] == 0 || t->ne[j] > ((uint64_t) 1 << 40) / nel) {
                qwen_fail(err, err_len, "%s: tensor '%.*s' has an absurd dimension %llu", path,
                            (int) t->name.len, t->name.ptr, (unsigned long long) t->ne[j]);
                qwen_gguf_release(f);
                return -1;
            }
            nel *= t->ne[j];
        }
        if (take(&c, &t->type, 4) != 0 || take(&c, &t->offset, 8) != 0) {
            qwen_fail(err, err_len, "%s: truncated tensor info '%.*s'", path,
                        (int) t->name.len, t->name.ptr);
            qwen_gguf_release(f);
            return -1;
        }
        for (j = 0; j < i; j++) {
            if (t->name.len == f->tensors[j].name.len
                && memcmp(t->name.ptr, f->tensors[j].name.ptr, t->name.len) == 0)
            {
                qwen_fail(err, err_len, "%s: tensor '%.*s' appears twice", path,
                            (int) t->name.len, t->name.ptr);
                qwen_gguf_release(f);
                return -1;
            }
        }
        if (!qwen_type_supported((int) t->type)) {
            qwen_fail(err, err_len, "%s: tensor '%.*s' has unsupported type %u (%s); supported: "
                        "F32, F16, BF16, Q8_0, Q4_K, Q6_K", path,
                        (int) t->name.len, t->name.ptr, t->type,
                        qwen_type_name((int) t->type));
            qwen_gguf_release(f);
            return -1;
        }
        bs = (uint64_t) qwen_type_block_size((int) t->type);
        if (t->ne[0] % bs != 0) {
            qwen_fail(err, err_len, "%s: tensor '%.*s' row of %llu is not a multiple of the %s block (%llu)", path,
                        (int) t->name.len, t->name.ptr, (unsigned long long) t->ne[0],
                        qwen_type_name((int) t->type), (unsigned long long) bs);
            qwen_gguf_release(f);
            return -1;
        }
        nbytes = nel / bs * qwen_type_block_bytes((int) t->type);
        t->n_bytes = nbytes;
    }

    hdr_end = (size_t) (c.p - (const uint8_t *) base);
    f->data_offset = (hdr_end + f->alignment - 1) / f->alignment * f->alignment;
    if (f->data_offset > size && f->n_tensors > 0) {
        qwen_fail(err, err_len, "%s: file ends before its data section", path);
        qwen_gguf_release(f);
        return -1;
    }

    for (i = 0; i < f->n_tensors; i++) {
        t = &f->tensors[i];
        if (t->offset % f->alignment != 0) {
            qwen_fail(err, err_len, "%s: tensor '%.*s' offset %llu is not aligned to %zu", path,
                        (int) t->name.len, t->name.ptr, (unsigned long long) t->offset,
                        f->alignment);
            qwen_gguf_release(f);
            return -1;
        }
        if (t->offset > size - f->data_offset
            || t->n_bytes > size - f->data_offset - t->offset)
        {
            qwen_fail(err, err_len, "%s: tensor '%.*s' (%llu bytes at offset %llu) runs past the end "
                        "of the file (%zu bytes)", path, (int) t->name.len, t->name.ptr,
                        (unsigned long long) t->n_bytes,
                        (unsigned long long) (f->data_offset + t->offset), size);
            qwen_gguf_release(f);
            return -1;
        }
        t->data = (const uint8_t *) base + f->data_offset + t->offset;
    }
    return 0;
}

void
qwen_gguf_release(gguf_file *f)
{
    free(f->kv);
    free(f->tensors);
    f->kv = NULL;
    f->tensors = NULL;
}

const gguf_kv *
qwen_gguf_find_kv(const gguf_file *f, const char *key)
{
    uint64_t i;

    for (i = 0; i < f->n_kv; i++) {
        if (str_eq(f->kv[i].key, key)) {
            return &f->kv[i];
        }
    }
    return NULL;
}

const gguf_tensor *
qwen_gguf_find_tensor(const gguf_file *f, const char *name)
{
    uint64_t i;

    for (i = 0; i < f->n_tensors; i++) {
        if (str_eq(f->tensors[i].name, name)) {
            return &f->tensors[i];
        }
    }
    return NULL;
}

int
qwen_gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out,
             char *err, size_t err_len)
{
    const gguf_kv *kv = qwen_gguf_find_kv(f, key);
    uint64_t       u64;
    int64_t        i64;
    int32_t        i32;

    if (kv == NULL) {
        return qwen_fail(err, err_len, "%s: missing metadata key %s", f->path, key);
    }
    switch (kv->type) {
    case GGUF_UINT32:
        memcpy(out, kv->data, 4);
        return 0;
    case GGUF_INT32:
        memcpy(&i32, kv->data, 4);
        if (i32 < 0) break;
        *out = (uint32_t) i32;
        return 0;
    case GGUF_UINT64:
        memcpy(&u64, kv->data, 8);
        if (u64 > UINT32_MAX) break;
        *out = (uint32_t) u64;
        return 0;
    case GGUF_INT64:
        memcpy(&i64, kv->data, 8);
        if (i64 < 0 || i64 > (int64_t) UINT32_MAX) break;
        *out = (uint32_t) i64;
        return 0;
    default:
        break;
    }
    return qwen_fail(err, err_len, "%s: metadata key %s is not a non-negative integer", f->path, key);
}

int
qwen_gguf_get_f32(const gguf_file *f, const char *key, float *out,
             char *err, size_t err_len)
{
    const gguf_kv *kv = qwen_gguf_find_kv(f, key);
    double         d;

    if (kv == NULL) {
        return qwen_fail(err, err_len, "%s: missing metadata key %s", f->path, key);
    }
    if (kv->type == GGUF_FLOAT32) {
        memcpy(out, kv->data, 4);
        return 0;
    }
    if (kv->type == GGUF_FLOAT64) {
        memcpy(&d, kv->data, 8);
        *out = (float) d;
        return 0;
    }
    return qwen_fail(err, err_len, "%s: metadata key %s is not a float", f->path, key);
}

gguf_str
qwen_gguf_array_next_str(const void **cursor)
{
    gguf_str       s;
    const uint8_t *p = *cursor;

    memcpy(&s.len, p, 8);
    s.ptr = (const char *) p + 8;
    *cursor = p + 8 + s.len;
    return s;
}
