/*
 * grammar.c - constrained decoding to JSON and a JSON Schema subset: a
 * byte-level pushdown automaton (a stack of object/array frames plus
 * string, escape, UTF-8, number, literal and exact-value states) checks
 * each candidate token's bytes against a copy of the sequence's state.
 * The schema compiles into nodes: typed values with their constraints
 * (properties in schema order, lengths, patterns as position automata,
 * digit-level integer bounds, item counts), exact values (enum, const),
 * and alternatives (anyOf, $ref cycles included): a state is a small set
 * of threads, one per alternative still alive, so an anyOf costs a
 * thread only while its branches look alike. Every state also knows the
 * fewest bytes that close it validly, so a token budget can force the
 * shortest valid completion.
 */
#include "grammar.h"
#include "errors.h"
#include "tokenizer_internal.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define G_MAX_DEPTH   32    /* nesting of objects and arrays */
#define G_MAX_WS      16    /* consecutive whitespace bytes between tokens */
#define G_MAX_NL      2     /* line breaks in one whitespace run (\r\n) */
#define G_MAX_INT     15    /* integer digits: stays exact in a double */
#define G_MAX_FRAC    15
#define G_MAX_EXP     2
#define G_MAX_NODES   4096
#define G_MAX_PROPS   64    /* per object: candidates live in a 64-bit mask */
#define G_MAX_THREADS 16    /* alternatives alive at once */
#define G_MAX_MIN_ITEMS 1000
#define G_MAX_LEN     10000 /* minLength; a larger maxLength is no bound */
#define G_INT_LIM     999999999999999LL   /* 15 digits */

enum {
    T_STRING = 1, T_NUMBER = 2, T_INTEGER = 4, T_BOOL = 8, T_NULL = 16,
    T_OBJECT = 32, T_ARRAY = 64, T_ANY = 127
};

enum { K_TYPES = 0, K_EXACT, K_ANYOF };

/* A schema node. Node 0 is "any JSON value". */
typedef struct {
    uint8_t  kind;
    uint8_t  building;    /* compiling: kind and types not known yet */
    uint32_t types;       /* K_TYPES: allowed; K_EXACT: of its values */
    /* object */
    int      free_obj;    /* any keys, any values */
    int32_t  prop0;       /* properties: g->props[prop0 .. +n_props) */
    int32_t  n_props;
    uint64_t required;    /* bit i: property prop0 + i is required */
    int32_t  reqsum0;     /* g->ints: n_props + 1 costs of the required rest */
    /* array */
    int32_t  items;       /* item node past prefixItems; -1: none */
    int32_t  pref0, n_pref;   /* prefixItems: g->ints */
    int32_t  min_items, max_items;   /* max -1: no bound */
    int      unique;      /* items are exact values, each once */
    /* string */
    int32_t  min_len, max_len;       /* in characters; max -1: no bound */
    int32_t  rx;          /* g->rx index; -1: no pattern */
    /* number */
    int      bounded;     /* bounds or multipleOf: no exponent */
    int      int_only;
    int64_t  ilo, ihi;    /* the integers in range */
    int64_t  mult;        /* 0: none */
    double   flo, fhi;    /* the real bounds (a fraction's far end) */
    /* exact values (K_EXACT): g->strs[ex0 .. +n_ex), their JSON text */
    int32_t  ex0, n_ex;
    /* alternatives (K_ANYOF): g->ints[alt0 .. +n_alt) */
    int32_t  alt0, n_alt;
    int32_t  minval;      /* fewest bytes of a valid value */
} g_node;

typedef struct {
    char   *s;
    size_t  len;
    int32_t node;         /* properties: the value's node */
} g_str;

typedef struct {
    const json_t *target;
    int32_t       node;
} g_ref;

/* a token read from inside a string, no escape or UTF-8 sequence open */
#define SK_NO    0      /* refused: a control byte, or broken UTF-8 */
#define SK_PLAIN 1      /* stays inside: no '"', '\\' or control */
#define SK_QUOTE 2      /* plain bytes, then '"' ends the string */
#define SK_ESC   3      /* plain bytes, then an escape */
#define SK_LS    0x10   /* its plain part holds U+2028 or U+2029 (patterns refuse them) */

#define B2(b, c)  ((b) * 257 + (c))
#define B2_KEYS   (256 * 257 + 1)   /* the last: the EOG ids */

/* The plain tokens of a string, grouped by what a pattern sees of them:
 * the class of each character (symbols a pattern cannot tell apart share
 * one), the UTF-8 bytes left due and whether U+2028/9 is among them.
 * Groups are sorted by their class sequence, so a walk over them steps
 * the pattern once per distinct prefix: a few hundred steps decide
 * ~147,000 tokens. */
typedef struct {
    uint8_t  cls[G_RX_SYMS];  /* symbol -> class */
    uint8_t  rep[G_RX_SYMS];  /* class -> one of its symbols */
    int32_t  n_grp;
    int32_t *grp_off;         /* [n_grp + 1]: the group's tokens in ids */
    int32_t *ids;
    int32_t *seq_off;         /* [n_grp]: its class sequence in seq */
    uint8_t *seq;
    uint8_t *len;             /* characters */
    uint8_t *pend;            /* UTF-8 bytes due, | 0x80 with U+2028/9 */
    uint8_t *lcp;             /* classes in common with the group before */
    int      refs;            /* atomic: grammars using it, and the cache */
} g_plan;

#define PLAN_CACHE 16   /* patterns' plans kept per tokenizer: a schema used
                         * again compiles without building them (~10 ms each) */

/* The per-token tables every grammar over one tokenizer shares (built
 * once per tokenizer: qwen_tokenizer_attachment); the fields of
 * qwen_grammar of the same names point into it. */
typedef struct {
    int32_t   n_tok;
    uint16_t *tok_class;
    uint8_t  *tok_nows;
    int32_t  *by_first, *by_first_off, *by2_off;
    uint8_t  *tok_skind, *tok_chars, *tok_pend, *tok_pre;
    int32_t  *quote_ids, n_quote;
    int32_t  *slow_ids, n_slow;
    g_plan   *plain;                 /* plan 0: strings without a pattern */
    pthread_mutex_t lock;            /* the cache of patterns' plans */
    g_plan   *cache[PLAN_CACHE];
    uint64_t  cache_used[PLAN_CACHE], clock;
} g_vocab;

/* token classes: the first byte (0..255), or one of these */
#define TC_EOG   256
#define TC_NEVER 257    /* no bytes, unused id, or an added token */

struct qwen_grammar {
    int                   refs;      /* atomic */
    const qwen_tokenizer *tok;
    /* from here to plans: the tokenizer's tables (g_vocab), read only
     * once classify_tokens has built them */
    uint16_t             *tok_class; /* [n_tok]: the first check, one load */
    uint8_t              *tok_nows;  /* [n_tok]: first non-whitespace byte (' ' if none) */
    int32_t               n_tok;
    /* token ids by first byte (by_first_off[b] .. [b+1]; 256: the EOG ids),
     * each first byte's ids ordered by second byte: by2_off[B2(b, 0)] ..
     * the one-byte tokens, [B2(b, 1 + c)] .. those going on with c; the
     * candidate walk feeds each two-byte prefix once */
    int32_t              *by_first, *by_first_off;   /* [n_tok], [259] */
    int32_t              *by2_off;                   /* [B2_KEYS + 1] */
    /* per token, inside a string opened before it (SK_*), its characters
     * (255: more), the UTF-8 bytes it leaves due (SK_PLAIN) or the bytes
     * before its first '"' or '\\' (SK_QUOTE, SK_ESC) */
    uint8_t              *tok_skind, *tok_chars, *tok_pend, *tok_pre;
    int32_t              *quote_ids, n_quote;        /* SK_QUOTE */
    int32_t              *slow_ids, n_slow;          /* SK_ESC, plain of 255+ chars */
    /* the plain tokens grouped as strings see them: plan 0 for strings
     * without a pattern, rx_plan[r] for pattern r */
    g_plan              **plans;
    int32_t               n_plans;
    const g_vocab        *vocab;                     /* owns the tables above */
    int32_t              *rx_plan;                   /* [n_rx] */
    g_node               *nodes;
    int32_t               n_nodes, cap_nodes;
    g_str                *props;
    int32_t               n_props, cap_props;
    g_str                *strs;
    int32_t               n_strs, cap_strs;
    int32_t              *ints;
    int32_t               n_ints, cap_ints;
    g_regex             **rx;
    int32_t               n_rx;
    int32_t               root;
    /* tool calls: <tool_call> JSON </tool_call> blocks, the JSON one of
     * the functions' call objects */
    int                   tools;      /* 0: the answer is the JSON value */
    int                   required;   /* no text: a call at once */
    int                   parallel;   /* another call may follow one */
    int32_t               id_open, id_close;
    /* while compiling */
    const json_t         *doc;
    g_ref                *refmap;
    int32_t               n_refmap;
};

/* automaton modes */
enum {
    S_VALUE = 0,   /* a value of node cur */
    S_ARR_FIRST,   /* after '[': a value of node cur or ']' */
    S_OBJ_FIRST,   /* after '{': a key or '}' */
    S_OBJ_KEY,     /* after ',' in an object: a key */
    S_COLON,       /* after a key */
    S_STR,         /* inside a string (key or value) */
    S_NUM,
    S_LIT,         /* true, false, null */
    S_EXACT,       /* an enum / const value, byte by byte */
    S_AFTER,       /* after a value inside a container */
    S_DONE         /* the top-level value is complete */
};

/* number sub-states */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

typedef struct {
    int32_t  node;
    uint16_t n_items;     /* array: values begun */
    uint8_t  is_array;
    uint8_t  next_prop;   /* fixed object: first property that may come */
    uint64_t used;        /* unique items: exact values written */
} g_frame;

/* One alternative's whole state. Fields of a finished value are zeroed
 * (value_end) so equal threads compare equal byte for byte. */
typedef struct {
    int64_t  nval;        /* number: digits so far (integer part) */
    uint64_t mask;        /* S_STR keys / S_EXACT: candidates alive */
    g_bits   rx;          /* S_STR with a pattern: its match state */
    int32_t  cur;         /* node of the value being read or expected */
    uint16_t pos;         /* literal / key / exact match position */
    uint16_t uval;        /* \u accumulator */
    uint16_t slen;        /* string: characters so far */
    uint16_t pad;
    uint8_t  mode;
    uint8_t  sub;         /* number sub-state, literal index */
    uint8_t  is_key;      /* S_STR: a key */
    uint8_t  esc;         /* 0, 1 after '\', 2..5 inside \uXXXX */
    uint8_t  u8_need;     /* UTF-8 continuation bytes still due */
    uint8_t  u8_lo, u8_hi;/* range of the next continuation byte */
    uint8_t  u8_e2;       /* 1 after E2, 2 after E2 80 (U+2028/9 watch) */
    uint8_t  ws_run, nl_run;
    uint8_t  ndig;
    uint8_t  neg;
    uint8_t  depth;
    uint8_t  pad2[3];
    g_frame  stack[G_MAX_DEPTH];
} g_th;

struct qwen_grammar_state {
    const qwen_grammar *g;
    uint64_t first[4];    /* bytes a token may begin with here (a fast
                           * reject for most of the vocabulary) */
    int      structural;  /* between values: whitespace changes nothing,
                           * so the first non-blank byte must fit too */
    int32_t  budget;      /* tokens that may follow the next one; G_INF: any */
    int32_t  limit;       /* the closing bytes a token may leave: the budget,
                           * or when even the shortest path is longer, one
                           * byte less than now (progress on it) */
    int      budget_hit;  /* the budget refused a token the schema allowed */
    int      outer;       /* tool calls: O_TEXT, O_OPEN, O_CALL, O_AFTER */
    int      after_ws;    /* O_AFTER: whitespace tokens so far */
    int      n;           /* threads */
    g_th     th[G_MAX_THREADS];
};

/* outer modes with tool calls */
enum {
    O_JSON = 0,    /* no tool calls: the answer is the value */
    O_TEXT,        /* free text until <tool_call> (tool_choice auto) */
    O_OPEN,        /* only <tool_call> (required, a named function) */
    O_CALL,        /* the call's JSON, then </tool_call> */
    O_AFTER        /* after </tool_call>: the end, or another call */
};

static void update_first(qwen_grammar_state *st);

static int
is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *const LITERALS[3] = { "true", "false", "null" };
static const uint8_t     LITERAL_LEN[3] = { 4, 5, 4 };

static const int64_t POW10[16] = {
    1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL, 100000000LL,
    1000000000LL, 10000000000LL, 100000000000LL, 1000000000000LL, 10000000000000LL,
    100000000000000LL, 1000000000000000LL
};

static int32_t
add_sat(int32_t a, int32_t b)
{
    int64_t s = (int64_t) a + b;

    return s >= G_INF ? G_INF : (int32_t) s;
}

/* ------------------------------------------------------------ building */

static int32_t
add_node(qwen_grammar *g, uint32_t types)
{
    g_node *grown, *n;
    int     cap;

    if (g->n_nodes == G_MAX_NODES) {
        return -1;
    }
    if (g->n_nodes == g->cap_nodes) {
        cap = g->cap_nodes ? 2 * g->cap_nodes : 8;
        grown = realloc(g->nodes, (size_t) cap * sizeof(*grown));
        if (grown == NULL) {
            return -1;
        }
        g->nodes = grown;
        g->cap_nodes = cap;
    }
    n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof(g_node));
    n->types = types;
    n->free_obj = 1;
    n->max_items = -1;
    n->max_len = -1;
    n->rx = -1;
    n->ilo = -G_INT_LIM;
    n->ihi = G_INT_LIM;
    n->flo = -1e300;
    n->fhi = 1e300;
    n->minval = G_INF;
    return g->n_nodes++;
}

/* Append n zeroed entries to *arr; returns the first index or -1. */
static int32_t
add_strs(g_str **arr, int32_t *n, int32_t *cap, int32_t count)
{
    g_str   *grown;
    int32_t  c = *cap;

    if (*n + count > c) {
        while (*n + count > c) {
            c = c ? 2 * c : 16;
        }
        grown = realloc(*arr, (size_t) c * sizeof(*grown));
        if (grown == NULL) {
            return -1;
        }
        *arr = grown;
        *cap = c;
    }
    if (count > 0) {    /* *arr is still NULL for "properties": {} */
        memset(*arr + *n, 0, (size_t) count * sizeof(g_str));
    }
    *n += count;
    return *n - count;
}

static int32_t
add_ints(qwen_grammar *g, int32_t count)
{
    int32_t *grown;
    int32_t  c = g->cap_ints;

    if (g->n_ints + count > c) {
        while (g->n_ints + count > c) {
            c = c ? 2 * c : 64;
        }
        grown = realloc(g->ints, (size_t) c * sizeof(*grown));
        if (grown == NULL) {
            return -1;
        }
        g->ints = grown;
        g->cap_ints = c;
    }
    memset(g->ints + g->n_ints, 0, (size_t) count * sizeof(int32_t));
    g->n_ints += count;
    return g->n_ints - count;
}

/* Keys are matched byte for byte as the model writes them, so they must
 * need no escaping. */
static int
plain_string(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 0x20 || c == '"' || c == '\\') {
            return 0;
        }
    }
    return len < 65535;
}

static int
set_str(g_str *dst, const char *s, size_t len)
{
    dst->s = malloc(len + 1);
    if (dst->s == NULL) {
        return -1;
    }
    memcpy(dst->s, s, len);
    dst->s[len] = '\0';
    dst->len = len;
    return 0;
}

static int
type_bit(const char *name, uint32_t *out)
{
    static const struct { const char *name; uint32_t bit; } types[] = {
        { "string", T_STRING }, { "number", T_NUMBER | T_INTEGER },
        { "integer", T_INTEGER }, { "boolean", T_BOOL }, { "null", T_NULL },
        { "object", T_OBJECT }, { "array", T_ARRAY }
    };
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(name, types[i].name) == 0) {
            *out |= types[i].bit;
            return 0;
        }
    }
    return -1;
}

/* A JSON value's type bits (an integral number is an integer too). */
static uint32_t
value_types(const json_t *v)
{
    double d;

    switch (json_typeof(v)) {
    case JSON_OBJECT:  return T_OBJECT;
    case JSON_ARRAY:   return T_ARRAY;
    case JSON_STRING:  return T_STRING;
    case JSON_INTEGER: return T_INTEGER | T_NUMBER;
    case JSON_REAL:
        d = json_real_value(v);
        return d == floor(d) ? T_INTEGER | T_NUMBER : T_NUMBER;
    case JSON_TRUE:
    case JSON_FALSE:   return T_BOOL;
    default:           return T_NULL;
    }
}

/* ------------------------------------------------------- exact values */

typedef struct {
    char   *p;
    size_t  len, cap;
    int     oom;
} g_buf;

static void
buf_put(g_buf *b, const char *s, size_t n)
{
    char *grown;

    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;

        while (b->len + n + 1 > cap) {
            cap *= 2;
        }
        grown = realloc(b->p, cap);
        if (grown == NULL) {
            b->oom = 1;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
buf_json_string(g_buf *b, const char *s, size_t n)
{
    json_t *str = json_stringn(s, n);
    char   *text = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;

    if (text == NULL) {
        b->oom = 1;
    } else {
        buf_put(b, text, strlen(text));
    }
    free(text);
    json_decref(str);
}

/* The compact JSON text the model must write for an exact value (the
 * shortest number text that reads back as the same double). */
static void
dump_value(g_buf *b, const json_t *v)
{
    char        num[40];
    const char *key;
    json_t     *x;
    size_t      i;
    int         prec, first = 1;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        buf_put(b, "{", 1);
        json_object_foreach((json_t *) v, key, x) {
            if (!first) buf_put(b, ",", 1);
            first = 0;
            buf_json_string(b, key, strlen(key));
            buf_put(b, ":", 1);
            dump_value(b, x);
        }
        buf_put(b, "}", 1);
        break;
    case JSON_ARRAY:
        buf_put(b, "[", 1);
        for (i = 0; i < json_array_size(v); i++) {
            if (i > 0) buf_put(b, ",", 1);
            dump_value(b, json_array_get(v, i));
        }
        buf_put(b, "]", 1);
        break;
    case JSON_STRING:
        buf_json_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        buf_put(b, num, strlen(num));
        break;
    case JSON_REAL:
        for (prec = 1; prec <= 17; prec++) {
            snprintf(num, sizeof(num), "%.*g", prec, json_real_value(v));
            if (strtod(num, NULL) == json_real_value(v)) {
                break;
            }
        }
        buf_put(b, num, strlen(num));
        break;
    case JSON_TRUE:  buf_put(b, "true", 4); break;
    case JSON_FALSE: buf_put(b, "false", 5); break;
    default:         buf_put(b, "null", 4); break;
    }
}

/* ------------------------------------------------------------ compiling */

static const char *const ANNOTATIONS[] = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", NULL
};

static const char *const KEYWORDS[] = {
    "type", "enum", "const", "anyOf", "oneOf", "$ref",
    "properties", "required", "additionalProperties",
    "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
    "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", NULL
};

static int
in_list(const char *const *list, const char *key)
{
    for (; *list != NULL; list++) {
        if (strcmp(*list, key) == 0) {
            return 1;
        }
    }
    return 0;
}

static int32_t compile(qwen_grammar *g, const json_t *s, int depth, const char *path,
                       char *err, size_t err_len);

/* A child's path: path + "/" + a key (JSON Pointer escaping) */
static void
sub_path(char *dst, size_t len, const char *path, const char *key)
{
    size_t n = (size_t) snprintf(dst, len, "%s/", path);

    for (; *key != '\0' && n + 3 < len; key++) {
        if (*key == '~' || *key == '/') {
            dst[n++] = '~';
            dst[n++] = *key == '~' ? '0' : '1';
        } else {
            dst[n++] = *key;
        }
    }
    dst[n < len ? n : len - 1] = '\0';
}

static int
compile_exact(qwen_grammar *g, int32_t id, const json_t *values, uint32_t types,
              const char *path, const char *kw, char *err, size_t err_len)
{
    size_t   i, n = json_array_size(values);
    int32_t  first, k, j;
    uint32_t vt, all = 0;
    g_buf    b;

    if (n == 0) {
        return qwen_fail(err, err_len, "%s: '%s' must list at least one value", path, kw);
    }
    if (n > G_MAX_PROPS) {
        return qwen_fail(err, err_len, "%s: '%s' with more than %d values is not supported",
                         path, kw, G_MAX_PROPS);
    }
    first = add_strs(&g->strs, &g->n_strs, &g->cap_strs, (int32_t) n);
    if (first < 0) {
        return qwen_fail(err, err_len, "out of memory");
    }
    k = 0;
    for (i = 0; i < n; i++) {
        const json_t *v = json_array_get(values, i);

        vt = value_types(v);
        if (types != 0 && !(vt & types)) {
            continue;   /* 'type' rules it out */
        }
        memset(&b, 0, sizeof(b));
        dump_value(&b, v);
        if (b.oom || b.len >= 65535) {
            free(b.p);
            return qwen_fail(err, err_len, b.oom ? "out of memory"
                             : "%s: a '%s' value too long", path, kw);
        }
        for (j = 0; j < k; j++) {
            if (g->strs[first + j].len == b.len && memcmp(g->strs[first + j].s, b.p, b.len) == 0) {
                break;
            }
        }
        if (j < k) {
            free(b.p);
            continue;
        }
        g->strs[first + k].s = b.p;
        g->strs[first + k].len = b.len;
        k++;
        all |= vt;
    }
    if (k == 0) {
        return qwen_fail(err, err_len, "%s: no '%s' value is of the schema's 'type'", path, kw);
    }
    g->n_strs = first + k;
    g->nodes[id].kind = K_EXACT;
    g->nodes[id].types = all;
    g->nodes[id].ex0 = first;
    g->nodes[id].n_ex = k;
    return 0;
}

static int
compile_object(qwen_grammar *g, int32_t id, const json_t *s, int depth, const char *path,
               char *err, size_t err_len)
{
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties"), *v;
    const char   *key;
    size_t        n, i, j;
    int32_t       first, child;
    char          sub[512], sub2[512];

    if (addl != NULL && !json_is_boolean(addl) && !json_is_object(addl)) {
        return qwen_fail(err, err_len, "%s: 'additionalProperties' must be a boolean or "
                         "a schema", path);
    }
    if (req != NULL && !json_is_array(req)) {
        return qwen_fail(err, err_len, "%s: 'required' must be an array of names", path);
    }
    if (props == NULL) {
        /* no properties: any object, or {} when nothing else is allowed */
        if (json_is_object(addl) && json_object_size(addl) > 0) {
            return qwen_fail(err, err_len, "%s: 'additionalProperties' as a schema without "
                             "'properties' is not supported", path);
        }
        g->nodes[id].free_obj = !json_is_false(addl);
        if (json_array_size(req) > 0) {
            return qwen_fail(err, err_len, "%s: 'required' needs 'properties'", path);
        }
        return 0;
    }
    if (!json_is_object(props)) {
        return qwen_fail(err, err_len, "%s: 'properties' must be an object", path);
    }
    /* only the listed properties are written, so additionalProperties of
     * any value holds */
    n = json_object_size(props);
    if (n > G_MAX_PROPS) {
        return qwen_fail(err, err_len, "%s: more than %d properties in one object is not "
                         "supported", path, G_MAX_PROPS);
    }
    first = add_strs(&g->props, &g->n_props, &g->cap_props, (int32_t) n);
    if (first < 0) {
        return qwen_fail(err, err_len, "out of memory");
    }
    g->nodes[id].free_obj = 0;
    g->nodes[id].prop0 = first;
    g->nodes[id].n_props = (int32_t) n;
    i = 0;
    sub_path(sub, sizeof(sub), path, "properties");
    json_object_foreach((json_t *) props, key, v) {
        size_t klen = strlen(key);

        if (!plain_string(key, klen)) {
            return qwen_fail(err, err_len, "%s: property names that need escaping are not "
                             "supported", path);
        }
        if (set_str(&g->props[first + (int32_t) i], key, klen) != 0) {
            return qwen_fail(err, err_len, "out of memory");
        }
        sub_path(sub2, sizeof(sub2), sub, key);
        child = compile(g, v, depth + 1, sub2, err, err_len);
        if (child < 0) {
            return -1;
        }
        g->props[first + (int32_t) i].node = child;
        i++;
    }
    for (j = 0; j < json_array_size(req); j++) {
        const json_t *name = json_array_get(req, j);

        for (i = 0; i < n; i++) {
            if (json_is_string(name) && strcmp(json_string_value(name),
                                               g->props[first + (int32_t) i].s) == 0)
            {
                break;
            }
        }
        if (i == n) {
            return qwen_fail(err, err_len, "%s: required property %s is not in 'properties'",
                             path, json_is_string(name) ? json_string_value(name) : "?");
        }
        g->nodes[id].required |= (uint64_t) 1 << i;
    }
    return 0;
}

static int
get_count(const json_t *s, const char *kw, int64_t limit, int64_t *out, const char *path,
          char *err, size_t err_len)
{
    const json_t *v = json_object_get(s, kw);
    double        d;

    if (v == NULL) {
        return 0;
    }
    d = json_number_value(v);
    if (!json_is_number(v) || d < 0 || d != floor(d)) {
        return qwen_fail(err, err_len, "%s: '%s' must be a non-negative integer", path, kw);
    }
    if (limit > 0 && d > (double) limit) {
        return qwen_fail(err, err_len, "%s: '%s' above %lld is not supported", path, kw,
                         (long long) limit);
    }
    *out = d > 1e15 ? (int64_t) 1e15 : (int64_t) d;
    return 1;
}

static int32_t exact_items(const qwen_grammar *g, int32_t node);

static int
compile_array(qwen_grammar *g, int32_t id, const json_t *s, int depth, const char *path,
              char *err, size_t err_len)
{
    const json_t *items = json_object_get(s, "items"), *pref = json_object_get(s, "prefixItems");
    const json_t *uniq = json_object_get(s, "uniqueItems");
    int64_t       v;
    int32_t       child, first;
    size_t        i;
    char          sub[512], sub0[512], idx[24];
    int           rc;

    g->nodes[id].items = 0;
    if (json_is_array(items)) {
        return qwen_fail(err, err_len, "%s: 'items' as an array (draft 4-7 tuples) is not "
                         "supported: use 'prefixItems'", path);
    }
    if (pref != NULL) {
        if (!json_is_array(pref) || json_array_size(pref) == 0
            || json_array_size(pref) > G_MAX_PROPS)
        {
            return qwen_fail(err, err_len, "%s: 'prefixItems' must be an array of 1 to %d "
                             "schemas", path, G_MAX_PROPS);
        }
        first = add_ints(g, (int32_t) json_array_size(pref));
        if (first < 0) {
            return qwen_fail(err, err_len, "out of memory");
        }
        for (i = 0; i < json_array_size(pref); i++) {
            snprintf(idx, sizeof(idx), "%zu", i);
            sub_path(sub0, sizeof(sub0), path, "prefixItems");
            sub_path(sub, sizeof(sub), sub0, idx);
            child = compile(g, json_array_get(pref, i), depth + 1, sub, err, err_len);
            if (child < 0) {
                return -1;
            }
            g->ints[first + (int32_t) i] = child;
        }
        g->nodes[id].pref0 = first;
        g->nodes[id].n_pref = (int32_t) json_array_size(pref);
    }
    if (json_is_false(items)) {
        g->nodes[id].items = -1;
        g->nodes[id].max_items = g->nodes[id].n_pref;
    } else if (items != NULL) {
        sub_path(sub, sizeof(sub), path, "items");
        child = compile(g, items, depth + 1, sub, err, err_len);
        if (child < 0) {
            return -1;
        }
        g->nodes[id].items = child;
    }
    if ((rc = get_count(s, "minItems", G_MAX_MIN_ITEMS, &v, path, err, err_len)) < 0) {
        return -1;
    }
    if (rc) {
        g->nodes[id].min_items = (int32_t) v;
    }
    if ((rc = get_count(s, "maxItems", 0, &v, path, err, err_len)) < 0) {
        return -1;
    }
    if (rc && v < 65535 && (g->nodes[id].max_items < 0 || v < g->nodes[id].max_items)) {
        g->nodes[id].max_items = (int32_t) v;
    }
    if (uniq != NULL && !json_is_boolean(uniq)) {
        return qwen_fail(err, err_len, "%s: 'uniqueItems' must be a boolean", path);
    }
    if (json_is_true(uniq)) {
        int32_t n_ex = exact_items(g, id);

        if (n_ex <= 0) {
            return qwen_fail(err, err_len, "%s: 'uniqueItems' is supported only for items "
                             "that are an 'enum' or 'const' (no 'prefixItems')", path);
        }
        g->nodes[id].unique = 1;
        if (g->nodes[id].max_items < 0 || g->nodes[id].max_items > n_ex) {
            g->nodes[id].max_items = n_ex;
        }
    }
    if (g->nodes[id].max_items >= 0 && g->nodes[id].min_items > g->nodes[id].max_items) {
        return qwen_fail(err, err_len, "%s: 'minItems' above the items the array may hold: "
                         "no array is valid", path);
    }
    return 0;
}

/* The number of exact values of an array's items, or 0 */
static int32_t
exact_items(const qwen_grammar *g, int32_t node)
{
    const g_node *n = &g->nodes[node];

    if (n->n_pref > 0 || n->items <= 0 || g->nodes[n->items].building
        || g->nodes[n->items].kind != K_EXACT)
    {
        return 0;
    }
    return g->nodes[n->items].n_ex;
}

static const struct {
    const char *name;
    const char *pattern;
} FORMATS[] = {
    { "date", "^\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-"
              "(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8]))$" },
    { "time", "^(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?"
              "(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$" },
    { "date-time", "^\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-"
                   "(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8]))"
                   "T(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,6})?"
                   "(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$" },
    { "email", "^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
               "(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\\.[A-Za-z]{2,}$" },
    { "uuid", "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$" },
    { "ipv4", "^(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(?:\\.(?:25[0-5]|2[0-4]\\d|1\\d\\d|"
              "[1-9]?\\d)){3}$" },
    { "ipv6", "^[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4}){7}$" },
    { "hostname", "^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*"
                  "[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$" },
};

static int
add_regex(qwen_grammar *g, int32_t id, const char *pat, size_t len, const char *what,
          const char *path, char *err, size_t err_len)
{
    g_regex **grown;
    g_regex  *rx = qwen_regex_compile(pat, len, what, path, err, err_len);

    if (rx == NULL) {
        return -1;
    }
    grown = realloc(g->rx, (size_t) (g->n_rx + 1) * sizeof(*grown));
    if (grown == NULL) {
        free(rx);
        return qwen_fail(err, err_len, "out of memory");
    }
    g->rx = grown;
    g->rx[g->n_rx] = rx;
    g->nodes[id].rx = g->n_rx++;
    return 0;
}

static int
compile_string(qwen_grammar *g, int32_t id, const json_t *s, const char *path, char *err,
               size_t err_len)
{
    const json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    int64_t       v;
    int           rc;
    size_t        i;
    char          what[64];

    if ((rc = get_count(s, "minLength", G_MAX_LEN, &v, path, err, err_len)) < 0) {
        return -1;
    }
    if (rc) {
        g->nodes[id].min_len = (int32_t) v;
    }
    if ((rc = get_count(s, "maxLength", 0, &v, path, err, err_len)) < 0) {
        return -1;
    }
    if (rc && v < 65535) {
        g->nodes[id].max_len = (int32_t) v;
    }
    if (pat != NULL && fmt != NULL) {
        return qwen_fail(err, err_len, "%s: 'format' together with 'pattern' is not "
                         "supported", path);
    }
    if (pat != NULL) {
        if (!json_is_string(pat)) {
            return qwen_fail(err, err_len, "%s: 'pattern' must be a string", path);
        }
        if (add_regex(g, id, json_string_value(pat), json_string_length(pat), "pattern", path,
                      err, err_len) != 0)
        {
            return -1;
        }
    }
    if (fmt != NULL) {
        if (!json_is_string(fmt)) {
            return qwen_fail(err, err_len, "%s: 'format' must be a string", path);
        }
        for (i = 0; i < sizeof(FORMATS) / sizeof(FORMATS[0]); i++) {
            if (strcmp(json_string_value(fmt), FORMATS[i].name) == 0) {
                break;
            }
        }
        if (i == sizeof(FORMATS) / sizeof(FORMATS[0])) {
            return qwen_fail(err, err_len, "%s: 'format' \"%.40s\" is not supported (supported: "
                             "date, time, date-time, email, uuid, ipv4, ipv6, hostname)", path,
                             json_string_value(fmt));
        }
        snprintf(what, sizeof(what), "format %s", FORMATS[i].name);
        if (add_regex(g, id, FORMATS[i].pattern, strlen(FORMATS[i].pattern), what, path, err,
                      err_len) != 0)
        {
            return -1;
        }
        if (strcmp(FORMATS[i].name, "hostname") == 0
            && (g->nodes[id].max_len < 0 || g->nodes[id].max_len > 253))
        {
            g->nodes[id].max_len = 253;
        }
    }
    if (g->nodes[id].max_len >= 0
        && (g->nodes[id].min_len > g->nodes[id].max_len
            || (g->nodes[id].rx >= 0 && g->rx[g->nodes[id].rx]->cdist[0] > g->nodes[id].max_len)))
    {
        return qwen_fail(err, err_len, "%s: 'maxLength' leaves no valid string", path);
    }
    return 0;
}

static int
get_bound(const json_t *s, const char *kw, double *out, const char *path, char *err,
          size_t err_len)
{
    const json_t *v = json_object_get(s, kw);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_number(v)) {
        return qwen_fail(err, err_len, "%s: '%s' must be a number", path, kw);
    }
    *out = json_number_value(v);
    return 1;
}

static int
compile_number(qwen_grammar *g, int32_t id, const json_t *s, const char *path, char *err,
               size_t err_len)
{
    g_node *n;
    double  d = 0, lo = -1e300, hi = 1e300, m = 0;
    int     rc, any = 0;

    double  flo = -1e300, fhi = 1e300;

    if ((rc = get_bound(s, "minimum", &d, path, err, err_len)) < 0) return -1;
    if (rc) { lo = fmax(lo, ceil(d)); flo = fmax(flo, d); any = 1; }
    if ((rc = get_bound(s, "exclusiveMinimum", &d, path, err, err_len)) < 0) return -1;
    if (rc) { lo = fmax(lo, floor(d) + 1); flo = fmax(flo, d); any = 1; }
    if ((rc = get_bound(s, "maximum", &d, path, err, err_len)) < 0) return -1;
    if (rc) { hi = fmin(hi, floor(d)); fhi = fmin(fhi, d); any = 1; }
    if ((rc = get_bound(s, "exclusiveMaximum", &d, path, err, err_len)) < 0) return -1;
    if (rc) { hi = fmin(hi, ceil(d) - 1); fhi = fmin(fhi, d); any = 1; }
    if ((rc = get_bound(s, "multipleOf", &m, path, err, err_len)) < 0) return -1;
    if (rc && (m <= 0 || m != floor(m) || m > 1e15)) {
        return qwen_fail(err, err_len, "%s: 'multipleOf' other than a positive integer is "
                         "not supported", path);
    }
    n = &g->nodes[id];
    n->bounded = any || m > 0;
    n->ilo = lo < (double) -G_INT_LIM ? -G_INT_LIM : (int64_t) lo;
    n->ihi = hi > (double) G_INT_LIM ? G_INT_LIM : (int64_t) hi;
    n->mult = (int64_t) m;
    n->flo = flo;
    n->fhi = fhi;
    /* a multiple of an integer is written as an integer */
    n->int_only = !(n->types & T_NUMBER) || n->mult > 0;
    if (n->ilo > n->ihi) {
        return qwen_fail(err, err_len, "%s: the bounds leave no integer (bounds are enforced "
                         "on the integer part, so a range without integers is not supported)",
                         path);
    }
    return 0;
}

/* Resolve a local reference ("#", "#/$defs/x", any "#/..." pointer). */
static const json_t *
resolve_ref(const qwen_grammar *g, const char *ref)
{
    const json_t *cur = g->doc;
    char          tok[256];
    size_t        n;
    const char   *p;

    if (ref[0] != '#') {
        return NULL;
    }
    p = ref + 1;
    while (*p == '/' && cur != NULL) {
        p++;
        n = 0;
        while (*p != '\0' && *p != '/' && n + 1 < sizeof(tok)) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
                tok[n++] = p[1] == '0' ? '~' : '/';
                p += 2;
            } else {
                tok[n++] = *p++;
            }
        }
        tok[n] = '\0';
        if (json_is_array(cur)) {
            char *end;
            long  i = strtol(tok, &end, 10);

            cur = *end == '\0' && n > 0 ? json_array_get(cur, (size_t) i) : NULL;
        } else {
            cur = json_object_get(cur, tok);
        }
    }
    return *p == '\0' ? cur : NULL;
}

static int
only_annotations(const json_t *s, const char *kw, const char *path, char *err, size_t err_len)
{
    const char *key;
    json_t     *v;

    json_object_foreach((json_t *) s, key, v) {
        if (strcmp(key, kw) != 0 && !in_list(ANNOTATIONS, key)) {
            return qwen_fail(err, err_len, "%s: '%s' alongside '%s' is not supported", path, key,
                             kw);
        }
    }
    return 0;
}

static uint32_t
node_types(const qwen_grammar *g, int32_t id, int depth)
{
    const g_node *n = &g->nodes[id];
    uint32_t      t = 0;
    int32_t       i;

    if (n->building || depth > 64) {
        return T_ANY;
    }
    if (n->kind != K_ANYOF) {
        return n->types;
    }
    for (i = 0; i < n->n_alt; i++) {
        t |= node_types(g, g->ints[n->alt0 + i], depth + 1);
    }
    return t;
}

/* oneOf is anyOf when no value can match two branches: here, when they
 * take different JSON types, or are exact values with no value in common. */
static int
disjoint(const qwen_grammar *g, int32_t a, int32_t b)
{
    const g_node *x = &g->nodes[a], *y = &g->nodes[b];
    int32_t       i, j;

    if (!(node_types(g, a, 0) & node_types(g, b, 0))) {
        return 1;
    }
    if (x->building || y->building || x->kind != K_EXACT || y->kind != K_EXACT) {
        return 0;
    }
    for (i = 0; i < x->n_ex; i++) {
        for (j = 0; j < y->n_ex; j++) {
            const g_str *p = &g->strs[x->ex0 + i], *q = &g->strs[y->ex0 + j];

            if (p->len == q->len && memcmp(p->s, q->s, p->len) == 0) {
                return 0;
            }
        }
    }
    return 1;
}

static int
compile_anyof(qwen_grammar *g, int32_t id, const json_t *s, const char *kw, int depth,
              const char *path, char *err, size_t err_len)
{
    const json_t *alts = json_object_get(s, kw);
    size_t        i, j, n = json_array_size(alts);
    int32_t       first, child;
    char          sub[512], sub0[512], idx[24];

    if (only_annotations(s, kw, path, err, err_len) != 0) {
        return -1;
    }
    if (!json_is_array(alts) || n == 0 || n > G_MAX_PROPS) {
        return qwen_fail(err, err_len, "%s: '%s' must be an array of 1 to %d schemas", path, kw,
                         G_MAX_PROPS);
    }
    first = add_ints(g, (int32_t) n);
    if (first < 0) {
        return qwen_fail(err, err_len, "out of memory");
    }
    for (i = 0; i < n; i++) {
        snprintf(idx, sizeof(idx), "%zu", i);
        sub_path(sub0, sizeof(sub0), path, kw);
        sub_path(sub, sizeof(sub), sub0, idx);
        child = compile(g, json_array_get(alts, i), depth + 1, sub, err, err_len);
        if (child < 0) {
            return -1;
        }
        g->ints[first + (int32_t) i] = child;
    }
    if (strcmp(kw, "oneOf") == 0) {
        for (i = 0; i < n; i++) {
            for (j = i + 1; j < n; j++) {
                if (!disjoint(g, g->ints[first + (int32_t) i], g->ints[first + (int32_t) j])) {
                    return qwen_fail(err, err_len, "%s: 'oneOf' whose branches %zu and %zu may "
                                     "both match is not supported (use anyOf, or branches of "
                                     "different types or enum values)", path, i, j);
                }
            }
        }
    }
    g->nodes[id].kind = K_ANYOF;
    g->nodes[id].alt0 = first;
    g->nodes[id].n_alt = (int32_t) n;
    return 0;
}

/* Compile schema s into node id. */
static int
compile_into(qwen_grammar *g, const json_t *s, int32_t id, int depth, const char *path,
             char *err, size_t err_len)
{
    const json_t *type, *v, *ev;
    const char   *key;
    uint32_t      types = 0;
    int32_t       child;
    size_t        i;

    if (depth >= 64) {
        return qwen_fail(err, err_len, "%s: the schema nests deeper than 64 levels", path);
    }
    g->nodes[id].building = 1;
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
        g->nodes[id].types = T_ANY;
        g->nodes[id].items = 0;
        g->nodes[id].building = 0;
        return 0;
    }
    if (json_is_false(s)) {
        return qwen_fail(err, err_len, "%s: the schema false (no value) is not supported", path);
    }
    if (!json_is_object(s)) {
        return qwen_fail(err, err_len, "%s: a schema must be an object", path);
    }
    json_object_foreach((json_t *) s, key, v) {
        if (!in_list(KEYWORDS, key) && !in_list(ANNOTATIONS, key)) {
            return qwen_fail(err, err_len, "%s: '%.64s' is not supported", path, key);
        }
    }
    if (json_object_get(s, "$ref") != NULL) {
        /* a reference to a reference: one alternative */
        if (only_annotations(s, "$ref", path, err, err_len) != 0
            || (child = compile(g, s, depth + 1, path, err, err_len)) < 0
            || (i = (size_t) add_ints(g, 1), (int32_t) i < 0))
        {
            return -1;
        }
        g->ints[i] = child;
        g->nodes[id].kind = K_ANYOF;
        g->nodes[id].alt0 = (int32_t) i;
        g->nodes[id].n_alt = 1;
        g->nodes[id].building = 0;
        return 0;
    }
    if (json_object_get(s, "anyOf") != NULL || json_object_get(s, "oneOf") != NULL) {
        if (json_object_get(s, "anyOf") != NULL && json_object_get(s, "oneOf") != NULL) {
            return qwen_fail(err, err_len, "%s: 'oneOf' alongside 'anyOf' is not supported",
                             path);
        }
        if (compile_anyof(g, id, s, json_object_get(s, "anyOf") != NULL ? "anyOf" : "oneOf",
                          depth, path, err, err_len) != 0)
        {
            return -1;
        }
        g->nodes[id].building = 0;
        return 0;
    }
    type = json_object_get(s, "type");
    if (json_is_string(type)) {
        if (type_bit(json_string_value(type), &types) != 0) {
            return qwen_fail(err, err_len, "%s: unknown type '%.40s'", path,
                             json_string_value(type));
        }
    } else if (json_is_array(type) && json_array_size(type) > 0) {
        for (i = 0; i < json_array_size(type); i++) {
            v = json_array_get(type, i);
            if (!json_is_string(v) || type_bit(json_string_value(v), &types) != 0) {
                return qwen_fail(err, err_len, "%s: 'type' must name JSON types", path);
            }
        }
    } else if (type != NULL) {
        return qwen_fail(err, err_len, "%s: 'type' must be a string or an array of strings",
                         path);
    }
    ev = json_object_get(s, "enum");
    if (ev != NULL || json_object_get(s, "const") != NULL) {
        json_t *one = NULL;
        int     rc;

        json_object_foreach((json_t *) s, key, v) {
            if (strcmp(key, "enum") != 0 && strcmp(key, "const") != 0
                && strcmp(key, "type") != 0 && !in_list(ANNOTATIONS, key))
            {
                return qwen_fail(err, err_len, "%s: '%s' alongside '%s' is not supported", path,
                                 key, ev != NULL ? "enum" : "const");
            }
        }
        if (ev != NULL && json_object_get(s, "const") != NULL) {
            return qwen_fail(err, err_len, "%s: 'enum' alongside 'const' is not supported",
                             path);
        }
        if (ev != NULL && !json_is_array(ev)) {
            return qwen_fail(err, err_len, "%s: 'enum' must be an array", path);
        }
        if (ev == NULL) {
            one = json_array();
            if (one == NULL || json_array_append(one, json_object_get(s, "const")) != 0) {
                json_decref(one);
                return qwen_fail(err, err_len, "out of memory");
            }
        }
        rc = compile_exact(g, id, one != NULL ? one : ev, types, path,
                           ev != NULL ? "enum" : "const", err, err_len);
        json_decref(one);
        g->nodes[id].building = 0;
        return rc;
    }
    if (type == NULL) {
        types = T_ANY;
        if (json_object_get(s, "properties") != NULL) {
            types = T_OBJECT;
        } else if (json_object_get(s, "items") != NULL
                   || json_object_get(s, "prefixItems") != NULL)
        {
            types = T_ARRAY;
        }
    }
    g->nodes[id].kind = K_TYPES;
    g->nodes[id].types = types;
    if ((types & T_OBJECT) && compile_object(g, id, s, depth, path, err, err_len) != 0) {
        return -1;
    }
    if ((types & T_ARRAY) && compile_array(g, id, s, depth, path, err, err_len) != 0) {
        return -1;
    }
    if ((types & T_STRING) && compile_string(g, id, s, path, err, err_len) != 0) {
        return -1;
    }
    if ((types & (T_NUMBER | T_INTEGER))
        && compile_number(g, id, s, path, err, err_len) != 0)
    {
        return -1;
    }
    /* a keyword for a type the schema does not allow constrains nothing
     * the model can write: accepted as JSON Schema says */
    g->nodes[id].building = 0;
    return 0;
}

/* Compile schema s into a node; returns its index or -1 (err set). */
static int32_t
compile(qwen_grammar *g, const json_t *s, int depth, const char *path, char *err,
        size_t err_len)
{
    const json_t *ref = json_is_object(s) ? json_object_get(s, "$ref") : NULL, *target;
    g_ref        *grown;
    int32_t       id, i;
    char          sub[512];

    if (ref != NULL) {
        if (!json_is_string(ref)) {
            qwen_fail(err, err_len, "%s: '$ref' must be a string", path);
            return -1;
        }
        if (only_annotations(s, "$ref", path, err, err_len) != 0) {
            return -1;
        }
        target = resolve_ref(g, json_string_value(ref));
        if (target == NULL) {
            qwen_fail(err, err_len, "%s: '$ref' \"%.100s\" is not supported (only local "
                      "references such as #/$defs/name that resolve)", path,
                      json_string_value(ref));
            return -1;
        }
        for (i = 0; i < g->n_refmap; i++) {
            if (g->refmap[i].target == target) {
                return g->refmap[i].node;
            }
        }
        id = add_node(g, 0);
        grown = realloc(g->refmap, (size_t) (g->n_refmap + 1) * sizeof(*grown));
        if (id < 0 || grown == NULL) {
            if (grown != NULL) g->refmap = grown;
            qwen_fail(err, err_len, "the schema is too large (%d nodes at most)", G_MAX_NODES);
            return -1;
        }
        g->refmap = grown;
        g->refmap[g->n_refmap].target = target;
        g->refmap[g->n_refmap].node = id;
        g->n_refmap++;
        snprintf(sub, sizeof(sub), "%s", json_string_value(ref));
        return compile_into(g, target, id, depth + 1, sub, err, err_len) == 0 ? id : -1;
    }
    id = add_node(g, 0);
    if (id < 0) {
        qwen_fail(err, err_len, "the schema is too large (%d nodes at most)", G_MAX_NODES);
        return -1;
    }
    return compile_into(g, s, id, depth, path, err, err_len) == 0 ? id : -1;
}

/* ------------------------------------------------------ integer bounds */

static int64_t
ceil_mult(int64_t a, int64_t m)
{
    int64_t q = a / m;

    if (q * m < a) q++;
    return q * m;
}

/* Fewest more digits that make a valid integer of the digits so far
 * (sign neg, value v, ndig of them; v 0 with ndig 1 is a final "0"), or
 * -1 when none does. */
static int
int_more(const g_node *n, int neg, int64_t v, int ndig)
{
    int64_t p, lo, hi, a, b;
    int     k;

    for (k = 0; ndig + k <= G_MAX_INT; k++) {
        if (v == 0 && k > 0) {
            break;   /* no leading zeros */
        }
        p = POW10[k];
        lo = v * p;
        hi = lo + p - 1;
        a = neg ? -hi : lo;
        b = neg ? -lo : hi;
        if (a < n->ilo) a = n->ilo;
        if (b > n->ihi) b = n->ihi;
        if (a > b) {
            continue;
        }
        if (n->mult == 0 || ceil_mult(a, n->mult) <= b) {
            return k;
        }
    }
    return -1;
}

/* Fewest digits after a '-', or -1 */
static int
minus_more(const g_node *n)
{
    int d, k, best = -1;

    for (d = 0; d <= 9; d++) {
        k = int_more(n, 1, d, 1);
        if (k >= 0 && (best < 0 || k + 1 < best)) {
            best = k + 1;
        }
    }
    return best;
}

/* May a fraction follow the integer part? Only when every value it can
 * give is in range: numbers are bounded by sign and integer part. With
 * 15 significant digits at most a fraction never reads back as the next
 * integer, so the interval is open at its far end. */
static int
frac_ok(const g_node *n, int neg, int64_t v)
{
    if (!n->bounded) {
        return 1;
    }
    if (neg) {
        return -v <= n->ihi && (double) (-v - 1) >= n->flo;
    }
    return v >= n->ilo && (double) (v + 1) <= n->fhi;
}

static int32_t
number_minval(const g_node *n)
{
    int64_t v;
    int     d;

    if (!n->bounded) {
        return 1;
    }
    if (n->ilo <= 0 && n->ihi >= 0) {
        return 1;   /* "0" */
    }
    if (n->ilo > 0) {
        v = n->mult ? ceil_mult(n->ilo, n->mult) : n->ilo;
        if (v > n->ihi) return G_INF;
        for (d = 1; d < 16 && v >= POW10[d]; d++) {}
        return d;
    }
    v = n->mult ? -ceil_mult(-n->ihi, n->mult) : n->ihi;
    if (v < n->ilo) return G_INF;
    for (d = 1; d < 16 && -v >= POW10[d]; d++) {}
    return d + 1;
}

/* ----------------------------------------------------- closing costs */

static int32_t
item_node(const qwen_grammar *g, int32_t node, int idx)
{
    const g_node *n = &g->nodes[node];

    if (n->max_items >= 0 && idx >= n->max_items) {
        return -1;
    }
    if (idx < n->n_pref) {
        return g->ints[n->pref0 + idx];
    }
    return n->items;
}

/* The items from idx on that minItems still needs, each with its comma
 * (but the first when first is set). */
static int32_t
arr_rest(const qwen_grammar *g, int32_t node, int idx, int first)
{
    const g_node *n = &g->nodes[node];
    int32_t       total = 0, item;
    int           i;

    for (i = idx; i < n->min_items; i++) {
        item = item_node(g, node, i);
        if (item < 0) {
            return G_INF;
        }
        if (i >= n->n_pref && i > idx) {
            /* the rest are all the same */
            int64_t rest = (int64_t) (n->min_items - i) * (1 + g->nodes[item].minval);

            return add_sat(total, rest > G_INF ? G_INF : (int32_t) rest);
        }
        total = add_sat(total, (i == idx && first ? 0 : 1) + g->nodes[item].minval);
    }
    return total;
}

/* ,"key":value for every required property from j on */
static int32_t
req_rest(const qwen_grammar *g, const g_node *n, int j)
{
    int32_t total = 0;
    int     i;

    for (i = j; i < n->n_props; i++) {
        if (n->required & ((uint64_t) 1 << i)) {
            const g_str *p = &g->props[n->prop0 + i];

            total = add_sat(total, add_sat((int32_t) p->len + 4, g->nodes[p->node].minval));
        }
    }
    return total;
}

static int32_t
node_minval(const qwen_grammar *g, const g_node *n)
{
    int32_t best = G_INF, v;
    int32_t i;

    if (n->kind == K_EXACT) {
        for (i = 0; i < n->n_ex; i++) {
            if ((int32_t) g->strs[n->ex0 + i].len < best) best = (int32_t) g->strs[n->ex0 + i].len;
        }
        return best;
    }
    if (n->kind == K_ANYOF) {
        for (i = 0; i < n->n_alt; i++) {
            v = g->nodes[g->ints[n->alt0 + i]].minval;
            if (v < best) best = v;
        }
        return best;
    }
    if (n->types & (T_NULL | T_BOOL)) best = 4;
    if ((n->types & (T_NUMBER | T_INTEGER)) && number_minval(n) < best) best = number_minval(n);
    if (n->types & T_STRING) {
        v = n->min_len;
        if (n->rx >= 0 && g->rx[n->rx]->bdist[0] > v) v = g->rx[n->rx]->bdist[0];
        if (v + 2 < best) best = v + 2;
    }
    if (n->types & T_OBJECT) {
        v = n->free_obj ? 2 : add_sat(2, req_rest(g, n, 0) - (n->required ? 1 : 0));
        if (v < best) best = v;
    }
    if (n->types & T_ARRAY) {
        v = n->min_items == 0 ? 2 : add_sat(2, arr_rest(g, (int32_t) (n - g->nodes), 0, 1));
        if (v < best) best = v;
    }
    return best;
}

/* fixpoint: recursion through $ref settles from below */
static int
compute_minvals(qwen_grammar *g)
{
    int32_t i, v, j;
    int     changed = 1, pass;

    for (pass = 0; changed && pass < g->n_nodes + 2; pass++) {
        changed = 0;
        for (i = 0; i < g->n_nodes; i++) {
            v = node_minval(g, &g->nodes[i]);
            if (v < g->nodes[i].minval) {
                g->nodes[i].minval = v;
                changed = 1;
            }
        }
    }
    for (i = 0; i < g->n_nodes; i++) {
        g_node *n = &g->nodes[i];
        int32_t first;

        if (n->kind != K_TYPES || n->free_obj || !(n->types & T_OBJECT)) {
            continue;
        }
        first = add_ints(g, n->n_props + 1);
        if (first < 0) {
            return -1;
        }
        n = &g->nodes[i];
        for (j = 0; j <= n->n_props; j++) {
            g->ints[first + j] = req_rest(g, n, j);
        }
        n->reqsum0 = first;
    }
    return 0;
}

/* the top-level value must be an object: a number there could not end */
static int
object_only(const qwen_grammar *g, int32_t id, int depth)
{
    const g_node *n = &g->nodes[id];
    int32_t       i;

    if (depth > 64) {
        return 0;
    }
    if (n->kind == K_ANYOF) {
        for (i = 0; i < n->n_alt; i++) {
            if (!object_only(g, g->ints[n->alt0 + i], depth + 1)) {
                return 0;
            }
        }
        return 1;
    }
    return n->types == T_OBJECT;
}

/* Added tokens (<|im_start|>, <think>, <tool_call>...) are never JSON text.
 * A regular BPE token cannot end in a letter followed by '>' (the
 * pre-tokenizer splits letters from punctuation), so "<...letter...>"
 * spans are added tokens. */
static int
special_token(const char *p, size_t n)
{
    size_t i;

    if (n < 3 || p[0] != '<' || p[n - 1] != '>') {
        return 0;
    }
    for (i = 1; i + 1 < n; i++) {
        if ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')) {
            return 1;
        }
    }
    return 0;
}

/* What a token does inside a string opened before it (no escape or UTF-8
 * sequence open): feed_string's checks, byte by byte, once per token. */
static void
string_kind(qwen_grammar *g, int32_t id, const char *p, size_t n)
{
    size_t  i, chars = 0;
    int     need = 0, e2 = 0, ls = 0;
    uint8_t lo = 0x80, hi = 0xBF, kind = SK_PLAIN;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) p[i];

        if (need > 0) {
            if (c < lo || c > hi) {
                kind = SK_NO;
                break;
            }
            if (e2 == 2 && (c == 0xA8 || c == 0xA9)) {
                ls = 1;
            }
            e2 = e2 == 1 && c == 0x80 ? 2 : 0;
            need--;
            lo = 0x80;
            hi = 0xBF;
            continue;
        }
        if (c == '"' || c == '\\') {
            /* a plain part too long for the byte that holds its length:
             * the automaton decides (SK_ESC's way) */
            kind = c == '"' && i < 255 ? SK_QUOTE : SK_ESC;
            g->tok_pre[id] = (uint8_t) (i < 255 ? i : 255);
            break;
        }
        if (c < 0x20) {
            kind = SK_NO;
            break;
        }
        chars++;
        e2 = 0;
        if (c >= 0x80) {
            lo = 0x80;
            hi = 0xBF;
            if (c >= 0xC2 && c <= 0xDF) {
                need = 1;
            } else if (c >= 0xE0 && c <= 0xEF) {
                need = 2;
                if (c == 0xE0) lo = 0xA0;
                if (c == 0xED) hi = 0x9F;
                if (c == 0xE2) e2 = 1;
            } else if (c >= 0xF0 && c <= 0xF4) {
                need = 3;
                if (c == 0xF0) lo = 0x90;
                if (c == 0xF4) hi = 0x8F;
            } else {
                kind = SK_NO;
                break;
            }
        }
    }
    if (kind == SK_PLAIN) {
        g->tok_pend[id] = (uint8_t) need;
    }
    g->tok_skind[id] = (uint8_t) (kind | (ls ? SK_LS : 0));
    g->tok_chars[id] = (uint8_t) (chars > 255 ? 255 : chars);
}

static int
classify_tokens(qwen_grammar *g)
{
    const char *p;
    size_t      n;
    int32_t     id, i, k, *pos, *by3;
    size_t      cnt = (size_t) (g->n_tok = qwen_tokenizer_vocab_size(g->tok));

    if (cnt == 0) {
        cnt = 1;
    }
    g->tok_class = malloc(cnt * sizeof(uint16_t));
    g->tok_nows = malloc(cnt);
    g->by_first = malloc(cnt * sizeof(int32_t));
    g->by_first_off = calloc(259, sizeof(int32_t));
    g->by2_off = calloc(B2_KEYS + 1, sizeof(int32_t));
    g->tok_skind = calloc(cnt, 1);
    g->tok_chars = calloc(cnt, 1);
    g->tok_pend = calloc(cnt, 1);
    g->tok_pre = calloc(cnt, 1);
    g->quote_ids = malloc(cnt * sizeof(int32_t));
    g->slow_ids = malloc(cnt * sizeof(int32_t));
    pos = malloc((B2_KEYS + 1) * sizeof(int32_t));
    if (g->tok_class == NULL || g->tok_nows == NULL || g->by_first == NULL
        || g->by_first_off == NULL || g->by2_off == NULL || g->tok_skind == NULL
        || g->tok_chars == NULL || g->tok_pend == NULL || g->tok_pre == NULL
        || g->quote_ids == NULL || g->slow_ids == NULL || pos == NULL)
    {
        free(pos);
        return -1;
    }
    for (id = 0; id < g->n_tok; id++) {
        p = qwen_token_bytes(g->tok, id, &n);
        if (qwen_token_is_eog(g->tok, id)) {
            g->tok_class[id] = TC_EOG;
        } else if (p == NULL || n == 0 || special_token(p, n)) {
            g->tok_class[id] = TC_NEVER;
        } else {
            g->tok_class[id] = (unsigned char) p[0];
            string_kind(g, id, p, n);
            if ((g->tok_skind[id] & ~SK_LS) == SK_QUOTE && g->tok_chars[id] < 255) {
                g->quote_ids[g->n_quote++] = id;
            } else if ((g->tok_skind[id] & ~SK_LS) == SK_ESC
                       || ((g->tok_skind[id] & ~SK_LS) != SK_NO && g->tok_chars[id] == 255))
            {
                /* escapes, and tokens of 255+ characters: the automaton */
                g->slow_ids[g->n_slow++] = id;
            }
            /* the sort key: first byte, then second byte (0: none) */
            k = B2(g->tok_class[id], n >= 2 ? (unsigned char) p[1] + 1 : 0);
            g->by2_off[k + 1]++;
        }
        if (g->tok_class[id] == TC_EOG) {
            g->by2_off[B2_KEYS - 1 + 1]++;
        }
        while (p != NULL && n > 0 && is_ws((unsigned char) *p)) {
            p++;
            n--;
        }
        g->tok_nows[id] = p != NULL && n > 0 ? (uint8_t) *p : ' ';
    }
    /* counting sort by (first byte, second byte), EOG last */
    for (k = 1; k <= B2_KEYS; k++) {
        g->by2_off[k] += g->by2_off[k - 1];
    }
    /* the ids in third-byte order first (a stable pass): then each (first,
     * second) group is ordered by it, and the walk feeds each three-byte
     * prefix once */
    by3 = malloc(cnt * sizeof(int32_t));
    if (by3 == NULL) {
        free(pos);
        return -1;
    }
    memset(pos, 0, 258 * sizeof(int32_t));
    for (id = 0; id < g->n_tok; id++) {
        p = qwen_token_bytes(g->tok, id, &n);
        pos[(p != NULL && n >= 3 ? (unsigned char) p[2] + 1 : 0) + 1]++;
    }
    for (k = 1; k < 258; k++) {
        pos[k] += pos[k - 1];
    }
    for (id = 0; id < g->n_tok; id++) {
        p = qwen_token_bytes(g->tok, id, &n);
        by3[pos[p != NULL && n >= 3 ? (unsigned char) p[2] + 1 : 0]++] = id;
    }
    memcpy(pos, g->by2_off, (B2_KEYS + 1) * sizeof(int32_t));
    for (i = 0; i < g->n_tok; i++) {
        id = by3[i];
        if (g->tok_class[id] == TC_EOG) {
            g->by_first[pos[B2_KEYS - 1]++] = id;
        } else if (g->tok_class[id] != TC_NEVER) {
            p = qwen_token_bytes(g->tok, id, &n);
            k = B2(g->tok_class[id], n >= 2 ? (unsigned char) p[1] + 1 : 0);
            g->by_first[pos[k]++] = id;
        }
    }
    free(by3);
    free(pos);
    /* the id lists hold a few thousand: give the rest back (a shrink
     * that fails keeps the larger block) */
    if ((by3 = realloc(g->quote_ids, (size_t) (g->n_quote + 1) * sizeof(int32_t))) != NULL) {
        g->quote_ids = by3;
    }
    if ((by3 = realloc(g->slow_ids, (size_t) (g->n_slow + 1) * sizeof(int32_t))) != NULL) {
        g->slow_ids = by3;
    }
    for (k = 0; k <= 256; k++) {
        g->by_first_off[k] = g->by2_off[B2(k, 0)];
    }
    g->by_first_off[257] = g->by_first_off[258] = g->by2_off[B2_KEYS];
    return 0;
}

static void
plan_free(g_plan *pl)
{
    if (pl != NULL) {
        free(pl->grp_off);
        free(pl->ids);
        free(pl->seq_off);
        free(pl->seq);
        free(pl->len);
        free(pl->pend);
        free(pl->lcp);
        free(pl);
    }
}

static int
grow(void **p, size_t size)
{
    void *q = realloc(*p, size);

    if (q == NULL) {
        return -1;
    }
    *p = q;
    return 0;
}

static __thread const g_plan *sort_plan;   /* plan_order's qsort */

static int
plan_order(const void *a, const void *b)
{
    const g_plan *pl = sort_plan;
    int32_t       x = *(const int32_t *) a, y = *(const int32_t *) b;
    int           lx = pl->len[x], ly = pl->len[y];
    int           c = memcmp(pl->seq + pl->seq_off[x], pl->seq + pl->seq_off[y],
                             (size_t) (lx < ly ? lx : ly));

    if (c != 0) return c;
    if (lx != ly) return lx - ly;
    return (int) pl->pend[x] - (int) pl->pend[y];
}

/* The classes of rx's symbols (NULL: one class, strings without a
 * pattern): symbols no position of it tells apart share one. */
static void
plan_classes(const g_regex *rx, uint8_t *cls, uint8_t *rep)
{
    int i, j, n_cls = 0;

    memset(rep, 0, G_RX_SYMS);
    for (i = 0; i < G_RX_SYMS; i++) {
        for (j = 0; rx != NULL && j < i; j++) {
            if (memcmp(&rx->sym[i], &rx->sym[j], sizeof(g_bits)) == 0) {
                break;
            }
        }
        if (rx != NULL && j == i) {
            rep[n_cls] = (uint8_t) i;
            cls[i] = (uint8_t) n_cls++;
        } else {
            cls[i] = rx != NULL ? cls[j] : 0;
        }
    }
}

static void
plan_release(g_plan *pl)
{
    if (pl != NULL && __atomic_sub_fetch(&pl->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        plan_free(pl);
    }
}

/* The plain tokens grouped by class sequence (and UTF-8 bytes due) under
 * the classes cls (rep: a symbol of each). One reference. */
static g_plan *
plan_build(const qwen_grammar *g, const uint8_t *cls, const uint8_t *rep)
{
    g_plan   *pl = calloc(1, sizeof(*pl));
    int32_t  *grp = NULL, *slot = NULL, *order = NULL, *rank = NULL, *fill = NULL;
    uint8_t   buf[256], *grown;
    int32_t   id, i, j, cap_grp = 1024, n_plain = 0;
    size_t    n, used = 0, cap_seq = 16384, mask, h, k;
    const char *p;

    if (pl == NULL) {
        return NULL;
    }
    pl->refs = 1;
    memcpy(pl->cls, cls, G_RX_SYMS);
    memcpy(pl->rep, rep, G_RX_SYMS);
    for (id = 0; id < g->n_tok; id++) {
        n_plain += (g->tok_skind[id] & ~SK_LS) == SK_PLAIN && g->tok_chars[id] < 255;
    }
    for (mask = 1024; mask < (size_t) n_plain * 2; mask <<= 1) { }
    slot = malloc(mask * sizeof(int32_t));
    grp = malloc((size_t) (g->n_tok > 0 ? g->n_tok : 1) * sizeof(int32_t));
    pl->seq = malloc(cap_seq);
    pl->seq_off = malloc((size_t) cap_grp * sizeof(int32_t));
    pl->len = malloc((size_t) cap_grp);
    pl->pend = malloc((size_t) cap_grp);
    if (slot == NULL || grp == NULL || pl->seq == NULL || pl->seq_off == NULL
        || pl->len == NULL || pl->pend == NULL)
    {
        goto fail;
    }
    memset(slot, 0xff, mask * sizeof(int32_t));
    mask--;
    for (id = 0; id < g->n_tok; id++) {
        uint8_t pend = (uint8_t) (g->tok_pend[id] | (g->tok_skind[id] & SK_LS ? 0x80 : 0));
        size_t  len = 0;

        grp[id] = -1;
        if ((g->tok_skind[id] & ~SK_LS) != SK_PLAIN || g->tok_chars[id] == 255) {
            continue;
        }
        p = qwen_token_bytes(g->tok, id, &n);
        for (k = 0; k < n; k++) {
            unsigned char c = (unsigned char) p[k];

            if ((c & 0xC0) != 0x80) {
                buf[len++] = pl->cls[c < 0x80 ? c : G_RX_NONASCII];
            }
        }
        h = 2166136261u ^ pend;
        for (k = 0; k < len; k++) {
            h = (h ^ buf[k]) * 16777619u;
        }
        h = (h ^ len) * 16777619u;
        for (h &= mask; slot[h] >= 0; h = (h + 1) & mask) {
            j = slot[h];
            if (pl->len[j] == len && pl->pend[j] == pend
                && memcmp(pl->seq + pl->seq_off[j], buf, len) == 0)
            {
                break;
            }
        }
        if (slot[h] < 0) {
            if (pl->n_grp == cap_grp) {
                cap_grp *= 2;
                if (grow((void **) &pl->seq_off, (size_t) cap_grp * sizeof(int32_t)) != 0
                    || grow((void **) &pl->len, (size_t) cap_grp) != 0
                    || grow((void **) &pl->pend, (size_t) cap_grp) != 0)
                {
                    goto fail;
                }
            }
            if (used + len > cap_seq) {
                cap_seq = cap_seq * 2 + len;
                grown = realloc(pl->seq, cap_seq);
                if (grown == NULL) {
                    goto fail;
                }
                pl->seq = grown;
            }
            memcpy(pl->seq + used, buf, len);
            pl->seq_off[pl->n_grp] = (int32_t) used;
            pl->len[pl->n_grp] = (uint8_t) len;
            pl->pend[pl->n_grp] = pend;
            used += len;
            slot[h] = pl->n_grp++;
        }
        grp[id] = slot[h];
    }
    /* groups in class-sequence order; tokens by group */
    order = malloc((size_t) (pl->n_grp + 1) * sizeof(int32_t));
    rank = malloc((size_t) (pl->n_grp + 1) * sizeof(int32_t));
    fill = calloc((size_t) pl->n_grp + 2, sizeof(int32_t));
    pl->grp_off = calloc((size_t) pl->n_grp + 1, sizeof(int32_t));
    pl->ids = malloc((size_t) (n_plain > 0 ? n_plain : 1) * sizeof(int32_t));
    pl->lcp = malloc((size_t) (pl->n_grp + 1));
    if (order == NULL || rank == NULL || fill == NULL || pl->grp_off == NULL || pl->ids == NULL
        || pl->lcp == NULL)
    {
        goto fail;
    }
    for (i = 0; i < pl->n_grp; i++) {
        order[i] = i;
    }
    sort_plan = pl;
    qsort(order, (size_t) pl->n_grp, sizeof(int32_t), plan_order);
    for (i = 0; i < pl->n_grp; i++) {
        rank[order[i]] = i;
    }
    for (id = 0; id < g->n_tok; id++) {
        if (grp[id] >= 0) {
            fill[rank[grp[id]] + 1]++;
        }
    }
    for (i = 0; i < pl->n_grp; i++) {
        fill[i + 1] += fill[i];
        pl->grp_off[i + 1] = fill[i + 1];
    }
    for (id = 0; id < g->n_tok; id++) {
        if (grp[id] >= 0) {
            pl->ids[fill[rank[grp[id]]]++] = id;
        }
    }
    {
        /* the per-group fields in the new order */
        int32_t *so = malloc((size_t) (pl->n_grp + 1) * sizeof(int32_t));
        uint8_t *ln = malloc((size_t) pl->n_grp + 1), *pd = malloc((size_t) pl->n_grp + 1);

        if (so == NULL || ln == NULL || pd == NULL) {
            free(so);
            free(ln);
            free(pd);
            goto fail;
        }
        for (i = 0; i < pl->n_grp; i++) {
            so[i] = pl->seq_off[order[i]];
            ln[i] = pl->len[order[i]];
            pd[i] = pl->pend[order[i]];
        }
        free(pl->seq_off);
        free(pl->len);
        free(pl->pend);
        pl->seq_off = so;
        pl->len = ln;
        pl->pend = pd;
    }
    for (i = 0; i < pl->n_grp; i++) {
        int m = 0, lim = i == 0 ? 0 : pl->len[i] < pl->len[i - 1] ? pl->len[i] : pl->len[i - 1];

        while (m < lim && pl->seq[pl->seq_off[i] + m] == pl->seq[pl->seq_off[i - 1] + m]) {
            m++;
        }
        pl->lcp[i] = (uint8_t) m;
    }
    free(slot);
    free(grp);
    free(order);
    free(rank);
    free(fill);
    return pl;
fail:
    free(slot);
    free(grp);
    free(order);
    free(rank);
    free(fill);
    plan_free(pl);
    return NULL;
}

/* rx's plan: from the tokenizer's cache when a pattern with the same
 * classes was compiled lately, else built and cached. One reference. */
static g_plan *
plan_get(const qwen_grammar *g, const g_regex *rx)
{
    g_vocab *v = (g_vocab *) g->vocab;   /* the cache is the mutable part */
    uint8_t  cls[G_RX_SYMS], rep[G_RX_SYMS];
    g_plan  *pl = NULL, *old = NULL;
    int      i, slot = 0;

    plan_classes(rx, cls, rep);
    pthread_mutex_lock(&v->lock);
    for (i = 0; i < PLAN_CACHE; i++) {
        if (v->cache[i] != NULL && memcmp(v->cache[i]->cls, cls, G_RX_SYMS) == 0) {
            pl = v->cache[i];
            __atomic_add_fetch(&pl->refs, 1, __ATOMIC_RELAXED);
            v->cache_used[i] = ++v->clock;
            break;
        }
    }
    pthread_mutex_unlock(&v->lock);
    if (pl != NULL || (pl = plan_build(g, cls, rep)) == NULL) {
        return pl;
    }
    pthread_mutex_lock(&v->lock);
    for (i = 1; i < PLAN_CACHE; i++) {   /* an empty slot, else the oldest */
        if (v->cache[slot] == NULL) break;
        if (v->cache[i] == NULL || v->cache_used[i] < v->cache_used[slot]) slot = i;
    }
    old = v->cache[slot];
    v->cache[slot] = pl;
    v->cache_used[slot] = ++v->clock;
    __atomic_add_fetch(&pl->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&v->lock);
    plan_release(old);
    return pl;
}

/* Plan 0 (the tokenizer's) for strings without a pattern; patterns whose
 * classes match an earlier plan's share it. */
static int
build_plans(qwen_grammar *g)
{
    int32_t r, j;

    g->plans = calloc((size_t) g->n_rx + 1, sizeof(g_plan *));
    g->rx_plan = calloc((size_t) g->n_rx + 1, sizeof(int32_t));
    if (g->plans == NULL || g->rx_plan == NULL) {
        return -1;
    }
    g->plans[0] = g->vocab->plain;
    g->n_plans = 1;
    for (r = 0; r < g->n_rx; r++) {
        g_plan *pl = plan_get(g, g->rx[r]);

        if (pl == NULL) {
            return -1;
        }
        for (j = 1; j < g->n_plans; j++) {
            if (g->plans[j] == pl || memcmp(g->plans[j]->cls, pl->cls, G_RX_SYMS) == 0) {
                break;
            }
        }
        if (j < g->n_plans) {
            plan_release(pl);   /* the same classes: the same groups */
        } else {
            g->plans[g->n_plans++] = pl;
        }
        g->rx_plan[r] = j;
    }
    return 0;
}

static void
vocab_free(void *p)
{
    g_vocab *v = p;
    int      i;

    if (v != NULL) {
        free(v->tok_class);
        free(v->tok_nows);
        free(v->by_first);
        free(v->by_first_off);
        free(v->by2_off);
        free(v->tok_skind);
        free(v->tok_chars);
        free(v->tok_pend);
        free(v->tok_pre);
        free(v->quote_ids);
        free(v->slow_ids);
        plan_free(v->plain);
        for (i = 0; i < PLAN_CACHE; i++) {
            plan_release(v->cache[i]);
        }
        pthread_mutex_destroy(&v->lock);
        free(v);
    }
}

/* The tables of every grammar over tok: classify_tokens and plan 0 on a
 * scratch grammar, whose arrays the g_vocab then owns. */
static void *
vocab_build(const qwen_tokenizer *tok)
{
    qwen_grammar *s = calloc(1, sizeof(*s));
    g_vocab      *v = calloc(1, sizeof(*v));
    uint8_t       cls[G_RX_SYMS], rep[G_RX_SYMS];
    int           ok;

    if (s == NULL || v == NULL) {
        free(s);
        free(v);
        return NULL;
    }
    s->tok = tok;
    pthread_mutex_init(&v->lock, NULL);
    plan_classes(NULL, cls, rep);
    ok = classify_tokens(s) == 0 && (v->plain = plan_build(s, cls, rep)) != NULL;
    v->n_tok = s->n_tok;
    v->tok_class = s->tok_class;
    v->tok_nows = s->tok_nows;
    v->by_first = s->by_first;
    v->by_first_off = s->by_first_off;
    v->by2_off = s->by2_off;
    v->tok_skind = s->tok_skind;
    v->tok_chars = s->tok_chars;
    v->tok_pend = s->tok_pend;
    v->tok_pre = s->tok_pre;
    v->quote_ids = s->quote_ids;
    v->n_quote = s->n_quote;
    v->slow_ids = s->slow_ids;
    v->n_slow = s->n_slow;
    free(s);
    if (!ok) {
        vocab_free(v);
        return NULL;
    }
    return v;
}

static int
use_vocab(qwen_grammar *g)
{
    const g_vocab *v = qwen_tokenizer_attachment(g->tok, vocab_build, vocab_free);

    if (v == NULL) {
        return -1;
    }
    g->vocab = v;
    g->n_tok = v->n_tok;
    g->tok_class = v->tok_class;
    g->tok_nows = v->tok_nows;
    g->by_first = v->by_first;
    g->by_first_off = v->by_first_off;
    g->by2_off = v->by2_off;
    g->tok_skind = v->tok_skind;
    g->tok_chars = v->tok_chars;
    g->tok_pend = v->tok_pend;
    g->tok_pre = v->tok_pre;
    g->quote_ids = v->quote_ids;
    g->n_quote = v->n_quote;
    g->slow_ids = v->slow_ids;
    g->n_slow = v->n_slow;
    return 0;
}

qwen_grammar *
qwen_grammar_new_json(const qwen_tokenizer *tok, const char *schema_json, char *err,
                      size_t err_len)
{
    qwen_grammar *g;
    json_t       *schema;
    json_error_t  jerr;
    int32_t       root;

    if (tok == NULL) {
        qwen_fail(err, err_len, "a grammar needs the model's tokenizer");
        return NULL;
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL) {
        qwen_fail(err, err_len, "out of memory");
        return NULL;
    }
    g->refs = 1;
    g->tok = tok;
    if (use_vocab(g) != 0 || add_node(g, T_ANY) != 0) {   /* node 0: any value */
        qwen_fail(err, err_len, "out of memory");
        goto fail;
    }
    if (schema_json == NULL) {
        root = add_node(g, T_OBJECT);       /* JSON mode: any object */
        if (root < 0) {
            qwen_fail(err, err_len, "out of memory");
            goto fail;
        }
    } else {
        schema = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
        if (schema == NULL) {
            qwen_fail(err, err_len, "the schema is not valid JSON: %s", jerr.text);
            goto fail;
        }
        g->doc = schema;
        root = compile(g, schema, 0, "#", err, err_len);
        g->doc = NULL;
        free(g->refmap);
        g->refmap = NULL;
        json_decref(schema);
        if (root < 0) {
            goto fail;
        }
        if (!object_only(g, root, 0)) {
            qwen_fail(err, err_len, "the schema's top level must be of type object");
            goto fail;
        }
    }
    g->root = root;
    if (compute_minvals(g) != 0 || build_plans(g) != 0) {
        qwen_fail(err, err_len, "out of memory");
        goto fail;
    }
    if (g->nodes[root].minval >= G_INF) {
        qwen_fail(err, err_len, "the schema admits no finite value (a required property or "
                  "item that recurses without end?)");
        goto fail;
    }
    return g;
fail:
    qwen_grammar_free(g);
    return NULL;
}

qwen_grammar *
qwen_grammar_new_tools(const qwen_tokenizer *tok, const char *call_schema_json, int required,
                       int parallel, char *err, size_t err_len)
{
    qwen_grammar *g;
    int32_t       open, close;

    if (tok == NULL || call_schema_json == NULL) {
        qwen_fail(err, err_len, "tool calls need the tokenizer and the calls' schema");
        return NULL;
    }
    open = qwen_token_id(tok, "<tool_call>", 11);
    close = qwen_token_id(tok, "</tool_call>", 12);
    if (open < 0 || close < 0) {
        qwen_fail(err, err_len, "the tokenizer has no <tool_call> and </tool_call> tokens");
        return NULL;
    }
    g = qwen_grammar_new_json(tok, call_schema_json, err, err_len);
    if (g == NULL) {
        return NULL;
    }
    g->tools = 1;
    g->required = required != 0;
    g->parallel = parallel != 0;
    g->id_open = open;
    g->id_close = close;
    return g;
}

/* One more reference (thread-safe); qwen_grammar_free drops one. */
static void
grammar_retain(const qwen_grammar *g)
{
    __atomic_add_fetch(&((qwen_grammar *) g)->refs, 1, __ATOMIC_RELAXED);
}

void
qwen_grammar_free(qwen_grammar *g)
{
    int32_t i;

    if (g == NULL || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) > 0) {
        return;
    }
    for (i = 0; i < g->n_props; i++) {
        free(g->props[i].s);
    }
    for (i = 0; i < g->n_strs; i++) {
        free(g->strs[i].s);
    }
    for (i = 0; i < g->n_rx; i++) {
        free(g->rx[i]);
    }
    free(g->rx);
    free(g->ints);
    free(g->refmap);
    free(g->props);
    free(g->strs);
    free(g->nodes);
    for (i = 1; g->plans != NULL && i < g->n_plans; i++) {
        plan_release(g->plans[i]);   /* plan 0 is the tokenizer's (g_vocab) */
    }
    free(g->plans);
    free(g->rx_plan);
    free(g);
}

/* ------------------------------------------------------------ automaton */

static size_t
th_size(const g_th *t)
{
    return offsetof(g_th, stack) + t->depth * sizeof(g_frame);
}

/* Only the live part of each thread is copied. */
static void
copy_state(qwen_grammar_state *dst, const qwen_grammar_state *src)
{
    int i;

    memcpy(dst, src, offsetof(qwen_grammar_state, th));
    for (i = 0; i < src->n; i++) {
        memcpy(&dst->th[i], &src->th[i], th_size(&src->th[i]));
    }
}

qwen_grammar_state *
qwen_grammar_state_new(const qwen_grammar *g)
{
    qwen_grammar_state *st = calloc(1, sizeof(*st));

    if (st == NULL) {
        return NULL;
    }
    grammar_retain(g);
    st->g = g;
    st->n = 1;
    st->budget = G_INF;
    st->th[0].mode = S_VALUE;
    st->th[0].cur = g->root;
    st->outer = !g->tools ? O_JSON : g->required ? O_OPEN : O_TEXT;
    update_first(st);
    return st;
}

void
qwen_grammar_state_free(qwen_grammar_state *st)
{
    if (st != NULL) {
        qwen_grammar_free((qwen_grammar *) st->g);
        free(st);
    }
}

static int
json_complete(const qwen_grammar_state *st)
{
    int i;

    for (i = 0; i < st->n; i++) {
        if (st->th[i].mode == S_DONE) {
            return 1;
        }
    }
    return 0;
}

int
qwen_grammar_complete(const qwen_grammar_state *st)
{
    int i;

    if (st->outer != O_JSON) {
        return st->outer == O_TEXT || st->outer == O_AFTER;
    }
    for (i = 0; i < st->n; i++) {
        if (st->th[i].mode == S_DONE) {
            return 1;
        }
    }
    return 0;
}

/* A value ended: its fields are cleared so equal threads are equal. */
static void
value_end(const qwen_grammar *g, g_th *t, int exact)
{
    g_frame *f;

    if (exact >= 0 && t->depth > 0) {
        f = &t->stack[t->depth - 1];
        if (f->is_array && g->nodes[f->node].unique) {
            f->used |= (uint64_t) 1 << exact;
        }
    }
    t->nval = 0;
    t->mask = 0;
    memset(&t->rx, 0, sizeof(t->rx));
    t->cur = 0;
    t->pos = t->uval = t->slen = 0;
    t->sub = t->is_key = t->esc = t->u8_need = t->u8_lo = t->u8_hi = t->u8_e2 = 0;
    t->ndig = t->neg = 0;
    t->mode = t->depth == 0 ? S_DONE : S_AFTER;
}

static int
push(const qwen_grammar *g, g_th *t, int is_array)
{
    g_frame *f;

    if (t->depth == G_MAX_DEPTH) {
        return -1;
    }
    f = &t->stack[t->depth++];
    memset(f, 0, sizeof(*f));
    f->is_array = (uint8_t) is_array;
    f->node = t->cur;
    t->mode = is_array ? S_ARR_FIRST : S_OBJ_FIRST;
    t->cur = is_array ? item_node(g, f->node, 0) : 0;
    return 0;
}

static void
pop(const qwen_grammar *g, g_th *t)
{
    t->depth--;
    value_end(g, t, -1);
}

static int feed_structural(const qwen_grammar *g, g_th *t, unsigned char c);

/* S_EXACT: the candidates that go on with c; a complete one ends the
 * value when c goes on none (numbers: 1 against 12). */
static int
feed_exact(const qwen_grammar *g, g_th *t, unsigned char c)
{
    const g_node *n = &g->nodes[t->cur];
    const g_str  *s = g->strs + n->ex0;
    uint64_t      m, keep = 0;
    int           i, done = -1, longer = 0;

    for (m = t->mask; m != 0; m &= m - 1) {
        i = __builtin_ctzll(m);
        if (t->pos < s[i].len && (unsigned char) s[i].s[t->pos] == c) {
            keep |= (uint64_t) 1 << i;
        } else if (t->pos == s[i].len) {
            done = i;
        }
    }
    if (keep == 0) {
        if (done < 0) {
            return -1;
        }
        value_end(g, t, done);
        return feed_structural(g, t, c);
    }
    t->mask = keep;
    t->pos++;
    /* self-delimiting ends ("...", {...}, [...], literals) end at once */
    for (m = keep; m != 0; m &= m - 1) {
        i = __builtin_ctzll(m);
        if (s[i].len == t->pos) {
            done = i;
        } else {
            longer = 1;
        }
    }
    if (done >= 0 && !longer) {
        value_end(g, t, done);
    }
    return 0;
}

static int
begin_value(const qwen_grammar *g, g_th *t, unsigned char c)
{
    const g_node *n;
    const g_frame *f;
    int           k;

    if (t->cur < 0) {
        return -1;
    }
    n = &g->nodes[t->cur];
    if (n->kind == K_EXACT) {
        t->mode = S_EXACT;
        t->pos = 0;
        t->mask = n->n_ex == 64 ? ~(uint64_t) 0 : ((uint64_t) 1 << n->n_ex) - 1;
        if (t->depth > 0) {
            f = &t->stack[t->depth - 1];
            if (f->is_array && g->nodes[f->node].unique) {
                t->mask &= ~f->used;
            }
        }
        return feed_exact(g, t, c);
    }
    if (n->kind != K_TYPES) {
        return -1;   /* alternatives are split before */
    }
    if (c == '{' && (n->types & T_OBJECT)) {
        return push(g, t, 0);
    }
    if (c == '[' && (n->types & T_ARRAY)) {
        return push(g, t, 1);
    }
    if (c == '"' && (n->types & T_STRING)) {
        t->mode = S_STR;
        t->is_key = 0;
        t->slen = 0;
        memset(&t->rx, 0, sizeof(t->rx));
        t->rx.w[0] = 1;
        return 0;
    }
    if ((c == '-' || (c >= '0' && c <= '9')) && (n->types & (T_NUMBER | T_INTEGER))) {
        t->mode = S_NUM;
        if (c == '-') {
            if (n->bounded && minus_more(n) < 0) {
                return -1;
            }
            t->sub = N_MINUS;
            t->neg = 1;
            t->ndig = 0;
            t->nval = 0;
            return 0;
        }
        k = c - '0';
        if (n->bounded && int_more(n, 0, k, 1) < 0) {
            return -1;
        }
        t->sub = k == 0 ? N_ZERO : N_INT;
        t->neg = 0;
        t->ndig = 1;
        t->nval = k;
        return 0;
    }
    if (((c == 't' || c == 'f') && (n->types & T_BOOL)) || (c == 'n' && (n->types & T_NULL))) {
        t->mode = S_LIT;
        t->sub = c == 't' ? 0 : c == 'f' ? 1 : 2;
        t->pos = 1;
        return 0;
    }
    return -1;
}

/* The properties a key may name now: from next_prop up to the first
 * required one (schema order). */
static uint64_t
key_candidates(const qwen_grammar *g, const g_frame *f)
{
    const g_node *n = &g->nodes[f->node];
    uint64_t      mask = 0;
    int           i;

    for (i = f->next_prop; i < n->n_props; i++) {
        mask |= (uint64_t) 1 << i;
        if (n->required & ((uint64_t) 1 << i)) {
            break;
        }
    }
    return mask;
}

static int
begin_key(const qwen_grammar *g, g_th *t)
{
    const g_frame *f = &t->stack[t->depth - 1];
    const g_node  *n = &g->nodes[f->node];

    t->mode = S_STR;
    t->is_key = 1;
    t->esc = 0;
    t->u8_need = 0;
    t->pos = 0;
    t->mask = 0;
    if (n->free_obj) {
        return 0;
    }
    t->mask = key_candidates(g, f);
    return t->mask != 0 ? 0 : -1;
}

static int
key_matching(const qwen_grammar *g, const g_th *t)
{
    return t->is_key && !g->nodes[t->stack[t->depth - 1].node].free_obj;
}

static int
match_key_byte(const qwen_grammar *g, g_th *t, unsigned char c)
{
    const g_str *s = g->props + g->nodes[t->stack[t->depth - 1].node].prop0;
    uint64_t     m, keep = 0;
    int          i;

    for (m = t->mask; m != 0; m &= m - 1) {
        i = __builtin_ctzll(m);
        if (t->pos < s[i].len && (unsigned char) s[i].s[t->pos] == c) {
            keep |= (uint64_t) 1 << i;
        }
    }
    t->mask = keep;
    t->pos++;
    return keep != 0 ? 0 : -1;
}

/* One character of a value string (sym: ASCII, G_RX_NONASCII, or -1 for
 * a \u escape, which patterns do not take). */
static int
string_char(const qwen_grammar *g, g_th *t, int sym)
{
    const g_node *n = &g->nodes[t->cur];
    g_bits        next;

    if (n->max_len >= 0 && t->slen + 1 > n->max_len) {
        return -1;
    }
    if (n->rx >= 0) {
        if (sym < 0) {
            return -1;
        }
        qwen_regex_step(g->rx[n->rx], &t->rx, sym, &next);
        if (qwen_regex_empty(&next)) {
            return -1;
        }
        if (n->max_len >= 0
            && t->slen + 1 + qwen_regex_dist(g->rx[n->rx], &next, 0) > n->max_len)
        {
            return -1;
        }
        t->rx = next;
    }
    if (t->slen < 65535) {
        t->slen++;
    }
    return 0;
}

static int
end_string(const qwen_grammar *g, g_th *t)
{
    const g_frame *f;
    const g_str   *s;
    const g_node  *n;
    uint64_t       m;
    int            i = -1;

    if (!t->is_key) {
        n = &g->nodes[t->cur];
        if (t->slen < n->min_len
            || (n->rx >= 0 && !qwen_regex_accepting(g->rx[n->rx], &t->rx)))
        {
            return -1;
        }
        value_end(g, t, -1);
        return 0;
    }
    f = &t->stack[t->depth - 1];
    n = &g->nodes[f->node];
    if (n->free_obj) {
        t->mode = S_COLON;
        t->cur = 0;   /* free object: any value */
        t->is_key = 0;
        t->pos = 0;
        return 0;
    }
    s = g->props + n->prop0;
    for (m = t->mask; m != 0; m &= m - 1) {
        if (s[__builtin_ctzll(m)].len == t->pos) {
            i = __builtin_ctzll(m);
            break;
        }
    }
    if (i < 0) {
        return -1;
    }
    t->stack[t->depth - 1].next_prop = (uint8_t) (i + 1);
    t->mode = S_COLON;
    t->cur = s[i].node;
    t->is_key = 0;
    t->pos = 0;
    t->mask = 0;
    return 0;
}

static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* May a '\' come: does some escaped character fit the constraints? */
static int
escape_viable(const qwen_grammar *g, const g_th *t)
{
    static const char chars[] = "\"\\/\b\f\n\r\t";
    const g_node     *n = &g->nodes[t->cur];
    g_th              tmp;
    size_t            i;

    if (n->rx < 0) {
        return n->max_len < 0 || t->slen + 1 <= n->max_len;
    }
    for (i = 0; i < sizeof(chars) - 1; i++) {
        memcpy(&tmp, t, offsetof(g_th, stack));
        if (string_char(g, &tmp, (unsigned char) chars[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
feed_string(const qwen_grammar *g, g_th *t, unsigned char c)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char       *e;
    int               h;

    if (t->esc == 1) {
        t->esc = 0;
        if (c == 'u') {
            t->esc = 2;
            t->uval = 0;
            return t->is_key ? 0 : string_char(g, t, -1);
        }
        e = c != '\0' ? strchr(from, c) : NULL;
        if (e == NULL) {
            return -1;
        }
        return t->is_key ? 0 : string_char(g, t, (unsigned char) to[e - from]);
    }
    if (t->esc >= 2) {
        h = hex_value(c);
        if (h < 0) {
            return -1;
        }
        t->uval = (uint16_t) (t->uval * 16 + h);
        /* no surrogates (pairs are hard to keep valid token by token),
         * refused at the second digit so no prefix is a dead end; no NUL
         * (jansson refuses it): \u000 still has 15 ways to go on */
        if (++t->esc == 4 && t->uval >= 0xD8 && t->uval <= 0xDF) {
            return -1;
        }
        if (t->esc < 6) {
            return 0;
        }
        t->esc = 0;
        h = t->uval != 0;
        t->uval = 0;
        return h ? 0 : -1;
    }
    if (t->u8_need > 0) {
        if (c < t->u8_lo || c > t->u8_hi) {
            return -1;
        }
        /* U+2028 and U+2029 end a line for ECMA's '.': patterns refuse them */
        if (t->u8_e2 == 2 && (c == 0xA8 || c == 0xA9)) {
            return -1;
        }
        t->u8_e2 = t->u8_e2 == 1 && c == 0x80 ? 2 : 0;
        t->u8_need--;
        t->u8_lo = 0x80;
        t->u8_hi = 0xBF;
        return key_matching(g, t) ? match_key_byte(g, t, c) : 0;
    }
    if (c == '"') {
        return end_string(g, t);
    }
    if (c == '\\') {
        if (key_matching(g, t)) {
            return -1;   /* keys are written plainly */
        }
        if (!t->is_key && !escape_viable(g, t)) {
            return -1;   /* no escaped character would fit: no dead end */
        }
        t->esc = 1;
        return 0;
    }
    if (c < 0x20) {
        return -1;
    }
    if (c >= 0x80) {
        /* well-formed UTF-8 (Unicode table 3-7) */
        t->u8_lo = 0x80;
        t->u8_hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            t->u8_need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            t->u8_need = 2;
            if (c == 0xE0) t->u8_lo = 0xA0;
            if (c == 0xED) t->u8_hi = 0x9F;
            if (c == 0xE2 && !t->is_key && g->nodes[t->cur].rx >= 0) t->u8_e2 = 1;
        } else if (c >= 0xF0 && c <= 0xF4) {
            t->u8_need = 3;
            if (c == 0xF0) t->u8_lo = 0x90;
            if (c == 0xF4) t->u8_hi = 0x8F;
        } else {
            return -1;
        }
        if (t->is_key) {
            return key_matching(g, t) ? match_key_byte(g, t, c) : 0;
        }
        return string_char(g, t, G_RX_NONASCII);
    }
    if (t->is_key) {
        return key_matching(g, t) ? match_key_byte(g, t, c) : 0;
    }
    return string_char(g, t, c);
}

/* 0: taken, 1: the number ended before c (c not taken), -1: rejected */
static int
feed_number(const qwen_grammar *g, g_th *t, unsigned char c)
{
    const g_node *n = &g->nodes[t->cur];
    int           digit = c >= '0' && c <= '9', d = c - '0';

    switch (t->sub) {
    case N_MINUS:
        if (!digit || (n->bounded && int_more(n, 1, d, 1) < 0)) return -1;
        t->sub = d == 0 ? N_ZERO : N_INT;
        t->ndig = 1;
        t->nval = d;
        return 0;
    case N_ZERO:
    case N_INT:
        if (digit) {
            if (t->sub == N_ZERO || ++t->ndig > G_MAX_INT) return -1;
            t->nval = t->nval * 10 + d;
            if (n->bounded && int_more(n, t->neg, t->nval, t->ndig) < 0) return -1;
            return 0;
        }
        break;
    case N_DOT:
        if (!digit) return -1;
        t->sub = N_FRAC;
        t->ndig = 1;
        return 0;
    case N_FRAC:
        if (digit) {
            ++t->ndig;
            return t->ndig > G_MAX_FRAC || (n->bounded && t->pos + t->ndig > G_MAX_INT) ? -1
                                                                                      : 0;
        }
        break;
    case N_E:
        if (c == '+' || c == '-') {
            t->sub = N_ESIGN;
            return 0;
        }
        /* fall through */
    case N_ESIGN:
        if (!digit) return -1;
        t->sub = N_EXP;
        t->ndig = 1;
        return 0;
    case N_EXP:
        if (digit) {
            return ++t->ndig > G_MAX_EXP ? -1 : 0;
        }
        return 1;
    default:
        return -1;
    }
    /* after the integer part or the fraction */
    if (c == '.' && t->sub != N_FRAC && !n->int_only) {
        if (!frac_ok(n, t->neg, t->nval) || (n->bounded && t->ndig >= G_MAX_INT)) return -1;
        t->sub = N_DOT;
        t->pos = t->ndig;   /* integer digits, for the bound on all digits */
        return 0;
    }
    if ((c == 'e' || c == 'E') && !n->int_only && !n->bounded) {
        t->sub = N_E;
        return 0;
    }
    if (t->sub != N_FRAC && n->bounded && int_more(n, t->neg, t->nval, t->ndig) != 0) {
        return -1;   /* the integer is out of range as it stands */
    }
    return 1;
}

static int
feed_structural(const qwen_grammar *g, g_th *t, unsigned char c)
{
    g_frame      *f;
    const g_node *n;

    if (is_ws(c)) {
        if (++t->ws_run > G_MAX_WS) {
            return -1;
        }
        if ((c == '\n' || c == '\r') && ++t->nl_run > G_MAX_NL) {
            return -1;
        }
        return 0;
    }
    t->ws_run = 0;
    t->nl_run = 0;
    switch (t->mode) {
    case S_VALUE:
        return begin_value(g, t, c);
    case S_ARR_FIRST:
        f = &t->stack[t->depth - 1];
        if (c == ']') {
            if (g->nodes[f->node].min_items > 0) {
                return -1;
            }
            pop(g, t);
            return 0;
        }
        f->n_items = 1;
        return begin_value(g, t, c);
    case S_OBJ_FIRST:
    case S_AFTER:
        f = &t->stack[t->depth - 1];
        n = &g->nodes[f->node];
        if (t->mode == S_OBJ_FIRST && c == '"') {
            return begin_key(g, t);
        }
        if (c == (f->is_array ? ']' : '}')) {
            if (f->is_array ? f->n_items < n->min_items
                            : (!n->free_obj && f->next_prop < 64
                               && (n->required >> f->next_prop) != 0))
            {
                return -1;   /* items or required properties missing */
            }
            pop(g, t);
            return 0;
        }
        if (c != ',' || t->mode == S_OBJ_FIRST) {
            return -1;
        }
        if (f->is_array) {
            t->cur = item_node(g, f->node, f->n_items);
            if (t->cur < 0) {   /* maxItems (unique items: their number) */
                return -1;
            }
            f->n_items++;
            t->mode = S_VALUE;
            return 0;
        }
        if (!n->free_obj && key_candidates(g, f) == 0) {
            return -1;   /* no property left to write */
        }
        t->mode = S_OBJ_KEY;
        return 0;
    case S_OBJ_KEY:
        return c == '"' ? begin_key(g, t) : -1;
    case S_COLON:
        if (c != ':') {
            return -1;
        }
        t->mode = S_VALUE;
        return 0;
    default:
        return -1;   /* S_DONE: only whitespace */
    }
}

static int
feed_th(const qwen_grammar *g, g_th *t, unsigned char c)
{
    int rc;

    switch (t->mode) {
    case S_STR:
        return feed_string(g, t, c);
    case S_LIT:
        if (c != (unsigned char) LITERALS[t->sub][t->pos]) {
            return -1;
        }
        if (++t->pos == LITERAL_LEN[t->sub]) {
            value_end(g, t, -1);
        }
        return 0;
    case S_NUM:
        rc = feed_number(g, t, c);
        if (rc != 1) {
            return rc;
        }
        value_end(g, t, -1);   /* the number ended: c belongs to what follows */
        return feed_structural(g, t, c);
    case S_EXACT:
        return feed_exact(g, t, c);
    default:
        return feed_structural(g, t, c);
    }
}

static int
th_equal(const g_th *a, const g_th *b)
{
    return a->depth == b->depth && memcmp(a, b, th_size(a)) == 0;
}

/* A thread about to read a value of an anyOf becomes one per branch. */
static void
split(const qwen_grammar *g, qwen_grammar_state *st)
{
    const g_node *n;
    int           i = 0, j;

    while (i < st->n) {
        g_th *t = &st->th[i];

        if ((t->mode != S_VALUE && t->mode != S_ARR_FIRST) || t->cur < 0
            || g->nodes[t->cur].kind != K_ANYOF)
        {
            i++;
            continue;
        }
        n = &g->nodes[t->cur];
        for (j = 1; j < n->n_alt && st->n < G_MAX_THREADS; j++) {
            memcpy(&st->th[st->n], t, th_size(t));
            st->th[st->n].cur = g->ints[n->alt0 + j];
            st->n++;
        }
        t->cur = g->ints[n->alt0];   /* looked at again: it may split too */
    }
}

/* Feed c to every thread; the survivors, without duplicates, stay. */
static int
feed(qwen_grammar_state *st, unsigned char c)
{
    const qwen_grammar *g = st->g;
    int                 i, j, k = 0;

    split(g, st);
    for (i = 0; i < st->n; i++) {
        if (feed_th(g, &st->th[i], c) != 0) {
            continue;
        }
        for (j = 0; j < k; j++) {
            if (th_equal(&st->th[j], &st->th[i])) {
                break;
            }
        }
        if (j < k) {
            continue;
        }
        if (k != i) {
            memcpy(&st->th[k], &st->th[i], th_size(&st->th[i]));
        }
        k++;
    }
    st->n = k;
    return k > 0 ? 0 : -1;
}

/* ------------------------------------------------------ closing costs */

/* What a container still needs once its current value is complete. */
static int32_t
after_cost(const qwen_grammar *g, const g_frame *f)
{
    const g_node *n = &g->nodes[f->node];

    if (f->is_array) {
        return add_sat(arr_rest(g, f->node, f->n_items, 0), 1);
    }
    if (n->free_obj) {
        return 1;
    }
    return add_sat(g->ints[n->reqsum0 + f->next_prop], 1);
}

/* From a key's position pos (-1: before its opening quote): the rest of
 * the key, ':', the value, the required properties after it and '}'. */
static int32_t
key_cost(const qwen_grammar *g, const g_th *t, int pos)
{
    const g_frame *f = &t->stack[t->depth - 1];
    const g_node  *n = &g->nodes[f->node];
    const g_str   *s;
    uint64_t       m;
    int32_t        best = G_INF, c;
    int            i, pend = t->esc == 1 ? 1 : t->esc >= 2 ? 6 - t->esc : t->u8_need;

    if (n->free_obj) {
        return (pos < 0 ? 5 : 4) + pend;   /* "":0} */
    }
    m = pos < 0 ? key_candidates(g, f) : t->mask;
    s = g->props + n->prop0;
    for (; m != 0; m &= m - 1) {
        i = __builtin_ctzll(m);
        c = (int32_t) s[i].len - (pos < 0 ? -1 : pos) + 2;
        c = add_sat(c, g->nodes[s[i].node].minval);
        c = add_sat(c, g->ints[n->reqsum0 + i + 1]);
        if (c < best) best = c;
    }
    return add_sat(best, 1);
}

static int32_t
string_rest(const qwen_grammar *g, const g_th *t)
{
    const g_node *n = &g->nodes[t->cur];
    int32_t       need = n->min_len > t->slen ? n->min_len - t->slen : 0, rx;
    int           pend = t->esc == 1 ? 1 : t->esc >= 2 ? 6 - t->esc : t->u8_need;

    if (n->rx >= 0) {
        rx = qwen_regex_dist(g->rx[n->rx], &t->rx, 1);
        if (rx > need) need = rx;
    }
    return add_sat(need, pend + 1);
}

static int32_t
number_rest(const qwen_grammar *g, const g_th *t)
{
    const g_node *n = &g->nodes[t->cur];
    int           k;

    switch (t->sub) {
    case N_MINUS:
        k = n->bounded ? minus_more(n) : 1;
        return k < 0 ? G_INF : k;
    case N_ZERO:
    case N_INT:
        k = n->bounded ? int_more(n, t->neg, t->nval, t->ndig) : 0;
        return k < 0 ? G_INF : k;
    case N_DOT:
    case N_E:
    case N_ESIGN:
        return 1;
    default:
        return 0;
    }
}

/* The fewest bytes that complete the top-level value from t. */
static int32_t
th_close(const qwen_grammar *g, const g_th *t)
{
    const g_node *n;
    const g_str  *s;
    uint64_t      m;
    int32_t       head = 0, sum;
    int           own = 0, i;   /* own: head covers the top frame */

    switch (t->mode) {
    case S_DONE:
        return 0;
    case S_VALUE:
        head = t->cur >= 0 ? g->nodes[t->cur].minval : G_INF;
        break;
    case S_ARR_FIRST:
        n = &g->nodes[t->stack[t->depth - 1].node];
        head = n->min_items == 0 ? 1 : add_sat(arr_rest(g, t->stack[t->depth - 1].node, 0, 1), 1);
        own = 1;
        break;
    case S_OBJ_FIRST:
        n = &g->nodes[t->stack[t->depth - 1].node];
        head = n->free_obj ? 1 : add_sat(g->ints[n->reqsum0] - (n->required ? 1 : 0), 1);
        own = 1;
        break;
    case S_OBJ_KEY:
        head = key_cost(g, t, -1);
        own = 1;
        break;
    case S_STR:
        if (t->is_key) {
            head = key_cost(g, t, t->pos);
            own = 1;
        } else {
            head = string_rest(g, t);
        }
        break;
    case S_COLON:
        head = add_sat(1, g->nodes[t->cur].minval);
        break;
    case S_NUM:
        head = number_rest(g, t);
        break;
    case S_LIT:
        head = LITERAL_LEN[t->sub] - t->pos;
        break;
    case S_EXACT:
        head = G_INF;
        s = g->strs + g->nodes[t->cur].ex0;
        for (m = t->mask; m != 0; m &= m - 1) {
            i = __builtin_ctzll(m);
            if ((int32_t) s[i].len - t->pos < head) head = (int32_t) s[i].len - t->pos;
        }
        break;
    default:   /* S_AFTER */
        break;
    }
    sum = head;
    for (i = t->depth - 1 - own; i >= 0 && sum < G_INF; i--) {
        sum = add_sat(sum, after_cost(g, &t->stack[i]));
    }
    return sum;
}

static int32_t
state_close(const qwen_grammar_state *st)
{
    int32_t best = G_INF, c;
    int     i;

    if (st->outer == O_OPEN) {
        return add_sat(st->g->nodes[st->g->root].minval, 2);
    }
    if (st->outer == O_TEXT || st->outer == O_AFTER) {
        return 0;
    }
    for (i = 0; i < st->n; i++) {
        c = th_close(st->g, &st->th[i]);
        if (c < best) best = c;
    }
    return best;
}

/* After every change: which first bytes can be taken at all. */
static void
update_first(qwen_grammar_state *st)
{
    qwen_grammar_state *tmp;
    int                 c, i;

    if (st->outer != O_JSON && st->outer != O_CALL) {
        memset(st->first, 0xff, sizeof(st->first));   /* tool_step decides */
        st->structural = 0;
        return;
    }
    tmp = malloc(sizeof(*tmp));
    st->structural = 1;
    for (i = 0; i < st->n; i++) {
        uint8_t mode = st->th[i].mode;

        if (mode == S_STR || mode == S_NUM || mode == S_LIT || mode == S_EXACT) {
            st->structural = 0;
        }
    }
    if (tmp == NULL) {
        memset(st->first, 0xff, sizeof(st->first));   /* no fast reject */
        return;
    }
    memset(st->first, 0, sizeof(st->first));
    for (c = 0; c < 256; c++) {
        copy_state(tmp, st);
        if (feed(tmp, (unsigned char) c) == 0) {
            st->first[c >> 6] |= (uint64_t) 1 << (c & 63);
        }
    }
    free(tmp);
}

int
qwen_grammar_accept_bytes(qwen_grammar_state *st, const char *bytes, size_t n)
{
    qwen_grammar_state *tmp = malloc(sizeof(*tmp));
    size_t              i;

    if (tmp == NULL) {
        return -1;
    }
    copy_state(tmp, st);
    for (i = 0; i < n; i++) {
        if (feed(tmp, (unsigned char) bytes[i]) != 0) {
            free(tmp);
            return -1;
        }
    }
    copy_state(st, tmp);
    free(tmp);
    update_first(st);
    return 0;
}

/* Outside a call's JSON: text, the opening marker, the end. */
static int
tool_step(const qwen_grammar_state *st, int32_t token, qwen_grammar_state *out)
{
    const qwen_grammar *g = st->g;
    const char         *p;
    size_t              n, i;

    if (token == g->id_open && (st->outer != O_AFTER || g->parallel)) {
        if (st->budget < G_INF && g->nodes[g->root].minval + 1 > st->limit) {
            ((qwen_grammar_state *) st)->budget_hit = 1;
            return -1;   /* no room left for a whole call */
        }
        memcpy(out, st, offsetof(qwen_grammar_state, th));
        memset(&out->th[0], 0, offsetof(g_th, stack));
        out->n = 1;
        out->th[0].mode = S_VALUE;
        out->th[0].cur = g->root;
        out->outer = O_CALL;
        out->after_ws = 0;
        return 0;
    }
    if (token == g->id_close || st->outer == O_OPEN) {
        return -1;
    }
    if (st->outer == O_AFTER && g->tok_class[token] != TC_EOG) {
        /* between calls and before the end: whitespace only */
        p = qwen_token_bytes(g->tok, token, &n);
        if (p == NULL || n == 0) {
            return -1;
        }
        for (i = 0; i < n; i++) {
            if (!is_ws((unsigned char) p[i])) {
                return -1;
            }
        }
        if (st->after_ws >= 2) {
            return -1;   /* the end or the next call, not a run of blanks */
        }
    }
    memcpy(out, st, offsetof(qwen_grammar_state, th));
    out->n = 0;
    if (st->outer == O_AFTER && g->tok_class[token] != TC_EOG) {
        out->after_ws++;
    }
    return 0;
}

static int
token_step(const qwen_grammar_state *st, int32_t token, qwen_grammar_state *out)
{
    const char *p;
    size_t      n, i;
    unsigned    cls;

    if (token < 0 || token >= st->g->n_tok) {
        return -1;
    }
    if (st->outer != O_JSON && st->outer != O_CALL) {
        return tool_step(st, token, out);
    }
    cls = st->g->tok_class[token];
    if (st->outer == O_CALL && token == st->g->id_close) {
        if (!json_complete(st)) {
            return -1;
        }
        copy_state(out, st);
        out->outer = O_AFTER;
        return 0;
    }
    if (cls == TC_EOG) {
        if (!qwen_grammar_complete(st)) {
            return -1;
        }
        copy_state(out, st);
        return 0;
    }
    if (cls == TC_NEVER || !(st->first[cls >> 6] & ((uint64_t) 1 << (cls & 63)))) {
        return -1;
    }
    cls = st->g->tok_nows[token];
    if (st->structural && !(st->first[cls >> 6] & ((uint64_t) 1 << (cls & 63)))) {
        return -1;
    }
    p = qwen_token_bytes(st->g->tok, token, &n);
    if (p == NULL) {
        return -1;
    }
    copy_state(out, st);
    for (i = 0; i < n; i++) {
        if (feed(out, (unsigned char) p[i]) != 0) {
            return -1;
        }
    }
    /* a token budget: what is left must still close the value */
    if (st->budget < G_INF && state_close(out) + (st->outer == O_CALL) > st->limit) {
        ((qwen_grammar_state *) st)->budget_hit = 1;
        return -1;
    }
    return 0;
}

int
qwen_grammar_allows(const qwen_grammar_state *st, int32_t token)
{
    qwen_grammar_state tmp;

    return token_step(st, token, &tmp) == 0;
}

int
qwen_grammar_accept(qwen_grammar_state *st, int32_t token)
{
    qwen_grammar_state tmp;

    if (token_step(st, token, &tmp) != 0) {
        return -1;
    }
    copy_state(st, &tmp);
    update_first(st);
    return 0;
}

int
qwen_grammar_filter(void *ctx, int32_t token)
{
    return qwen_grammar_allows(ctx, token);
}

void
qwen_grammar_set_budget(qwen_grammar_state *st, int32_t tokens)
{
    int32_t now;

    st->budget = tokens < 0 ? 0 : tokens >= G_INF ? G_INF : tokens;
    st->limit = st->budget;
    if (st->budget < G_INF) {
        /* as token_step counts it: a call's JSON also needs </tool_call> */
        now = add_sat(state_close(st), st->outer == O_CALL);
        if (now < G_INF && now - 1 > st->limit) {
            st->limit = now - 1;
        }
    }
}

int32_t
qwen_grammar_min_close(const qwen_grammar_state *st)
{
    int32_t c = state_close(st);

    return c >= G_INF ? -1 : c;
}

int
qwen_grammar_budget_hit(const qwen_grammar_state *st)
{
    return st->budget_hit;
}

static int
first_has(const qwen_grammar_state *st, int c)
{
    return (st->first[c >> 6] >> (c & 63)) & 1;
}

/* ------------------------------------------------------ candidate lists */

/*
 * qwen_grammar_candidates lists exactly the tokens token_step allows, so
 * the sampler never checks one that fails. Inside a string (the wide
 * states: ~147,000 tokens may fit) the plain tokens are decided by
 * groups (g_plan: a pattern step per distinct class prefix, then length
 * and budget per group), the tokens with '"' by their plain part and
 * what follows the string (one state for all of them), the few with '\\'
 * by the automaton. Elsewhere a walk over the tokens by first, second
 * and third byte feeds each prefix of up to three bytes once and the rest
 * of a token only when its prefix lives; back inside a string, a token's
 * plain rest is checked as above. Where most of the vocabulary fits (a
 * free string with room), or past W_MAX fed bytes, there is no list (-1):
 * the sampler checks its best tokens itself (token_step).
 */
#define W_MAX 60000

typedef struct {
    const qwen_grammar_state *st;
    int32_t                  *ids;
    int32_t                   n, cap;
    int                       refused;    /* the budget refused one */
} g_list;

static int
list_add(g_list *l, const int32_t *ids, int32_t n)
{
    if (l->n + n > l->cap) {
        return -1;
    }
    memcpy(l->ids + l->n, ids, (size_t) n * sizeof(int32_t));
    l->n += n;
    return 0;
}

/* token_step's last check: what the token leaves must close in the budget */
static int
within_budget(g_list *l, const qwen_grammar_state *out)
{
    const qwen_grammar_state *st = l->st;

    if (st->budget < G_INF && add_sat(state_close(out), st->outer == O_CALL) > st->limit) {
        l->refused = 1;
        return 0;
    }
    return 1;
}

/* One thread inside a string whose tokens the plans decide: a value
 * string, or a key of an object that takes any key. */
static int
in_plain_string(const qwen_grammar_state *st)
{
    const g_th *t = &st->th[0];

    return st->n == 1 && (st->outer == O_JSON || st->outer == O_CALL) && t->mode == S_STR
           && t->esc == 0 && t->u8_need == 0
           && (!t->is_key || st->g->nodes[t->stack[t->depth - 1].node].free_obj);
}

/* A string state's constraints, for checks without the automaton. */
typedef struct {
    const g_th    *t;
    const g_node  *nd;       /* NULL: a key */
    const g_regex *rx;
    const g_plan  *pl;
    int32_t        outer;    /* what closes the containers around it */
} g_strctx;

static int
str_ctx(const qwen_grammar_state *st, g_strctx *x)
{
    const qwen_grammar *g = st->g;
    int32_t             head, all;

    x->t = &st->th[0];
    x->nd = x->t->is_key ? NULL : &g->nodes[x->t->cur];
    x->rx = x->nd != NULL && x->nd->rx >= 0 ? g->rx[x->nd->rx] : NULL;
    x->pl = g->plans[x->rx != NULL ? g->rx_plan[x->nd->rx] : 0];
    /* the same after any token that stays inside the string */
    head = x->t->is_key ? key_cost(g, x->t, x->t->pos) : string_rest(g, x->t);
    all = th_close(g, x->t);
    if (st->budget < G_INF && (head >= G_INF || all >= G_INF)) {
        return -1;
    }
    x->outer = all - head + (st->outer == O_CALL);
    return 0;
}

/* After len more characters that leave pend UTF-8 bytes due and the
 * pattern cd characters (bd bytes) from a match: within maxLength, and
 * closable in the budget? */
static int
str_fits(g_list *l, const g_strctx *x, int32_t len, int pend, int32_t cd, int32_t bd)
{
    const qwen_grammar_state *st = l->st;
    int32_t                   rest, slen = x->t->slen, s2;

    if (x->nd != NULL) {
        if (x->nd->max_len >= 0 && slen + len + cd > x->nd->max_len) {
            return 0;
        }
        s2 = slen + len > 65535 ? 65535 : slen + len;
        rest = x->nd->min_len > s2 ? x->nd->min_len - s2 : 0;
        rest = (bd > rest ? bd : rest) + pend + 1;
    } else {
        rest = 4 + pend;   /* a key: its '"', ':', a value and '}' */
    }
    if (st->budget < G_INF && rest + x->outer > st->limit) {
        l->refused = 1;
        return 0;
    }
    return 1;
}

/* Plain bytes p[0..n) (complete characters first; chars of them) read in
 * string state x: the pattern's steps, then str_fits. */
static int
str_bytes_fit(g_list *l, const g_strctx *x, const char *p, size_t n, int32_t chars, int pend,
              int ls)
{
    g_bits a, b;
    size_t j;

    if (x->rx == NULL) {
        return str_fits(l, x, chars, pend, 0, 0);
    }
    if (ls) {
        return 0;
    }
    a = x->t->rx;
    chars = 0;
    for (j = 0; j < n; j++) {
        unsigned char c = (unsigned char) p[j];

        if ((c & 0xC0) == 0x80) {
            continue;
        }
        chars++;
        qwen_regex_step(x->rx, &a, c < 0x80 ? c : G_RX_NONASCII, &b);
        if (qwen_regex_empty(&b)) {
            return 0;
        }
        a = b;
    }
    return str_fits(l, x, chars, pend, qwen_regex_dist(x->rx, &a, 0), qwen_regex_dist(x->rx, &a, 1));
}

static int32_t
string_list(g_list *l, qwen_grammar_state *sp, qwen_grammar_state *out)
{
    const qwen_grammar_state *st = l->st;
    const qwen_grammar       *g = st->g;
    g_strctx                  x;
    const g_plan             *pl;
    int32_t                   i, k, slen;
    int                       dead = 1 << 30, d;
    static __thread g_bits    stk[256];

    if (str_ctx(st, &x) != 0) {
        return -1;
    }
    pl = x.pl;
    slen = x.t->slen;
    if (x.rx == NULL && str_fits(l, &x, 254, 3, 0, 0)) {
        return -1;   /* a free string with room: every plain token fits */
    }
    if (x.rx != NULL) {
        stk[0] = x.t->rx;
    }
    for (i = 0; i < pl->n_grp; i++) {
        int            len = pl->len[i];
        const uint8_t *sq = pl->seq + pl->seq_off[i];
        int32_t        cd = 0, bd = 0;

        if (x.rx != NULL) {
            if (dead <= pl->lcp[i]) {
                continue;   /* its prefix is the one that died */
            }
            dead = 1 << 30;
            for (d = pl->lcp[i]; d < len; d++) {
                qwen_regex_step(x.rx, &stk[d], pl->rep[sq[d]], &stk[d + 1]);
                if (qwen_regex_empty(&stk[d + 1])) {
                    dead = d + 1;
                    break;
                }
            }
            if (d < len || (pl->pend[i] & 0x80)) {
                continue;
            }
            cd = qwen_regex_dist(x.rx, &stk[len], 0);
            bd = qwen_regex_dist(x.rx, &stk[len], 1);
        }
        if (str_fits(l, &x, len, pl->pend[i] & 0x7f, cd, bd)
            && list_add(l, pl->ids + pl->grp_off[i], pl->grp_off[i + 1] - pl->grp_off[i]) != 0)
        {
            return -1;
        }
    }
    if (l->n > g->n_tok / 2) {
        return -1;   /* most tokens fit: the sampler's own check of its best
                      * few (token_step, budget included) finds them sooner
                      * than a list of them all */
    }
    /* tokens with '"': their plain part must end the string validly, the
     * rest goes on from the string's end (one state for all of them) */
    copy_state(sp, st);
    if (x.t->is_key) {
        sp->th[0].mode = S_COLON;
        sp->th[0].cur = 0;
        sp->th[0].is_key = 0;
        sp->th[0].pos = 0;
    } else {
        value_end(g, &sp->th[0], -1);
    }
    for (k = 0; k < g->n_quote; k++) {
        int32_t     id = g->quote_ids[k];
        size_t      n, j;
        const char *p = qwen_token_bytes(g->tok, id, &n);
        int         pre = g->tok_pre[id], ok = 1;

        if (x.nd != NULL) {
            int32_t chars = g->tok_chars[id];

            if (slen + chars < x.nd->min_len || (x.nd->max_len >= 0 && slen + chars > x.nd->max_len)
                || (x.rx != NULL && (g->tok_skind[id] & SK_LS)))
            {
                continue;
            }
            if (x.rx != NULL) {
                g_bits a = x.t->rx, b;

                for (j = 0; j < (size_t) pre && ok; j++) {
                    unsigned char c = (unsigned char) p[j];

                    if ((c & 0xC0) == 0x80) {
                        continue;
                    }
                    qwen_regex_step(x.rx, &a, c < 0x80 ? c : G_RX_NONASCII, &b);
                    a = b;
                    ok = !qwen_regex_empty(&a);
                }
                if (!ok || !qwen_regex_accepting(x.rx, &a)) {
                    continue;
                }
            }
        }
        copy_state(out, sp);
        for (j = (size_t) pre + 1; j < n && ok; j++) {
            ok = feed(out, (unsigned char) p[j]) == 0;
        }
        if (ok && within_budget(l, out) && list_add(l, &id, 1) != 0) {
            return -1;
        }
    }
    /* escapes, and plain tokens too long for a group: the automaton */
    for (k = 0; k < g->n_slow; k++) {
        int32_t id = g->slow_ids[k];

        if (token_step(st, id, out) == 0 && list_add(l, &id, 1) != 0) {
            return -1;
        }
    }
    return l->n;
}

static int32_t
walk_list(g_list *l, qwen_grammar_state *s1, qwen_grammar_state *s2,
          qwen_grammar_state *s3, qwen_grammar_state *s4)
{
    const qwen_grammar_state *st = l->st;
    const qwen_grammar       *g = st->g;
    int32_t                   i, a, b, id, work = 0;
    int                       c, d, ok, in_str, lead2, plain, third, ok3;
    g_strctx                  x;

    for (c = 0; c < 256; c++) {
        if (!first_has(st, c)) {
            continue;
        }
        copy_state(s1, st);
        if (feed(s1, (unsigned char) c) != 0) {
            continue;
        }
        for (d = 0; d < 257; d++) {
            a = g->by2_off[B2(c, d)];
            b = g->by2_off[B2(c, d) + 1];
            if (a == b) {
                continue;
            }
            if (d == 0) {
                if (within_budget(l, s1) && list_add(l, g->by_first + a, b - a) != 0) {
                    return -1;
                }
                continue;
            }
            copy_state(s2, s1);
            if (++work > W_MAX || feed(s2, (unsigned char) (d - 1)) != 0) {
                if (work > W_MAX) return -1;
                continue;
            }
            /* inside a string again (after an escape or a character's
             * last bytes): a plain rest is checked without the automaton */
            in_str = in_plain_string(s2) && str_ctx(s2, &x) == 0;
            third = -1;
            ok3 = 0;
            lead2 = ((c & 0xC0) != 0x80) + (((d - 1) & 0xC0) != 0x80);   /* characters begun */
            for (i = a; i < b; i++) {
                size_t      n, j;
                const char *p;

                id = g->by_first[i];
                plain = in_str && (g->tok_skind[id] & ~SK_LS) == SK_PLAIN
                        && g->tok_chars[id] < 255;
                if (plain && x.rx == NULL) {
                    /* only its length counts: no need to read its bytes */
                    ok = str_fits(l, &x, g->tok_chars[id] - lead2, g->tok_pend[id], 0, 0);
                    if (ok && list_add(l, &id, 1) != 0) {
                        return -1;
                    }
                    continue;
                }
                p = qwen_token_bytes(g->tok, id, &n);
                if (n == 2) {
                    ok = within_budget(l, s2);
                } else if (plain) {
                    ok = str_bytes_fit(l, &x, p + 2, n - 2, g->tok_chars[id] - lead2,
                                       g->tok_pend[id], g->tok_skind[id] & SK_LS);
                } else {
                    /* the group is in third-byte order: one state per byte */
                    if ((unsigned char) p[2] != third) {
                        third = (unsigned char) p[2];
                        copy_state(s3, s2);
                        ok3 = feed(s3, (unsigned char) third) == 0;
                        if (++work > W_MAX) return -1;
                    }
                    if (!ok3) {
                        continue;
                    }
                    if (n == 3) {
                        ok = within_budget(l, s3);
                    } else {
                        copy_state(s4, s3);
                        for (j = 3, ok = 1; j < n && ok; j++) {
                            ok = feed(s4, (unsigned char) p[j]) == 0;
                        }
                        work += (int32_t) (j - 3);
                        if (work > W_MAX) return -1;
                        ok = ok && within_budget(l, s4);
                    }
                }
                if (ok && list_add(l, &id, 1) != 0) {
                    return -1;
                }
            }
        }
    }
    return l->n;
}

/* After a call: blanks (tokens of them only), another call, the end. */
static int32_t
after_list(g_list *l, qwen_grammar_state *out)
{
    static const unsigned char ws[] = { ' ', '\t', '\n', '\r' };
    const qwen_grammar        *g = l->st->g;
    int32_t                    i, id;
    int                        c, k;

    for (c = 0; c < 4; c++) {
        for (k = -1; k < 4; k++) {
            int32_t key = B2(ws[c], k < 0 ? 0 : ws[k] + 1);

            for (i = g->by2_off[key]; i < g->by2_off[key + 1]; i++) {
                id = g->by_first[i];
                if (tool_step(l->st, id, out) == 0 && list_add(l, &id, 1) != 0) {
                    return -1;
                }
            }
        }
    }
    if (tool_step(l->st, g->id_open, out) == 0 && list_add(l, &g->id_open, 1) != 0) {
        return -1;
    }
    return l->n;
}

int32_t
qwen_grammar_candidates(const qwen_grammar_state *st, int32_t *ids, int32_t cap)
{
    const qwen_grammar *g = st->g;
    qwen_grammar_state *tmp;
    g_list              l = { st, ids, 0, cap, 0 };
    int32_t             n;

    if (st->outer == O_OPEN) {
        if (cap < 1) return -1;
        ids[0] = g->id_open;
        return 1;
    }
    if (st->outer == O_TEXT) {
        return -1;   /* text: the sampler's own selection */
    }
    tmp = malloc(4 * sizeof(*tmp));
    if (tmp == NULL) {
        return -1;
    }
    n = st->outer == O_AFTER ? after_list(&l, tmp)
        : in_plain_string(st) ? string_list(&l, tmp, tmp + 1)
        : walk_list(&l, tmp, tmp + 1, tmp + 2, tmp + 3);
    free(tmp);
    if (n < 0) {
        return -1;
    }
    if (qwen_grammar_complete(st)
        && list_add(&l, g->by_first + g->by_first_off[256],
                    g->by_first_off[257] - g->by_first_off[256]) != 0)
    {
        return -1;
    }
    if (st->outer == O_CALL && json_complete(st) && list_add(&l, &g->id_close, 1) != 0) {
        return -1;
    }
    if (l.refused) {
        ((qwen_grammar_state *) st)->budget_hit = 1;
    }
    return l.n;
}
