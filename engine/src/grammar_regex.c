/*
 * grammar_regex.c - JSON Schema "pattern" (and "format") compiled into a
 * position automaton (Glushkov: one state per character occurrence, no
 * epsilon moves), so a string's match state is a 256-bit set stepped with
 * a few ORs per character. The subset: literals, classes with ranges,
 * \d \w \s and their negations, '.', groups, alternation, ? * + {m,n},
 * '^' opening and '$' closing a top-level branch; anything else is refused
 * by name. Characters are ASCII plus one symbol for "any non-ASCII
 * character", which only '.' and negated classes of plain characters take
 * (Python's \w \d \s know Unicode, ECMA's do not: ASCII fits both).
 */
#include "grammar.h"
#include "errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RX_MAX_AST 2048

enum { A_SET, A_CAT, A_ALT, A_REP, A_EMPTY };

typedef struct {
    uint8_t  op;
    int32_t  a, b;
    int32_t  min, max;     /* A_REP; max -1: unbounded */
    uint64_t set[3];       /* A_SET: symbols 0..127, 128 = non-ASCII */
} rx_ast;

typedef struct {
    const char *p, *end;
    rx_ast      ast[RX_MAX_AST];
    int32_t     n;
    char       *err;
    size_t      err_len;
    const char *what;      /* "pattern" or "format 'x'" */
    const char *path;
    int         failed;
} rx_parser;

static int
rx_err(rx_parser *ps, const char *fmt, const char *arg)
{
    char msg[160];

    if (!ps->failed) {
        snprintf(msg, sizeof(msg), fmt, arg);
        qwen_fail(ps->err, ps->err_len, "%s: '%s': %s is not supported", ps->path, ps->what,
                  msg);
        ps->failed = 1;
    }
    return -1;
}

static int32_t
new_ast(rx_parser *ps, int op)
{
    if (ps->n == RX_MAX_AST) {
        return rx_err(ps, "%s", "a pattern this long");
    }
    memset(&ps->ast[ps->n], 0, sizeof(rx_ast));
    ps->ast[ps->n].op = (uint8_t) op;
    ps->ast[ps->n].a = ps->ast[ps->n].b = -1;
    return ps->n++;
}

static void
set_add(uint64_t *set, int c)
{
    set[c >> 6] |= (uint64_t) 1 << (c & 63);
}

static void
set_range(uint64_t *set, int lo, int hi)
{
    int c;

    for (c = lo; c <= hi; c++) {
        set_add(set, c);
    }
}

/* \d \w \s and negations into set (ASCII only: see the top) */
static void
shorthand(uint64_t *set, char e)
{
    uint64_t s[3] = { 0, 0, 0 };
    int      c;

    switch (e | 0x20) {
    case 'd': set_range(s, '0', '9'); break;
    case 'w': set_range(s, '0', '9'); set_range(s, 'a', 'z'); set_range(s, 'A', 'Z');
              set_add(s, '_'); break;
    default:  set_add(s, ' '); set_range(s, '\t', '\r'); break;
    }
    if (e >= 'A' && e <= 'Z') {
        for (c = 0; c < 128; c++) {
            if (!(s[c >> 6] >> (c & 63) & 1)) {
                set_add(set, c);
            }
        }
    } else {
        set[0] |= s[0];
        set[1] |= s[1];
    }
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One escaped character after '\': its code (0..127) or -1; a shorthand
 * class gives -2 with *sh set. */
static int
parse_escape(rx_parser *ps, char *sh)
{
    char c;
    int  v = 0, i, n, h;

    if (ps->p == ps->end) {
        return rx_err(ps, "%s", "a trailing backslash");
    }
    c = *ps->p++;
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        *sh = c;
        return -2;
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'x':
    case 'u':
        n = c == 'x' ? 2 : 4;
        for (i = 0; i < n; i++) {
            if (ps->p == ps->end || (h = hexval(*ps->p)) < 0) {
                return rx_err(ps, "%s", c == 'x' ? "a malformed \\x escape"
                                                 : "a \\u escape other than \\uXXXX");
            }
            v = v * 16 + h;
            ps->p++;
        }
        if (v >= 128) {
            return rx_err(ps, "%s", "a non-ASCII character");
        }
        return v;
    case 'b': case 'B':
        return rx_err(ps, "%s", "a word boundary (\\b, \\B)");
    case 'p': case 'P':
        return rx_err(ps, "%s", "a Unicode property (\\p, \\P)");
    case 'k':
        return rx_err(ps, "%s", "a named backreference (\\k)");
    case 'c':
        return rx_err(ps, "%s", "a control escape (\\c)");
    default:
        break;
    }
    if (c >= '0' && c <= '9') {
        return rx_err(ps, "%s", "a backreference or octal escape (\\digit)");
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (unsigned char) c >= 128) {
        static char one[8];

        snprintf(one, sizeof(one), "\\%c", c);
        return rx_err(ps, "the escape %s", one);
    }
    return (unsigned char) c;
}

static int32_t
parse_class(rx_parser *ps)
{
    int32_t  id = new_ast(ps, A_SET);
    uint64_t s[3] = { 0, 0, 0 };
    int      neg = 0, plain = 1, lo, hi, c;
    char     sh = 0;

    if (id < 0) {
        return -1;
    }
    if (ps->p < ps->end && *ps->p == '^') {
        neg = 1;
        ps->p++;
    }
    if (ps->p < ps->end && *ps->p == ']') {
        return rx_err(ps, "%s", "an empty class or ']' first in a class");
    }
    for (;;) {
        if (ps->p == ps->end) {
            return rx_err(ps, "%s", "an unterminated class");
        }
        c = (unsigned char) *ps->p++;
        if (c == ']') {
            break;
        }
        if (c >= 128) {
            return rx_err(ps, "%s", "a non-ASCII character");
        }
        if (c == '[') {
            return rx_err(ps, "%s", "'[' inside a class (set operations)");
        }
        if (c == '\\') {
            lo = parse_escape(ps, &sh);
            if (lo == -2) {
                shorthand(s, sh);
                plain = 0;
                continue;
            }
            if (lo < 0) {
                return -1;
            }
        } else {
            lo = c;
        }
        hi = lo;
        if (ps->p + 1 < ps->end && ps->p[0] == '-' && ps->p[1] != ']') {
            ps->p++;
            c = (unsigned char) *ps->p++;
            if (c == '\\') {
                hi = parse_escape(ps, &sh);
                if (hi == -2) {
                    return rx_err(ps, "%s", "a range ending in a class escape");
                }
                if (hi < 0) {
                    return -1;
                }
            } else if (c >= 128) {
                return rx_err(ps, "%s", "a non-ASCII character");
            } else {
                hi = c;
            }
            if (hi < lo) {
                return rx_err(ps, "%s", "a reversed range");
            }
        }
        set_range(s, lo, hi);
    }
    if (neg) {
        ps->ast[id].set[0] = ~s[0];
        ps->ast[id].set[1] = ~s[1];
        /* a negation of plain characters takes every non-ASCII one; one
         * holding \d \w \s would differ between Python and ECMA there */
        ps->ast[id].set[2] = plain ? 1 : 0;
    } else {
        memcpy(ps->ast[id].set, s, sizeof(s));
    }
    return id;
}

static int32_t parse_alt(rx_parser *ps, int top);

static int32_t
parse_atom(rx_parser *ps)
{
    int32_t id;
    int     c;
    char    sh = 0;

    c = (unsigned char) *ps->p++;
    switch (c) {
    case '(':
        if (ps->p < ps->end && *ps->p == '?') {
            if (ps->p + 1 < ps->end && ps->p[1] == ':') {
                ps->p += 2;
            } else {
                return rx_err(ps, "%s", "a lookaround or named group '(?'");
            }
        }
        id = parse_alt(ps, 0);
        if (id < 0) {
            return -1;
        }
        if (ps->p == ps->end || *ps->p != ')') {
            return rx_err(ps, "%s", "an unbalanced '('");
        }
        ps->p++;
        return id;
    case '[':
        return parse_class(ps);
    case '.':
        id = new_ast(ps, A_SET);
        if (id >= 0) {
            ps->ast[id].set[0] = ~(((uint64_t) 1 << '\n') | ((uint64_t) 1 << '\r'));
            ps->ast[id].set[1] = ~(uint64_t) 0;
            ps->ast[id].set[2] = 1;
        }
        return id;
    case '*': case '+': case '?': case '{':
        return rx_err(ps, "%s", "a quantifier with nothing to repeat");
    case ')':
        return rx_err(ps, "%s", "an unbalanced ')'");
    case '^':
        return rx_err(ps, "%s", "'^' other than at the start of a top-level branch");
    case '$':
        return rx_err(ps, "%s", "'$' other than at the end of a top-level branch");
    case '\\':
        c = parse_escape(ps, &sh);
        if (c == -1) {
            return -1;
        }
        id = new_ast(ps, A_SET);
        if (id >= 0) {
            if (c == -2) {
                shorthand(ps->ast[id].set, sh);
            } else {
                set_add(ps->ast[id].set, c);
            }
        }
        return id;
    default:
        if (c >= 128) {
            return rx_err(ps, "%s", "a non-ASCII character");
        }
        id = new_ast(ps, A_SET);
        if (id >= 0) {
            set_add(ps->ast[id].set, c);
        }
        return id;
    }
}

static int
parse_count(rx_parser *ps, int32_t *out)
{
    int32_t v = 0;
    int     any = 0;

    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        v = v * 10 + (*ps->p++ - '0');
        if (v > 1000) {
            return rx_err(ps, "%s", "a repetition count over 1000");
        }
        any = 1;
    }
    *out = v;
    return any ? 0 : -1;
}

static int32_t
parse_rep(rx_parser *ps)
{
    int32_t id = parse_atom(ps), r;
    int32_t min, max;

    while (id >= 0 && ps->p < ps->end) {
        char c = *ps->p;

        if (c == '*' || c == '+' || c == '?') {
            ps->p++;
            min = c == '+';
            max = c == '?' ? 1 : -1;
        } else if (c == '{') {
            ps->p++;
            if (parse_count(ps, &min) != 0) {
                return ps->failed ? -1 : rx_err(ps, "%s", "'{' that is no {m}, {m,} or {m,n}");
            }
            max = min;
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                max = -1;
                if (ps->p < ps->end && *ps->p != '}' && parse_count(ps, &max) != 0) {
                    return ps->failed ? -1 : rx_err(ps, "%s", "a malformed {m,n}");
                }
            }
            if (ps->p == ps->end || *ps->p != '}') {
                return rx_err(ps, "%s", "'{' that is no {m}, {m,} or {m,n}");
            }
            ps->p++;
            if (max >= 0 && max < min) {
                return rx_err(ps, "%s", "{m,n} with n < m");
            }
        } else {
            break;
        }
        if (ps->p < ps->end && *ps->p == '?') {
            ps->p++;   /* lazy: the same language */
        } else if (ps->p < ps->end && *ps->p == '+') {
            return rx_err(ps, "%s", "a possessive quantifier");
        }
        r = new_ast(ps, A_REP);
        if (r < 0) {
            return -1;
        }
        ps->ast[r].a = id;
        ps->ast[r].min = min;
        ps->ast[r].max = max;
        id = r;
    }
    return id;
}

static int32_t
cat(rx_parser *ps, int32_t a, int32_t b)
{
    int32_t id;

    if (a < 0) return b;
    if (b < 0) return a;
    id = new_ast(ps, A_CAT);
    if (id >= 0) {
        ps->ast[id].a = a;
        ps->ast[id].b = b;
    }
    return id;
}

/* anything: the unanchored side of a top-level branch */
static int32_t
any_star(rx_parser *ps)
{
    int32_t set = new_ast(ps, A_SET), r;

    if (set < 0 || (r = new_ast(ps, A_REP)) < 0) {
        return -1;
    }
    ps->ast[set].set[0] = ps->ast[set].set[1] = ~(uint64_t) 0;
    ps->ast[set].set[2] = 1;
    ps->ast[r].a = set;
    ps->ast[r].min = 0;
    ps->ast[r].max = -1;
    return r;
}

static int32_t
parse_seq(rx_parser *ps, int top)
{
    int32_t seq = -1, x;
    int     start = 0, end = 0;

    if (top && ps->p < ps->end && *ps->p == '^') {
        ps->p++;
        start = 1;
    }
    while (ps->p < ps->end && *ps->p != '|' && *ps->p != ')') {
        if (top && *ps->p == '$' && (ps->p + 1 == ps->end || ps->p[1] == '|')) {
            ps->p++;
            end = 1;
            break;
        }
        x = parse_rep(ps);
        if (x < 0) {
            return -1;
        }
        seq = cat(ps, seq, x);
        if (seq < 0) {
            return -1;
        }
    }
    if (seq < 0 && (seq = new_ast(ps, A_EMPTY)) < 0) {
        return -1;
    }
    if (top) {
        /* JSON Schema patterns search: unanchored sides take anything */
        if (!start && (seq = cat(ps, any_star(ps), seq)) < 0) {
            return -1;
        }
        if (!end && (seq = cat(ps, seq, any_star(ps))) < 0) {
            return -1;
        }
    }
    return seq;
}

static int32_t
parse_alt(rx_parser *ps, int top)
{
    int32_t a = parse_seq(ps, top), b, id;

    while (a >= 0 && ps->p < ps->end && *ps->p == '|') {
        ps->p++;
        b = parse_seq(ps, top);
        if (b < 0) {
            return -1;
        }
        id = new_ast(ps, A_ALT);
        if (id < 0) {
            return -1;
        }
        ps->ast[id].a = a;
        ps->ast[id].b = b;
        a = id;
    }
    return a;
}

/* ------------------------------------------------------------ Glushkov */

typedef struct {
    g_bits first, last;
    int    nullable;
} gl_res;

typedef struct {
    rx_parser *ps;
    g_regex   *rx;
} gl_ctx;

static void
bits_or(g_bits *d, const g_bits *s)
{
    int i;

    for (i = 0; i < 4; i++) d->w[i] |= s->w[i];
}

static void
follow_add(g_regex *rx, const g_bits *from, const g_bits *to)
{
    int i, p;

    for (i = 0; i < 4; i++) {
        uint64_t m;

        for (m = from->w[i]; m != 0; m &= m - 1) {
            p = i * 64 + __builtin_ctzll(m);
            bits_or(&rx->follow[p], to);
        }
    }
}

static int
gl(gl_ctx *c, int32_t id, gl_res *out)
{
    const rx_ast *a = &c->ps->ast[id];
    gl_res        x, y;
    int           i, p, sym;

    memset(out, 0, sizeof(*out));
    switch (a->op) {
    case A_EMPTY:
        out->nullable = 1;
        return 0;
    case A_SET:
        if (c->rx->npos == G_RX_MAX) {
            return rx_err(c->ps, "%s", "a pattern this long once repetitions are expanded "
                          "(255 characters at most)");
        }
        p = c->rx->npos++;
        memset(&c->rx->follow[p], 0, sizeof(g_bits));
        for (sym = 0; sym < G_RX_SYMS; sym++) {
            /* control characters other than \b \f \n \r \t would need
             * \u escapes, which constrained strings do not take */
            if (sym < 0x20 && !strchr("\b\f\n\r\t", sym)) {
                continue;
            }
            if (a->set[sym >> 6] >> (sym & 63) & 1) {
                c->rx->sym[sym].w[p >> 6] |= (uint64_t) 1 << (p & 63);
            }
        }
        out->first.w[p >> 6] = out->last.w[p >> 6] = (uint64_t) 1 << (p & 63);
        return 0;
    case A_CAT:
        if (gl(c, a->a, &x) != 0 || gl(c, a->b, &y) != 0) {
            return -1;
        }
        follow_add(c->rx, &x.last, &y.first);
        out->first = x.first;
        if (x.nullable) bits_or(&out->first, &y.first);
        out->last = y.last;
        if (y.nullable) bits_or(&out->last, &x.last);
        out->nullable = x.nullable && y.nullable;
        return 0;
    case A_ALT:
        if (gl(c, a->a, &x) != 0 || gl(c, a->b, &y) != 0) {
            return -1;
        }
        out->first = x.first;
        bits_or(&out->first, &y.first);
        out->last = x.last;
        bits_or(&out->last, &y.last);
        out->nullable = x.nullable || y.nullable;
        return 0;
    default:   /* A_REP: min copies, then (max - min) optional ones or a star */
        out->nullable = 1;
        for (i = 0; i < a->min || (a->max < 0 && i == a->min)
                    || (a->max >= 0 && i < a->max); i++)
        {
            int optional = i >= a->min, star = a->max < 0 && i == a->min;

            if (gl(c, a->a, &x) != 0) {
                return -1;
            }
            if (star) {
                follow_add(c->rx, &x.last, &x.first);
                x.nullable = 1;
            }
            if (optional) {
                x.nullable = 1;
            }
            /* out = out . x */
            follow_add(c->rx, &out->last, &x.first);
            if (out->nullable) bits_or(&out->first, &x.first);
            if (x.nullable) bits_or(&x.last, &out->last);
            out->last = x.last;
            out->nullable = out->nullable && x.nullable;
            if (star) {
                break;
            }
        }
        return 0;
    }
}

static int
set_has(const g_regex *rx, int sym, int p)
{
    return rx->sym[sym].w[p >> 6] >> (p & 63) & 1;
}

/* Cheapest character of position p in chars (1) and JSON bytes. */
static int
pos_cost(const g_regex *rx, int p)
{
    int c, best = G_INF;

    for (c = 0x20; c < 0x80; c++) {
        if (set_has(rx, c, p)) {
            if (c != '"' && c != '\\') {
                return 1;
            }
            best = 2;
        }
    }
    if (set_has(rx, G_RX_NONASCII, p)) {
        best = 2;
    }
    for (c = 0; c < 0x20; c++) {
        if (set_has(rx, c, p)) {
            best = 2;
        }
    }
    return best;
}

g_regex *
qwen_regex_compile(const char *pattern, size_t len, const char *what, const char *path,
                char *err, size_t err_len)
{
    rx_parser *ps = calloc(1, sizeof(*ps));
    g_regex   *rx = calloc(1, sizeof(*rx));
    gl_ctx     c;
    gl_res     r;
    int32_t    root;
    int        p, q, changed, i, cost;

    if (ps == NULL || rx == NULL) {
        qwen_fail(err, err_len, "out of memory");
        goto fail;
    }
    ps->p = pattern;
    ps->end = pattern + len;
    ps->err = err;
    ps->err_len = err_len;
    ps->what = what;
    ps->path = path;
    root = ps->p == ps->end ? new_ast(ps, A_EMPTY) : parse_alt(ps, 1);
    if (root >= 0 && ps->p != ps->end) {
        rx_err(ps, "%s", "an unbalanced ')'");
        root = -1;
    }
    if (root < 0) {
        goto fail;
    }
    /* position 0 is the start: its follow set is the first set */
    rx->npos = 1;
    c.ps = ps;
    c.rx = rx;
    if (gl(&c, root, &r) != 0) {
        goto fail;
    }
    rx->follow[0] = r.first;
    rx->last = r.last;
    if (r.nullable) {
        rx->last.w[0] |= 1;
    }
    /* shortest way to a match from each position, in chars and bytes */
    for (p = 0; p < rx->npos; p++) {
        rx->cdist[p] = rx->bdist[p] = (rx->last.w[p >> 6] >> (p & 63) & 1) ? 0 : G_INF;
        rx->bcost[p] = p == 0 ? 0 : (uint8_t) (pos_cost(rx, p) == G_INF ? 255 : pos_cost(rx, p));
    }
    do {
        changed = 0;
        for (p = 0; p < rx->npos; p++) {
            for (i = 0; i < 4; i++) {
                uint64_t m;

                for (m = rx->follow[p].w[i]; m != 0; m &= m - 1) {
                    q = i * 64 + __builtin_ctzll(m);
                    if (rx->bcost[q] == 255) {
                        continue;
                    }
                    cost = rx->bcost[q];
                    if (rx->cdist[q] + 1 < rx->cdist[p]) {
                        rx->cdist[p] = rx->cdist[q] + 1;
                        changed = 1;
                    }
                    if (rx->bdist[q] + cost < rx->bdist[p]) {
                        rx->bdist[p] = rx->bdist[q] + cost;
                        changed = 1;
                    }
                }
            }
        }
    } while (changed);
    for (i = 0; i < G_RX_SYMS; i++) {
        if (!qwen_regex_empty(&rx->sym[i])) {
            rx->any[i >> 6] |= (uint64_t) 1 << (i & 63);
        }
    }
    if (rx->cdist[0] >= G_INF) {
        rx_err(ps, "%s", "a pattern that matches no string a JSON answer can hold");
        goto fail;
    }
    free(ps);
    return rx;
fail:
    free(ps);
    free(rx);
    return NULL;
}

/* The set after one more character (symbol 0..128); empty: refused. */
void
qwen_regex_step(const g_regex *rx, const g_bits *s, int sym, g_bits *out)
{
    g_bits n = { { 0, 0, 0, 0 } };
    int    i;

    for (i = 0; i < 4; i++) {
        uint64_t m;

        for (m = s->w[i]; m != 0; m &= m - 1) {
            bits_or(&n, &rx->follow[i * 64 + __builtin_ctzll(m)]);
        }
    }
    for (i = 0; i < 4; i++) {
        out->w[i] = n.w[i] & rx->sym[sym].w[i];
    }
}

int
qwen_regex_accepting(const g_regex *rx, const g_bits *s)
{
    return ((s->w[0] & rx->last.w[0]) | (s->w[1] & rx->last.w[1]) | (s->w[2] & rx->last.w[2])
            | (s->w[3] & rx->last.w[3])) != 0;
}

/* Fewest more characters (bytes: 0) or JSON bytes (1) to a match. */
int32_t
qwen_regex_dist(const g_regex *rx, const g_bits *s, int bytes)
{
    int32_t best = G_INF;
    int     i, p;

    for (i = 0; i < 4; i++) {
        uint64_t m;

        for (m = s->w[i]; m != 0; m &= m - 1) {
            p = i * 64 + __builtin_ctzll(m);
            if ((bytes ? rx->bdist[p] : rx->cdist[p]) < best) {
                best = bytes ? rx->bdist[p] : rx->cdist[p];
            }
        }
    }
    return best;
}

int
qwen_regex_empty(const g_bits *s)
{
    return (s->w[0] | s->w[1] | s->w[2] | s->w[3]) == 0;
}
