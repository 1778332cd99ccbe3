/*
 * test_json.h - reading the JSON reference files the tokenizer and chat
 * template tests compare against (kept apart from test.h, which the arm64
 * static test builds include without jansson).
 */
#ifndef QWEN_TEST_JSON_H
#define QWEN_TEST_JSON_H

#include <jansson.h>
#include <stdio.h>

/* dir/name parsed, or NULL with the reason on stderr. */
static inline json_t *
test_load_json(const char *dir, const char *name)
{
    char         path[4096];
    json_error_t je;
    json_t      *j;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    j = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (j == NULL) {
        fprintf(stderr, "cannot load %s: %s (line %d)\n", path, je.text, je.line);
    }
    return j;
}

#endif
