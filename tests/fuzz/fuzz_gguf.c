/*
 * fuzz_gguf.c - the GGUF loader (header, metadata, tensor table, the
 * qwen3 config, tensor binding, the tokenizer from tokenizer.ggml.*) on an
 * arbitrary file: the input is the file, held in a memfd and loaded by its
 * /proc path as nginx loads a model. A file that loads must describe
 * itself; one that does not must say why.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"

static int  fd = -1;
static char path[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc; (void) argv;
    fd = memfd_create("fuzz.gguf", 0);
    if (fd < 0) {
        perror("fuzz_gguf: memfd_create");
        exit(2);
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char        err[QWEN_ERR_LEN];
    qwen_model *m;

    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t) size) {
        perror("fuzz_gguf: writing the memfd");
        exit(2);
    }
    err[0] = '\0';
    m = qwen_model_load(path, err, sizeof(err));
    if (m == NULL) {
        FUZZ_CHECK(err[0] != '\0', "a refused file without a message");
        return 0;
    }
    FUZZ_CHECK(qwen_model_describe(m) != NULL, "no description");
    FUZZ_CHECK(qwen_model_config(m)->vocab_size > 0, "vocab_size %d",
               qwen_model_config(m)->vocab_size);
    (void) qwen_model_weight_bytes(m);
    if (qwen_model_tokenizer(m) != NULL) {
        const qwen_tokenizer *tok = qwen_model_tokenizer(m);
        qwen_tokens           ids = { 0 };
        int32_t               some[4] = { 0, 1, 2, 3 };
        char                 *text;

        if (qwen_tokenize(tok, "Hello, world! 123", 17, &ids, err, sizeof(err)) == 0) {
            text = qwen_detokenize(tok, ids.ids, ids.n, NULL);
            free(text);
        }
        text = qwen_detokenize(tok, some, 4, NULL);
        free(text);
        qwen_tokens_free(&ids);
    }
    qwen_model_free(m);
    return 0;
}
