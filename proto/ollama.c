/*
 * ollama.c - the Ollama API (/api/chat, /api/generate). Not implemented
 * yet: requests answer 501 in Ollama's error format. Its parser (options,
 * think, format, num_predict) and an NDJSON qp_format go here, sharing
 * stream_text.c for stop strings, thinking and tool calls.
 */
#include "proto_internal.h"

int
qp_ollama_parse(qp_request *req, const json_t *root, const qp_config *cfg,
                const qwen_tokenizer *tok, qp_error *err)
{
    (void) root; (void) cfg; (void) tok;
    return qp_fail(err, req->api, 501, NULL, NULL, NULL,
                   "the Ollama API (/api/chat, /api/generate) is not implemented yet");
}
