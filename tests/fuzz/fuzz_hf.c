/*
 * fuzz_hf.c - the Hugging Face loader: config.json and model.safetensors
 * in a directory (the safetensors header, offsets, dtypes and shapes
 * against config.json). Input: a 2-byte little-endian length, that many
 * bytes of config.json, the rest model.safetensors. The files are
 * rewritten in one private directory (under TMPDIR, /dev/shm by default)
 * per process.
 */
#include <fcntl.h>
#include <unistd.h>

#include "fuzz_common.h"

static char dir[256], config_path[300], st_path[300];

static void
cleanup(void)
{
    unlink(config_path);
    unlink(st_path);
    rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");

    (void) argc; (void) argv;
    if (tmp == NULL) {
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    }
    snprintf(dir, sizeof(dir), "%s/fuzz_hf.XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
        perror("fuzz_hf: mkdtemp");
        exit(2);
    }
    snprintf(config_path, sizeof(config_path), "%s/config.json", dir);
    snprintf(st_path, sizeof(st_path), "%s/model.safetensors", dir);
    atexit(cleanup);
    return 0;
}

static void
put(const char *p, const uint8_t *data, size_t n)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    if (fd < 0 || (n > 0 && write(fd, data, n) != (ssize_t) n)) {
        perror(p);
        exit(2);
    }
    close(fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char        err[QWEN_ERR_LEN];
    size_t      clen;
    qwen_model *m;

    if (size < 2) {
        return 0;
    }
    clen = (size_t) data[0] | (size_t) data[1] << 8;
    if (clen > size - 2) {
        clen = size - 2;
    }
    put(config_path, data + 2, clen);
    put(st_path, data + 2 + clen, size - 2 - clen);
    err[0] = '\0';
    m = qwen_model_load(dir, err, sizeof(err));
    if (m == NULL) {
        FUZZ_CHECK(err[0] != '\0', "a refused model without a message");
        return 0;
    }
    FUZZ_CHECK(qwen_model_describe(m) != NULL, "no description");
    (void) qwen_model_weight_bytes(m);
    qwen_model_free(m);
    return 0;
}
