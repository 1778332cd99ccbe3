/*
 * openai.h - private: what the OpenAI files give the API table and the
 * operations endpoints: the request parser of /v1/chat/completions and
 * /v1/completions (openai_request.c), the chat prompt renderer /tokenize
 * shares, and the SSE formats (openai_response.c).
 */
#ifndef QP_OPENAI_H
#define QP_OPENAI_H

#include "format.h"
#include "request.h"

/* req->api says which endpoint the body is for. */
int qp_openai_parse(qp_request *req, const json_t *root, const qp_config *cfg,
                    const qwen_tokenizer *tok, qp_error *err);

/* The chat prompt text of an OpenAI-style body (messages, tools,
 * enable_thinking switches): sets req->tools and req->thinking; *text is
 * malloc'ed. Used by /v1/chat/completions and /tokenize. */
int qp_openai_render_chat(qp_request *req, const json_t *root, const qp_config *cfg,
                          int add_generation_prompt, char **text, size_t *text_len,
                          qp_error *err);

extern const qp_format qp_openai_chat_format;
extern const qp_format qp_openai_completions_format;

#endif
