/*
 * safetensors.c - safetensors header parser: 8-byte little-endian header
 * length, a JSON object {name: {dtype, shape, data_offsets}}, then the raw
 * data. Offsets are relative to the end of the header and must lie within
 * the file and agree with dtype x shape.
 */
#include "safetensors.h"
#include "quant.h"
#include "errors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u << 20)   /* the format's own limit is 100 MB */

static int
dtype_of(const char *s, int *type, size_t *elem)
{
    if (strcmp(s, "F32") == 0) { *type = QWEN_TYPE_F32;  *elem = 4; return 0; }
    if (strcmp(s, "F16") == 0) { *type = QWEN_TYPE_F16;  *elem = 2; return 0; }
    if (strcmp(s, "BF16") == 0) { *type = QWEN_TYPE_BF16; *elem = 2; return 0; }
    return -1;
}

int
qwen_st_parse(st_file *f, const char *path, const void *base, size_t size,
         char *err, size_t err_len)
{
    uint64_t     hlen, begin, end, nel;
    size_t       elem, data_size, idx;
    const char  *key, *dts;
    json_t      *root, *val, *dtype, *shape, *offs, *dim;
    json_error_t jerr;
    st_tensor   *t;
    size_t       i;
    int          rc = -1;

    memset(f, 0, sizeof(*f));
    f->path = path;
    if (size < 8) {
        return qwen_fail(err, err_len, "%s: too small to be a safetensors file (%zu bytes)", path, size);
    }
    memcpy(&hlen, base, 8);
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > size - 8) {
        return qwen_fail(err, err_len, "%s: header length %llu is invalid for a file of %zu bytes (not safetensors?)", path,
                    (unsigned long long) hlen, size);
    }
    root = json_loadb((const char *) base + 8, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return qwen_fail(err, err_len, "%s: header is not valid JSON: %s (at byte %d)", path,
                    jerr.text, jerr.position);
    }
    if (!json_is_object(root)) {
        qwen_fail(err, err_len, "%s: header is not a JSON object", path);
        goto done;
    }
    data_size = size - 8 - hlen;
    f->tensors = calloc(json_object_size(root) + 1, sizeof(st_tensor));
    if (f->tensors == NULL) {
        qwen_fail(err, err_len, "%s: out of memory", path);
        goto done;
    }

    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            continue;
        }
        t = &f->tensors[f->n_tensors];
        dtype = json_object_get(val, "dtype");
        shape = json_object_get(val, "shape");
        offs = json_object_get(val, "data_offsets");
        if (!json_is_object(val) || !json_is_string(dtype) || !json_is_array(shape)
            || !json_is_array(offs) || json_array_size(offs) != 2)
        {
            qwen_fail(err, err_len, "%s: tensor '%s': needs dtype, shape and data_offsets", path, key);
            goto done;
        }
        dts = json_string_value(dtype);
        if (dtype_of(dts, &t->type, &elem) != 0) {
            qwen_fail(err, err_len, "%s: tensor '%s' has unsupported dtype %s "
                 "(supported: F32, F16, BF16)", path, key, dts);
            goto done;
        }
        if (json_array_size(shape) > 4) {
            qwen_fail(err, err_len, "%s: tensor '%s' has %zu dimensions (at most 4)", path,
                 key, json_array_size(shape));
            goto done;
        }
        nel = 1;
        t->n_dims = (int) json_array_size(shape);
        json_array_foreach(shape, idx, dim) {
            if (!json_is_integer(dim) || json_integer_value(dim) <= 0
                || (uint64_t) json_integer_value(dim) > ((uint64_t) 1 << 40) / nel)
            {
                qwen_fail(err, err_len, "%s: tensor '%s' has an invalid dimension", path, key);
                goto done;
            }
            t->shape[idx] = json_integer_value(dim);
            nel *= (uint64_t) t->shape[idx];
        }
        if (!json_is_integer(json_array_get(offs, 0))
            || !json_is_integer(json_array_get(offs, 1))
            || json_integer_value(json_array_get(offs, 0)) < 0
            || json_integer_value(json_array_get(offs, 1)) < 0)
        {
            qwen_fail(err, err_len, "%s: tensor '%s' has invalid data_offsets", path, key);
            goto done;
        }
        begin = (uint64_t) json_integer_value(json_array_get(offs, 0));
        end = (uint64_t) json_integer_value(json_array_get(offs, 1));
        if (begin > end || end > data_size) {
            qwen_fail(err, err_len, "%s: tensor '%s' (bytes %llu..%llu) runs past the end "
                 "of the file (%zu data bytes)", path, key, (unsigned long long) begin,
                 (unsigned long long) end, data_size);
            goto done;
        }
        if (end - begin != nel * elem) {
            qwen_fail(err, err_len, "%s: tensor '%s' holds %llu bytes but %s x shape needs %llu", path,
                 key, (unsigned long long) (end - begin), dts,
                 (unsigned long long) (nel * elem));
            goto done;
        }
        t->name = strdup(key);
        if (t->name == NULL) {
            qwen_fail(err, err_len, "%s: out of memory", path);
            goto done;
        }
        t->data = (const uint8_t *) base + 8 + hlen + begin;
        t->n_bytes = end - begin;
        f->n_tensors++;
    }
    rc = 0;

done:
    json_decref(root);
    if (rc != 0) {
        qwen_st_release(f);
    }
    (void) i;
    return rc;
}

void
qwen_st_release(st_file *f)
{
    size_t i;

    for (i = 0; i < f->n_tensors; i++) {
        free(f->tensors[i].name);
    }
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
}

const st_tensor *
qwen_st_find(const st_file *f, const char *name)
{
    size_t i;

    for (i = 0; i < f->n_tensors; i++) {
        if (strcmp(f->tensors[i].name, name) == 0) {
            return &f->tensors[i];
        }
    }
    return NULL;
}
