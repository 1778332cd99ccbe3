/*
 * test_chat_template.c - the C Qwen3 chat template against Hugging Face's
 * Jinja rendering (build/tokenizer/chat_ref.json, made by ref_chat.py from
 * tests/tokenizer/conversations.json): every conversation must match byte
 * for byte. Also Python float repr, and the renderer's error reporting.
 * Needs QWEN_TOKENIZER_REFS (run through `make test-tokenizer`).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_py.h"
#include "qwen.h"
#include "test.h"
#include "test_json.h"

/* Print where two renderings part, with some context. */
static void
show_diff(const char *name, const char *got, size_t got_len, const char *want,
          size_t want_len)
{
    size_t i = 0, from;
    while (i < got_len && i < want_len && got[i] == want[i]) i++;
    from = i > 60 ? i - 60 : 0;
    fprintf(stderr, "  %s: first difference at byte %zu (got %zu bytes, want %zu)\n"
            "  got:  \"%.*s\"\n  want: \"%.*s\"\n", name, i, got_len, want_len,
            (int) (got_len - from < 120 ? got_len - from : 120), got + from,
            (int) (want_len - from < 120 ? want_len - from : 120), want + from);
}

static void
test_conversations(json_t *fixtures, json_t *refs)
{
    json_t *cases = json_object_get(fixtures, "cases");
    json_t *rcases = json_object_get(refs, "cases");
    size_t i, n_ok = 0;

    CHECK(json_array_size(cases) >= 20 && json_array_size(cases) == json_array_size(rcases),
          "fixtures (%zu) and references (%zu) do not line up: make tokenizer-refs",
          json_array_size(cases), json_array_size(rcases));
    for (i = 0; i < json_array_size(cases) && i < json_array_size(rcases); i++) {
        json_t *c = json_array_get(cases, i), *r = json_array_get(rcases, i);
        json_t *msgs = json_object_get(c, "messages"), *tools = json_object_get(c, "tools");
        json_t *think = json_object_get(c, "enable_thinking");
        const char *name = json_string_value(json_object_get(c, "name"));
        size_t n = json_array_size(msgs), k, out_len = 0;
        qwen_chat_message *m = calloc(n ? n : 1, sizeof *m);
        char **calls = calloc(n ? n : 1, sizeof *calls), *tools_s = NULL, *out = NULL;
        char err[QWEN_ERR_LEN] = "";
        int rc;

        for (k = 0; k < n; k++) {
            json_t *jm = json_array_get(msgs, k);
            m[k].role = json_string_value(json_object_get(jm, "role"));
            m[k].content = json_string_value(json_object_get(jm, "content"));
            m[k].reasoning_content = json_string_value(json_object_get(jm, "reasoning_content"));
            if (json_object_get(jm, "tool_calls")) {
                calls[k] = json_dumps(json_object_get(jm, "tool_calls"), JSON_ENCODE_ANY);
                m[k].tool_calls_json = calls[k];
            }
        }
        if (tools) tools_s = json_dumps(tools, JSON_ENCODE_ANY);
        rc = qwen_chat_render(m, n, tools_s, json_is_true(json_object_get(c, "add_generation_prompt")),
                              think ? json_is_true(think) : 1, &out, &out_len, err, sizeof err);
        if (json_object_get(r, "error")) {
            CHECK(rc == -1, "%s: Jinja fails (%s) but C rendered", name,
                  json_string_value(json_object_get(r, "error")));
            if (rc == -1) n_ok++;
        } else {
            const char *want = json_string_value(json_object_get(r, "text"));
            size_t want_len = json_string_length(json_object_get(r, "text"));
            int same = rc == 0 && out_len == want_len && memcmp(out, want, want_len) == 0;
            CHECK(rc == 0, "%s: render failed: %s", name, err);
            CHECK(same, "%s: rendering differs from Jinja", name);
            if (rc == 0 && !same) show_diff(name, out, out_len, want, want_len);
            if (same) n_ok++;
        }
        free(out);
        free(tools_s);
        for (k = 0; k < n; k++) free(calls[k]);
        free(calls);
        free(m);
    }
    printf("chat template: %zu/%zu conversations equal the Jinja reference\n", n_ok,
           json_array_size(cases));
}

static void
test_floats(json_t *refs)
{
    json_t *floats = json_object_get(refs, "floats");
    size_t i;
    CHECK(json_array_size(floats) > 10, "no float references");
    for (i = 0; i < json_array_size(floats); i++) {
        const char *in = json_string_value(json_array_get(json_array_get(floats, i), 0));
        const char *want = json_string_value(json_array_get(json_array_get(floats, i), 1));
        char got[40];
        qwen_json_py_float_repr(strtod(in, NULL), got, sizeof got);
        CHECK(strcmp(got, want) == 0, "repr(float(%s)): got %s, Python %s", in, got, want);
    }
}

static void
expect_error(const qwen_chat_message *m, size_t n, const char *tools, const char *want)
{
    char err[QWEN_ERR_LEN] = "", *out = (char *) 1;
    size_t len = 99;
    int rc = qwen_chat_render(m, n, tools, 1, 1, &out, &len, err, sizeof err);
    CHECK(rc == -1 && out == NULL && strstr(err, want), "expected error with \"%s\", "
          "got rc=%d err=\"%s\"", want, rc, err);
    if (rc == 0) free(out);
}

static void
test_errors_and_nulls(void)
{
    qwen_chat_message m[3];
    char err[QWEN_ERR_LEN], *a = NULL, *b = NULL;
    size_t la, lb;

    memset(m, 0, sizeof m);
    m[0].role = "user";
    m[0].content = "hi";
    expect_error(m, 0, NULL, "no messages");
    expect_error(m, 1, "[{\"a\": ", "tools: invalid JSON");
    expect_error(m, 1, "{\"a\": 1}", "tools must be a JSON array");
    m[1].role = "assistant";
    m[1].tool_calls_json = "[{\"function\": {\"name\": \"f\"";
    expect_error(m, 2, NULL, "message 1: tool_calls: invalid JSON");
    m[1].tool_calls_json = "[{\"function\": {\"name\": \"f\"}}]";
    expect_error(m, 2, NULL, "no \"arguments\"");
    m[1].tool_calls_json = "[\"just a string\"]";
    expect_error(m, 2, NULL, "not an object");
    m[1].tool_calls_json = "{\"function\": {\"name\": \"f\", \"arguments\": {}}}";
    expect_error(m, 2, NULL, "must be a JSON array");
    m[1].tool_calls_json = NULL;
    m[2].role = NULL;
    expect_error(m, 3, NULL, "message 2 has no role");

    /* NULL content renders like "", "null" tools like none */
    m[1].content = NULL;
    m[1].tool_calls_json = "[{\"name\": \"f\", \"arguments\": {\"x\": 1}}]";
    CHECK(qwen_chat_render(m, 2, "null", 0, 1, &a, &la, err, sizeof err) == 0, "%s", err);
    m[1].content = "";
    CHECK(qwen_chat_render(m, 2, NULL, 0, 1, &b, &lb, err, sizeof err) == 0, "%s", err);
    CHECK(a && b && la == lb && strcmp(a, b) == 0, "NULL content differs from \"\"");
    CHECK(a && strcmp(a, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n"
                         "</think>\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": "
                         "{\"x\": 1}}\n</tool_call><|im_end|>\n") == 0, "got %s", a);
    free(a);
    free(b);
}

int
main(void)
{
    const char *refs_dir = getenv("QWEN_TOKENIZER_REFS");
    json_t *fixtures, *refs;

    if (!refs_dir || !*refs_dir) {
        CHECK(0, "QWEN_TOKENIZER_REFS must be set (run `make test-tokenizer`, which "
                 "renders the Jinja references)");
        TEST_MAIN_END();
    }
    fixtures = test_load_json(refs_dir, "conversations.json");
    refs = test_load_json(refs_dir, "chat_ref.json");
    CHECK(fixtures && refs, "reference files missing in %s (make tokenizer-refs)", refs_dir);
    if (fixtures && refs) {
        test_conversations(fixtures, refs);
        test_floats(refs);
    }
    test_errors_and_nulls();
    json_decref(fixtures);
    json_decref(refs);
    TEST_MAIN_END();
}
