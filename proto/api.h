/*
 * api.h - private: the API table, one row per qp_api saying how its
 * requests parse, how its responses are framed and how its errors read.
 * qp_parse and qp_error_make (api.c) and qp_response_new (response.c) look
 * a row up; the API files and everything below them know no other API.
 * Adding an API: a qp_api value, its row in api.c, its own files.
 */
#ifndef QP_API_H
#define QP_API_H

#include "format.h"
#include "request.h"

typedef struct {
    /* Fill req (api and errors already set) from the body's root object,
     * ending with qp_request_limits; -1 with err set on failure. */
    int                  (*parse)(qp_request *req, const json_t *root,
                                  const qp_config *cfg, const qwen_tokenizer *tok,
                                  qp_error *err);
    const qp_format       *format;
    const qp_error_style  *errors;
} qp_api_desc;

/* The row of api, or NULL for a value outside the table. */
const qp_api_desc *qp_api_get(qp_api api);

#endif
