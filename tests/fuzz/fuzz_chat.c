/*
 * fuzz_chat.c - Qwen3's chat template (qwen_chat_render) with arbitrary
 * messages and tools. Input: a flags byte (add_generation_prompt,
 * enable_thinking, tools present), then NUL-separated fields: the tools
 * JSON when present, then per message a role field (its first byte mod 5
 * picks system, user, assistant, tool, or the field itself as the role),
 * content, reasoning_content and tool_calls JSON (empty fields are NULL).
 * A rendered prompt must then tokenize (it is valid UTF-8 when its parts
 * are) or be refused with a message.
 */
#include "fuzz_common.h"

#define MAX_MSGS 16

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc; (void) argv;
    (void) fuzz_tokenizer();
    return 0;
}

/* The next NUL-terminated field (a copy; NULL when empty or past the end). */
static char *
field(const uint8_t *data, size_t size, size_t *pos, int *end)
{
    const uint8_t *p = data + *pos, *nul;
    size_t         n;
    char          *s;

    if (*pos >= size) {
        *end = 1;
        return NULL;
    }
    nul = memchr(p, 0, size - *pos);
    n = nul ? (size_t) (nul - p) : size - *pos;
    *pos += n + 1;
    if (n == 0) {
        return NULL;
    }
    s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *roles[4] = { "system", "user", "assistant", "tool" };
    const qwen_tokenizer *tok = fuzz_tokenizer();
    qwen_chat_message     msgs[MAX_MSGS];
    char                 *owned[4 * MAX_MSGS + 1], *tools = NULL, *out = NULL;
    char                  err[QWEN_ERR_LEN];
    size_t                pos = 1, n_msgs = 0, n_owned = 0, out_len = 0, i;
    qwen_tokens           ids = { 0 };
    int                   end = 0, flags;

    if (size < 1) {
        return 0;
    }
    flags = data[0];
    if (flags & 4) {
        tools = owned[n_owned++] = field(data, size, &pos, &end);
    }
    while (!end && n_msgs < MAX_MSGS) {
        char *role = field(data, size, &pos, &end);

        if (end) {
            break;
        }
        owned[n_owned++] = role;
        memset(&msgs[n_msgs], 0, sizeof(msgs[n_msgs]));
        msgs[n_msgs].role = role == NULL ? "user"
                            : (unsigned char) role[0] % 5 < 4 ? roles[(unsigned char) role[0] % 5]
                            : role + 1;
        msgs[n_msgs].content = owned[n_owned++] = field(data, size, &pos, &end);
        msgs[n_msgs].reasoning_content = owned[n_owned++] = field(data, size, &pos, &end);
        msgs[n_msgs].tool_calls_json = owned[n_owned++] = field(data, size, &pos, &end);
        n_msgs++;
    }
    err[0] = '\0';
    if (qwen_chat_render(msgs, n_msgs, tools, flags & 1, (flags >> 1) & 1, &out, &out_len,
                         err, sizeof(err)) == 0) {
        FUZZ_CHECK(out != NULL && strlen(out) <= out_len, "render: no text or a wrong length");
        err[0] = '\0';
        if (qwen_tokenize(tok, out, out_len, &ids, err, sizeof(err)) != 0) {
            FUZZ_CHECK(err[0] != '\0', "tokenize refused the prompt without a message");
        }
        qwen_tokens_free(&ids);
        free(out);
    } else {
        FUZZ_CHECK(err[0] != '\0', "render refused without a message");
    }
    for (i = 0; i < n_owned; i++) {
        free(owned[i]);
    }
    return 0;
}
