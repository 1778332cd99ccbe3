/*
 * errors.h - private: error bodies and the qp_error every failure fills.
 * Each API's table row names a qp_error_style (its body's shape); the
 * request helpers and the API files fail through qp_fail with the style
 * they were handed, so nothing below the table asks which API it serves.
 */
#ifndef QP_ERRORS_H
#define QP_ERRORS_H

#include "util.h"

/* What an error says; each style prints what its API has room for. */
typedef struct {
    int         status;
    const char *type;           /* OpenAI's error.type; NULL: from status */
    const char *param;          /* the offending field, or NULL */
    const char *code;           /* e.g. "context_length_exceeded", or NULL */
    const char *message;
    int         retry_after_s;  /* > 0: a retry hint in the body */
} qp_error_info;

typedef struct {
    int        (*body)(qp_buf *b, const qp_error_info *e);  /* append the JSON */
    const char  *oom_body;      /* the whole body when memory runs out */
} qp_error_style;

extern const qp_error_style qp_openai_errors;  /* {"error":{"message","type","param","code"}} */
extern const qp_error_style qp_ollama_errors;  /* {"error":"message"} */

/* Render e into err (status and body); a message too long for the fixed
 * body is shortened on a character boundary. */
void qp_error_fill(qp_error *err, const qp_error_style *es, const qp_error_info *e);

/* The same from a printf format; returns -1 so callers can
 * `return qp_fail(...)`. type NULL: derived from status. */
int qp_fail(qp_error *err, const qp_error_style *es, int status, const char *type,
            const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

#endif
