/*
 * ollama.h - private: what the Ollama files give the API table: the
 * request parser of /api/chat and /api/generate (ollama_request.c) and
 * their NDJSON formats (ollama_response.c). The listing endpoints
 * (ollama_models.c) are public in qwen_proto.h.
 */
#ifndef QP_OLLAMA_H
#define QP_OLLAMA_H

#include "format.h"
#include "request.h"

/* req->api says which endpoint the body is for. */
int qp_ollama_parse(qp_request *req, const json_t *root, const qp_config *cfg,
                    const qwen_tokenizer *tok, qp_error *err);

extern const qp_format qp_ollama_chat_format;
extern const qp_format qp_ollama_generate_format;

#endif
