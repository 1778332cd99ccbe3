/*
 * grammar.c - JSON-constrained decoding: a byte-level pushdown automaton
 * (a stack of object/array frames plus string, escape, UTF-8, number and
 * literal states) checks each candidate token's bytes against a copy of
 * the sequence's state. A compiled schema subset (types, enums, fixed
 * properties in schema order, required keys, items) narrows what it takes.
 */
#include "grammar.h"
#include "errors.h"

#include <jansson.h>
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
#define G_MAX_NODES   1024
#define G_MAX_PROPS   64    /* per object: candidates live in a 64-bit mask */

enum {
    T_STRING = 1, T_NUMBER = 2, T_INTEGER = 4, T_BOOL = 8, T_NULL = 16,
    T_OBJECT = 32, T_ARRAY = 64, T_ANY = 127
};

/* A schema node. Node 0 is "any JSON value"; node 1 the top level. */
typedef struct {
    uint32_t types;
    int32_t  items;       /* array item node */
    int      free_obj;    /* object: any keys, any values */
    int32_t  prop0;       /* fixed properties: g->props[prop0 .. +n_props) */
    int32_t  n_props;
    uint64_t required;    /* bit i: property prop0 + i is required */
    int32_t  enum0;       /* string enum: g->strs[enum0 .. +n_enum); 0: any */
    int32_t  n_enum;
} g_node;

typedef struct {
    char   *s;
    size_t  len;
    int32_t node;         /* properties: the value's node */
} g_str;

/* token classes: the first byte (0..255), or one of these */
#define TC_EOG   256
#define TC_NEVER 257    /* no bytes, unused id, or an added token */

struct qwen_grammar {
    int                   refs;      /* atomic */
    const qwen_tokenizer *tok;
    uint16_t             *tok_class; /* [n_tok]: the first check, one load */
    uint8_t              *tok_nows;  /* [n_tok]: first non-whitespace byte (' ' if none) */
    int32_t               n_tok;
    g_node               *nodes;
    int32_t               n_nodes, cap_nodes;
    g_str                *props;
    int32_t               n_props, cap_props;
    g_str                *strs;
    int32_t               n_strs, cap_strs;
};

/* automaton modes */
enum {
    S_VALUE = 0,   /* a value of node cur */
    S_ARR_FIRST,   /* after '[': a value or ']' */
    S_OBJ_FIRST,   /* after '{': a key or '}' */
    S_OBJ_KEY,     /* after ',' in an object: a key */
    S_COLON,       /* after a key */
    S_STR,         /* inside a string (key or value) */
    S_NUM,
    S_LIT,         /* true, false, null */
    S_AFTER,       /* after a value inside a container */
    S_DONE         /* the top-level value is complete */
};

/* number sub-states */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

typedef struct {
    uint8_t  is_array;
    uint8_t  next_prop;   /* fixed object: first property that may come */
    int16_t  node;
} g_frame;

struct qwen_grammar_state {
    const qwen_grammar *g;
    uint64_t first[4];    /* bytes a token may begin with here (a fast
                           * reject for most of the vocabulary) */
    int      structural;  /* between values: whitespace changes nothing,
                           * so the first non-blank byte must fit too */
    uint8_t  mode;
    uint8_t  sub;         /* number sub-state, literal index */
    uint8_t  is_key;      /* S_STR: a key */
    uint8_t  esc;         /* 0, 1 after '\', 2..5 inside \uXXXX */
    uint8_t  u8_need;     /* UTF-8 continuation bytes still due */
    uint8_t  u8_lo, u8_hi;/* range of the next continuation byte */
    uint8_t  ws_run, nl_run;
    uint8_t  ndig;
    uint8_t  int_only;
    uint8_t  depth;
    uint16_t pos;         /* literal / key / enum match position */
    uint16_t uval;        /* \u accumulator */
    int16_t  cur;         /* node of the value being read or expected */
    uint64_t mask;        /* S_STR matching keys or enum values */
    g_frame  stack[G_MAX_DEPTH];
};

static void update_first(qwen_grammar_state *st);

static int
is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *const LITERALS[3] = { "true", "false", "null" };
static const uint8_t     LITERAL_LEN[3] = { 4, 5, 4 };

/* ------------------------------------------------------------ building */

static int32_t
add_node(qwen_grammar *g, uint32_t types)
{
    g_node *grown;
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
    memset(&g->nodes[g->n_nodes], 0, sizeof(g_node));
    g->nodes[g->n_nodes].types = types;
    g->nodes[g->n_nodes].items = 0;
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

/* Keys and enum values are matched byte for byte as the model writes
 * them, so they must need no escaping. */
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

static int32_t compile(qwen_grammar *g, const json_t *s, int depth, const char *path,
                       char *err, size_t err_len);

static int
compile_enum(qwen_grammar *g, int32_t id, const json_t *values, const char *path,
             char *err, size_t err_len)
{
    size_t  i, n = json_array_size(values);
    int32_t first;

    if (n == 0 || n > G_MAX_PROPS) {
        return qwen_fail(err, err_len, "%s: enum must list 1 to %d strings", path, G_MAX_PROPS);
    }
    first = add_strs(&g->strs, &g->n_strs, &g->cap_strs, (int32_t) n);
    if (first < 0) {
        return qwen_fail(err, err_len, "out of memory");
    }
    for (i = 0; i < n; i++) {
        const json_t *v = json_array_get(values, i);

        if (!json_is_string(v) || !plain_string(json_string_value(v), json_string_length(v))) {
            return qwen_fail(err, err_len, "%s: only enums of plain strings (no quotes, "
                             "backslashes or control characters) are supported", path);
        }
        if (set_str(&g->strs[first + (int32_t) i], json_string_value(v),
                    json_string_length(v)) != 0)
        {
            return qwen_fail(err, err_len, "out of memory");
        }
    }
    g->nodes[id].types = T_STRING;
    g->nodes[id].enum0 = first;
    g->nodes[id].n_enum = (int32_t) n;
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
    char          sub[256];

    if (props == NULL) {
        /* no properties: any object, or {} when nothing else is allowed */
        g->nodes[id].free_obj = !json_is_false(addl);
        if (json_array_size(req) > 0) {
            return qwen_fail(err, err_len, "%s: 'required' needs 'properties'", path);
        }
        return 0;
    }
    if (!json_is_object(props)) {
        return qwen_fail(err, err_len, "%s: 'properties' must be an object", path);
    }
    n = json_object_size(props);
    if (n > G_MAX_PROPS) {
        return qwen_fail(err, err_len, "%s: at most %d properties per object", path,
                         G_MAX_PROPS);
    }
    first = add_strs(&g->props, &g->n_props, &g->cap_props, (int32_t) n);
    if (first < 0) {
        return qwen_fail(err, err_len, "out of memory");
    }
    g->nodes[id].free_obj = 0;   /* the listed properties only */
    g->nodes[id].prop0 = first;
    g->nodes[id].n_props = (int32_t) n;
    i = 0;
    json_object_foreach((json_t *) props, key, v) {
        size_t klen = strlen(key);

        if (!plain_string(key, klen)) {
            return qwen_fail(err, err_len, "%s: property names must need no escaping", path);
        }
        if (set_str(&g->props[first + (int32_t) i], key, klen) != 0) {
            return qwen_fail(err, err_len, "out of memory");
        }
        snprintf(sub, sizeof(sub), "%s.%s", path, key);
        child = compile(g, v, depth + 1, sub, err, err_len);
        if (child < 0) {
            return -1;
        }
        g->props[first + (int32_t) i].node = child;
        i++;
    }
    if (req != NULL && !json_is_array(req)) {
        return qwen_fail(err, err_len, "%s: 'required' must be an array of names", path);
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

/* Compile schema s into a new node; returns its index or -1 (err set). */
static int32_t
compile(qwen_grammar *g, const json_t *s, int depth, const char *path, char *err,
        size_t err_len)
{
    static const char *const unsupported[] = {
        "$ref", "anyOf", "oneOf", "allOf", "not", "patternProperties", "if",
        "prefixItems", "$defs", "definitions"
    };
    const json_t *type, *v;
    uint32_t      types = 0;
    int32_t       id;
    size_t        i;

    if (depth >= G_MAX_DEPTH - 1) {
        qwen_fail(err, err_len, "%s: the schema nests deeper than %d levels", path,
                  G_MAX_DEPTH - 2);
        return -1;
    }
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
        return 0;   /* anything */
    }
    if (!json_is_object(s)) {
        qwen_fail(err, err_len, "%s: a schema must be an object", path);
        return -1;
    }
    for (i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        if (json_object_get(s, unsupported[i]) != NULL) {
            qwen_fail(err, err_len, "%s: '%s' is not supported (supported: type, properties, "
                      "required, items, enum, const)", path, unsupported[i]);
            return -1;
        }
    }
    id = add_node(g, 0);
    if (id < 0) {
        qwen_fail(err, err_len, "the schema is too large (%d nodes at most)", G_MAX_NODES);
        return -1;
    }
    if ((v = json_object_get(s, "enum")) != NULL || (v = json_object_get(s, "const")) != NULL) {
        json_t *one = NULL;
        int     rc;

        if (v == json_object_get(s, "enum") && !json_is_array(v)) {
            qwen_fail(err, err_len, "%s: 'enum' must be an array", path);
            return -1;
        }

        if (!json_is_array(v)) {
            one = json_array();
            if (one == NULL || json_array_append((json_t *) one, (json_t *) v) != 0) {
                json_decref(one);
                qwen_fail(err, err_len, "out of memory");
                return -1;
            }
        }
        rc = compile_enum(g, id, one != NULL ? one : v, path, err, err_len);
        json_decref(one);
        return rc == 0 ? id : -1;
    }
    type = json_object_get(s, "type");
    if (json_is_string(type)) {
        if (type_bit(json_string_value(type), &types) != 0) {
            qwen_fail(err, err_len, "%s: unknown type '%.40s'", path, json_string_value(type));
            return -1;
        }
    } else if (json_is_array(type) && json_array_size(type) > 0) {
        for (i = 0; i < json_array_size(type); i++) {
            v = json_array_get(type, i);
            if (!json_is_string(v) || type_bit(json_string_value(v), &types) != 0) {
                qwen_fail(err, err_len, "%s: 'type' must name JSON types", path);
                return -1;
            }
        }
    } else if (type != NULL) {
        qwen_fail(err, err_len, "%s: 'type' must be a string or an array of strings", path);
        return -1;
    } else if (json_object_get(s, "properties") != NULL) {
        types = T_OBJECT;
    } else if (json_object_get(s, "items") != NULL) {
        types = T_ARRAY;
    } else {
        types = T_ANY;
    }
    g->nodes[id].types = types;
    g->nodes[id].free_obj = 1;
    if (types & T_OBJECT) {
        if (compile_object(g, id, s, depth, path, err, err_len) != 0) {
            return -1;
        }
    }
    if (types & T_ARRAY) {
        int32_t items = 0;
        char    sub[256];

        v = json_object_get(s, "items");
        if (v != NULL) {
            snprintf(sub, sizeof(sub), "%s[]", path);
            items = compile(g, v, depth + 1, sub, err, err_len);
            if (items < 0) {
                return -1;
            }
        }
        g->nodes[id].items = items;
    }
    return id;
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

static int
classify_tokens(qwen_grammar *g)
{
    const char *p;
    size_t      n;
    int32_t     id;

    g->n_tok = qwen_tokenizer_vocab_size(g->tok);
    g->tok_class = malloc((size_t) (g->n_tok > 0 ? g->n_tok : 1) * sizeof(uint16_t));
    g->tok_nows = malloc((size_t) (g->n_tok > 0 ? g->n_tok : 1));
    if (g->tok_class == NULL || g->tok_nows == NULL) {
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
        }
        while (n > 0 && is_ws((unsigned char) *p)) {
            p++;
            n--;
        }
        g->tok_nows[id] = n > 0 ? (uint8_t) *p : ' ';
    }
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
    if (classify_tokens(g) != 0 || add_node(g, T_ANY) != 0) {   /* node 0: any value */
        qwen_fail(err, err_len, "out of memory");
        goto fail;
    }
    g->nodes[0].free_obj = 1;
    if (schema_json == NULL) {
        root = add_node(g, T_OBJECT);       /* JSON mode: any object */
        if (root < 0) {
            qwen_fail(err, err_len, "out of memory");
            goto fail;
        }
        g->nodes[root].free_obj = 1;
        return g;
    }
    schema = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
    if (schema == NULL) {
        qwen_fail(err, err_len, "the schema is not valid JSON: %s", jerr.text);
        goto fail;
    }
    root = compile(g, schema, 0, "schema", err, err_len);
    json_decref(schema);
    if (root < 0) {
        goto fail;
    }
    if (root == 0 || g->nodes[root].types != T_OBJECT) {
        qwen_fail(err, err_len, "the schema's top level must be of type object");
        goto fail;
    }
    if (root != 1) {   /* the top level is node 1 by construction */
        qwen_fail(err, err_len, "internal error compiling the schema");
        goto fail;
    }
    return g;
fail:
    qwen_grammar_free(g);
    return NULL;
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
    free(g->props);
    free(g->strs);
    free(g->nodes);
    free(g->tok_class);
    free(g->tok_nows);
    free(g);
}

/* ------------------------------------------------------------ automaton */

qwen_grammar_state *
qwen_grammar_state_new(const qwen_grammar *g)
{
    qwen_grammar_state *st = calloc(1, sizeof(*st));

    if (st == NULL) {
        return NULL;
    }
    grammar_retain(g);
    st->g = g;
    st->mode = S_VALUE;
    st->cur = 1;
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

int
qwen_grammar_complete(const qwen_grammar_state *st)
{
    return st->mode == S_DONE;
}


static int
push(qwen_grammar_state *st, int is_array)
{
    if (st->depth == G_MAX_DEPTH) {
        return -1;
    }
    st->stack[st->depth].is_array = (uint8_t) is_array;
    st->stack[st->depth].next_prop = 0;
    st->stack[st->depth].node = st->cur;
    st->depth++;
    st->mode = is_array ? S_ARR_FIRST : S_OBJ_FIRST;
    return 0;
}

static void
pop(qwen_grammar_state *st)
{
    st->depth--;
    st->mode = st->depth == 0 ? S_DONE : S_AFTER;
}

static int
begin_value(qwen_grammar_state *st, unsigned char c)
{
    const g_node *n = &st->g->nodes[st->cur];

    if (c == '{' && (n->types & T_OBJECT)) {
        return push(st, 0);
    }
    if (c == '[' && (n->types & T_ARRAY)) {
        return push(st, 1);
    }
    if (c == '"' && (n->types & T_STRING)) {
        st->mode = S_STR;
        st->is_key = 0;
        st->esc = 0;
        st->u8_need = 0;
        st->pos = 0;
        st->mask = n->n_enum > 0 ? (n->n_enum == 64 ? ~(uint64_t) 0
                                                    : ((uint64_t) 1 << n->n_enum) - 1) : 0;
        return 0;
    }
    if ((c == '-' || (c >= '0' && c <= '9')) && (n->types & (T_NUMBER | T_INTEGER))) {
        st->mode = S_NUM;
        st->int_only = !(n->types & T_NUMBER);
        st->sub = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
        st->ndig = c == '-' ? 0 : 1;
        return 0;
    }
    if (((c == 't' || c == 'f') && (n->types & T_BOOL)) || (c == 'n' && (n->types & T_NULL))) {
        st->mode = S_LIT;
        st->sub = c == 't' ? 0 : c == 'f' ? 1 : 2;
        st->pos = 1;
        return 0;
    }
    return -1;
}

/* A key begins: in a fixed object, the candidates are the properties from
 * next_prop up to the first required one (schema order). */
static int
begin_key(qwen_grammar_state *st)
{
    const g_frame *f = &st->stack[st->depth - 1];
    const g_node  *n = &st->g->nodes[f->node];
    int            i;

    st->mode = S_STR;
    st->is_key = 1;
    st->esc = 0;
    st->u8_need = 0;
    st->pos = 0;
    st->mask = 0;
    if (n->free_obj && n->n_props == 0) {
        return 0;
    }
    for (i = f->next_prop; i < n->n_props; i++) {
        st->mask |= (uint64_t) 1 << i;
        if (n->required & ((uint64_t) 1 << i)) {
            break;
        }
    }
    return st->mask != 0 ? 0 : -1;
}

static int
matching(const qwen_grammar_state *st)
{
    const g_node *n;

    if (st->is_key) {
        n = &st->g->nodes[st->stack[st->depth - 1].node];
        return !(n->free_obj && n->n_props == 0);
    }
    return st->g->nodes[st->cur].n_enum > 0;
}

/* The candidate strings of the current key or enum match. */
static const g_str *
match_strs(const qwen_grammar_state *st)
{
    const g_node *n;

    if (st->is_key) {
        n = &st->g->nodes[st->stack[st->depth - 1].node];
        return st->g->props + n->prop0;
    }
    n = &st->g->nodes[st->cur];
    return st->g->strs + n->enum0;
}

static int
match_byte(qwen_grammar_state *st, unsigned char c)
{
    const g_str *s;
    uint64_t     m, keep = 0;
    int          i;

    if (!matching(st)) {
        return 0;
    }
    s = match_strs(st);
    for (m = st->mask; m != 0; m &= m - 1) {
        i = __builtin_ctzll(m);
        if (st->pos < s[i].len && (unsigned char) s[i].s[st->pos] == c) {
            keep |= (uint64_t) 1 << i;
        }
    }
    st->mask = keep;
    st->pos++;
    return keep != 0 ? 0 : -1;
}

static int
end_string(qwen_grammar_state *st)
{
    const g_str *s;
    uint64_t     m;
    int          i = -1;

    if (matching(st)) {
        s = match_strs(st);
        for (m = st->mask; m != 0; m &= m - 1) {
            if (s[__builtin_ctzll(m)].len == st->pos) {
                i = __builtin_ctzll(m);
                break;
            }
        }
        if (i < 0) {
            return -1;
        }
    }
    if (!st->is_key) {
        st->mode = S_AFTER;
        return 0;
    }
    st->mode = S_COLON;
    if (i < 0) {
        st->cur = 0;   /* free object: any value */
    } else {
        st->stack[st->depth - 1].next_prop = (uint8_t) (i + 1);
        st->cur = (int16_t) s[i].node;
    }
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

static int
feed_string(qwen_grammar_state *st, unsigned char c)
{
    int h;

    if (st->esc == 1) {
        if (c == 'u') {
            st->esc = 2;
            st->uval = 0;
            return 0;
        }
        st->esc = 0;
        return strchr("\"\\/bfnrt", c) != NULL && c != '\0' ? 0 : -1;
    }
    if (st->esc >= 2) {
        h = hex_value(c);
        if (h < 0) {
            return -1;
        }
        st->uval = (uint16_t) (st->uval * 16 + h);
        /* no surrogates (pairs are hard to keep valid token by token),
         * refused at the second digit so no prefix is a dead end; no NUL
         * (jansson refuses it): \u000 still has 15 ways to go on */
        if (++st->esc == 4 && st->uval >= 0xD8 && st->uval <= 0xDF) {
            return -1;
        }
        if (st->esc < 6) {
            return 0;
        }
        st->esc = 0;
        return st->uval != 0 ? 0 : -1;
    }
    if (st->u8_need > 0) {
        if (c < st->u8_lo || c > st->u8_hi) {
            return -1;
        }
        st->u8_need--;
        st->u8_lo = 0x80;
        st->u8_hi = 0xBF;
        return match_byte(st, c);
    }
    if (c == '"') {
        return end_string(st);
    }
    if (c == '\\') {
        if (matching(st)) {
            return -1;   /* keys and enum values are written plainly */
        }
        st->esc = 1;
        return 0;
    }
    if (c < 0x20) {
        return -1;
    }
    if (c >= 0x80) {
        /* well-formed UTF-8 (Unicode table 3-7) */
        st->u8_lo = 0x80;
        st->u8_hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            st->u8_need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            st->u8_need = 2;
            if (c == 0xE0) st->u8_lo = 0xA0;
            if (c == 0xED) st->u8_hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            st->u8_need = 3;
            if (c == 0xF0) st->u8_lo = 0x90;
            if (c == 0xF4) st->u8_hi = 0x8F;
        } else {
            return -1;
        }
    }
    return match_byte(st, c);
}

/* 0: taken, 1: the number ended before c (c not taken), -1: rejected */
static int
feed_number(qwen_grammar_state *st, unsigned char c)
{
    int digit = c >= '0' && c <= '9';

    switch (st->sub) {
    case N_MINUS:
        if (!digit) return -1;
        st->sub = c == '0' ? N_ZERO : N_INT;
        st->ndig = 1;
        return 0;
    case N_ZERO:
    case N_INT:
        if (digit) {
            if (st->sub == N_ZERO || ++st->ndig > G_MAX_INT) return -1;
            return 0;
        }
        break;
    case N_DOT:
        if (!digit) return -1;
        st->sub = N_FRAC;
        st->ndig = 1;
        return 0;
    case N_FRAC:
        if (digit) {
            return ++st->ndig > G_MAX_FRAC ? -1 : 0;
        }
        break;
    case N_E:
        if (c == '+' || c == '-') {
            st->sub = N_ESIGN;
            return 0;
        }
        /* fall through */
    case N_ESIGN:
        if (!digit) return -1;
        st->sub = N_EXP;
        st->ndig = 1;
        return 0;
    case N_EXP:
        if (digit) {
            return ++st->ndig > G_MAX_EXP ? -1 : 0;
        }
        return 1;
    default:
        return -1;
    }
    /* after the integer part or the fraction */
    if (c == '.' && st->sub != N_FRAC && !st->int_only) {
        st->sub = N_DOT;
        return 0;
    }
    if ((c == 'e' || c == 'E') && !st->int_only) {
        st->sub = N_E;
        return 0;
    }
    return 1;
}

static int
feed_structural(qwen_grammar_state *st, unsigned char c)
{
    g_frame      *f;
    const g_node *n;

    if (is_ws(c)) {
        if (++st->ws_run > G_MAX_WS) {
            return -1;
        }
        if ((c == '\n' || c == '\r') && ++st->nl_run > G_MAX_NL) {
            return -1;
        }
        return 0;
    }
    st->ws_run = 0;
    st->nl_run = 0;
    switch (st->mode) {
    case S_VALUE:
        return begin_value(st, c);
    case S_ARR_FIRST:
        if (c == ']') {
            pop(st);
            return 0;
        }
        st->cur = (int16_t) st->g->nodes[st->stack[st->depth - 1].node].items;
        return begin_value(st, c);
    case S_OBJ_FIRST:
    case S_AFTER:
        f = &st->stack[st->depth - 1];
        n = &st->g->nodes[f->node];
        if (st->mode == S_OBJ_FIRST && c == '"') {
            return begin_key(st);
        }
        if (c == (f->is_array ? ']' : '}')) {
            /* every required property must have come */
            if (!f->is_array && f->next_prop < 64
                && (n->required >> f->next_prop) != 0)
            {
                return -1;
            }
            pop(st);
            return 0;
        }
        if (c != ',' || st->mode == S_OBJ_FIRST) {
            return -1;
        }
        if (f->is_array) {
            st->cur = (int16_t) n->items;
            st->mode = S_VALUE;
            return 0;
        }
        if (!(n->free_obj && n->n_props == 0) && f->next_prop >= n->n_props) {
            return -1;   /* no property left to write */
        }
        st->mode = S_OBJ_KEY;
        return 0;
    case S_OBJ_KEY:
        return c == '"' ? begin_key(st) : -1;
    case S_COLON:
        if (c != ':') {
            return -1;
        }
        st->mode = S_VALUE;
        return 0;
    default:
        return -1;   /* S_DONE: only whitespace */
    }
}

static int
feed(qwen_grammar_state *st, unsigned char c)
{
    int rc;

    switch (st->mode) {
    case S_STR:
        return feed_string(st, c);
    case S_LIT:
        if (c != (unsigned char) LITERALS[st->sub][st->pos]) {
            return -1;
        }
        if (++st->pos == LITERAL_LEN[st->sub]) {
            st->mode = S_AFTER;
        }
        return 0;
    case S_NUM:
        rc = feed_number(st, c);
        if (rc != 1) {
            return rc;
        }
        st->mode = S_AFTER;   /* the number ended: c belongs to what follows */
        return feed_structural(st, c);
    default:
        return feed_structural(st, c);
    }
}

/* Only the live part of the stack is copied. */
static void
copy_state(qwen_grammar_state *dst, const qwen_grammar_state *src)
{
    memcpy(dst, src, offsetof(qwen_grammar_state, stack) + src->depth * sizeof(g_frame));
}

/* After every change: which first bytes can be taken at all. */
static void
update_first(qwen_grammar_state *st)
{
    qwen_grammar_state tmp;
    int                c;

    memset(st->first, 0, sizeof(st->first));
    st->structural = st->mode != S_STR && st->mode != S_NUM && st->mode != S_LIT;
    for (c = 0; c < 256; c++) {
        copy_state(&tmp, st);
        if (feed(&tmp, (unsigned char) c) == 0) {
            st->first[c >> 6] |= (uint64_t) 1 << (c & 63);
        }
    }
}

int
qwen_grammar_accept_bytes(qwen_grammar_state *st, const char *bytes, size_t n)
{
    qwen_grammar_state tmp;
    size_t             i;

    copy_state(&tmp, st);
    for (i = 0; i < n; i++) {
        if (feed(&tmp, (unsigned char) bytes[i]) != 0) {
            return -1;
        }
    }
    copy_state(st, &tmp);
    update_first(st);
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
    cls = st->g->tok_class[token];
    if (cls == TC_EOG) {
        if (st->mode != S_DONE) {
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
