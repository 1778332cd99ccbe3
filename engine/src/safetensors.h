/*
 * safetensors.h - reader for Hugging Face .safetensors files (and the index
 * of a sharded checkpoint). The JSON header is parsed with jansson and each
 * tensor's dtype, shape and byte range is checked against the file size.
 */
#ifndef QWEN_SAFETENSORS_H
#define QWEN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char       *name;
    int         type;      /* QWEN_TYPE_F32 / F16 / BF16 */
    int         n_dims;
    int64_t     shape[4];  /* outermost first, as PyTorch */
    const void *data;
    size_t      n_bytes;
} st_tensor;

typedef struct {
    const char *path;
    st_tensor  *tensors;
    size_t      n_tensors;
} st_file;

/* Parse a mapped .safetensors file; err names the file and the field. */
int  qwen_st_parse(st_file *f, const char *path, const void *base, size_t size,
              char *err, size_t err_len);
void qwen_st_release(st_file *f);
const st_tensor *qwen_st_find(const st_file *f, const char *name);

#endif
