/*
 * lmi.h - private: SageMaker's LMI / TGI request schema on /invocations
 * ({"inputs", "parameters", "stream"}), its parser, its framing and its
 * error bodies (lmi.c).
 */
#ifndef QP_LMI_H
#define QP_LMI_H

#include "format.h"
#include "request.h"

int qp_lmi_parse(qp_request *req, const json_t *root, const qp_config *cfg,
                 const qwen_tokenizer *tok, qp_error *err);

extern const qp_format      qp_lmi_format;
extern const qp_error_style qp_lmi_errors;   /* {"error":"..","error_type":"..","code":N} */

#endif
