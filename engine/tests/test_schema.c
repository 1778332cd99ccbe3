/*
 * test_schema.c - the JSON Schema compiler and automaton, keyword by
 * keyword: valid and invalid answers fed byte by byte, refused keywords
 * named with their path, the fewest bytes to close, and random walks
 * under a token budget (each step a random allowed single-byte token, the
 * budget forcing the shortest completion at the end), whose every answer
 * an independent validator (Python's jsonschema, Draft 2020-12 with its
 * format checker) must accept.
 */
#include "test.h"
#include "qwen.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const qwen_tokenizer *tok;
static int32_t               byte_tok[256];   /* single-byte token ids */
static int32_t               eog;

typedef struct {
    const char *schema;
    const char *valid[12];
    const char *invalid[12];
} keyword_case;

#define OBJ1(name, sub) "{\"type\":\"object\",\"properties\":{\"" name "\":" sub "},\"required\":[\"" name "\"]}"

static const keyword_case cases[] = {
    /* objects: optional properties, schema order, nothing else */
    { "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"},"
      "\"c\":{\"type\":\"boolean\"}},\"required\":[\"b\"],\"additionalProperties\":false}",
      { "{\"b\":\"x\"}", "{\"a\":1,\"b\":\"x\"}", "{\"a\":1,\"b\":\"x\",\"c\":true}",
        "{ \"b\" : \"\" , \"c\" : false }" },
      { "{}", "{\"a\":1}", "{\"b\":\"x\",\"a\":1}", "{\"b\":\"x\",\"d\":1}", "{\"c\":true,\"b\":\"x\"}" } },
    /* enum of any JSON value */
    { OBJ1("v", "{\"enum\":[1,12,\"a\",null,true,{\"k\":[1,2]},[3],1.5,\"q\\\"\"]}"),
      { "{\"v\":1}", "{\"v\":12}", "{\"v\":\"a\"}", "{\"v\":null}", "{\"v\":true}",
        "{\"v\":{\"k\":[1,2]}}", "{\"v\":[3]}", "{\"v\":1.5}", "{\"v\": 12 }", "{\"v\":\"q\\\"\"}" },
      { "{\"v\":2}", "{\"v\":123}", "{\"v\":\"b\"}", "{\"v\":false}", "{\"v\":{\"k\":[1]}}",
        "{\"v\":[3,4]}", "{\"v\":1.6}", "{\"v\":15}", "{\"v\":\"q\"}" } },
    /* enum narrowed by type */
    { OBJ1("v", "{\"type\":\"string\",\"enum\":[\"x\",1]}"),
      { "{\"v\":\"x\"}" }, { "{\"v\":1}" } },
    /* const */
    { OBJ1("k", "{\"const\":\"fixed \\\"q\\\"\"}"),
      { "{\"k\":\"fixed \\\"q\\\"\"}" }, { "{\"k\":\"fixed\"}", "{\"k\":\"fixed \\\"q\\\" \"}" } },
    { OBJ1("k", "{\"const\":{\"a\":[1,{\"b\":null}]}}"),
      { "{\"k\":{\"a\":[1,{\"b\":null}]}}" }, { "{\"k\":{\"a\":[1]}}", "{\"k\":{}}" } },
    /* anyOf: objects that look alike until a key differs */
    { OBJ1("x", "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                "\"required\":[\"a\"]},{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},"
                "\"b\":{\"type\":\"null\"}},\"required\":[\"a\",\"b\"]},{\"type\":\"null\"}]}"),
      { "{\"x\":{\"a\":1}}", "{\"x\":{\"a\":\"s\",\"b\":null}}", "{\"x\":null}" },
      { "{\"x\":{\"a\":\"s\"}}", "{\"x\":{\"a\":1,\"b\":null}}", "{\"x\":1}" } },
    /* oneOf of disjoint types */
    { OBJ1("x", "{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}"),
      { "{\"x\":\"a\"}", "{\"x\":3}" }, { "{\"x\":1.5}", "{\"x\":null}" } },
    /* $ref with recursion, both spellings of the definitions */
    { "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
      "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"],"
      "\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}",
      { "{\"v\":1}", "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}" },
      { "{\"v\":1,\"kids\":[{}]}", "{\"kids\":[]}", "{\"v\":1,\"kids\":[{\"v\":2,\"w\":1}]}" } },
    { "{\"type\":\"object\",\"definitions\":{\"c\":{\"enum\":[\"r\",\"g\"]}},\"properties\":{"
      "\"a\":{\"$ref\":\"#/definitions/c\"},\"b\":{\"$ref\":\"#/definitions/c\"}},\"required\":[\"a\",\"b\"]}",
      { "{\"a\":\"r\",\"b\":\"g\"}" }, { "{\"a\":\"r\",\"b\":\"x\"}" } },
    /* type lists with null */
    { OBJ1("a", "{\"type\":[\"string\",\"null\"]}"),
      { "{\"a\":\"x\"}", "{\"a\":null}" }, { "{\"a\":1}", "{\"a\":true}" } },
    /* string lengths count characters (an escape is one) */
    { OBJ1("s", "{\"type\":\"string\",\"minLength\":2,\"maxLength\":4}"),
      { "{\"s\":\"ab\"}", "{\"s\":\"abcd\"}", "{\"s\":\"\xC3\xA9\\u00e9\"}", "{\"s\":\"\\n\\t\"}" },
      { "{\"s\":\"a\"}", "{\"s\":\"abcde\"}", "{\"s\":\"\"}" } },
    /* patterns */
    { OBJ1("p", "{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-[0-9]{4}$\"}"),
      { "{\"p\":\"ABC-1234\"}" },
      { "{\"p\":\"AB-1234\"}", "{\"p\":\"ABC-12345\"}", "{\"p\":\"abc-1234\"}", "{\"p\":\"ABC-123\"}" } },
    { OBJ1("p", "{\"type\":\"string\",\"pattern\":\"b+c\"}"),
      { "{\"p\":\"aabbbcd\"}", "{\"p\":\"bc\"}" }, { "{\"p\":\"ac\"}", "{\"p\":\"\"}" } },
    { OBJ1("p", "{\"type\":\"string\",\"pattern\":\"^(cat|dog)s?$|^bird$\"}"),
      { "{\"p\":\"cats\"}", "{\"p\":\"dog\"}", "{\"p\":\"bird\"}" },
      { "{\"p\":\"cow\"}", "{\"p\":\"birds\"}", "{\"p\":\"catss\"}" } },
    { OBJ1("p", "{\"type\":\"string\",\"pattern\":\"^\\\\d+\\\\.\\\\w\\\\s[^x]\\\\S(?:ab)*.$\"}"),
      { "{\"p\":\"12.a byz\"}", "{\"p\":\"1._\\tz!abab\xC3\xA9\"}" },
      { "{\"p\":\"12.a xyz\"}", "{\"p\":\"12.a y z\"}", "{\"p\":\".a byz\"}" } },
    { OBJ1("p", "{\"type\":\"string\",\"pattern\":\"^a{2,}b{0,2}[-x]?$\",\"maxLength\":5}"),
      { "{\"p\":\"aa\"}", "{\"p\":\"aaabb\"}", "{\"p\":\"aab-\"}" },
      { "{\"p\":\"a\"}", "{\"p\":\"aabbb\"}", "{\"p\":\"aaaabb\"}" } },
    /* formats */
    { OBJ1("d", "{\"type\":\"string\",\"format\":\"date\"}"),
      { "{\"d\":\"2024-02-28\"}", "{\"d\":\"1999-12-31\"}" },
      { "{\"d\":\"2024-02-30\"}", "{\"d\":\"2024-13-01\"}", "{\"d\":\"24-01-01\"}" } },
    { OBJ1("d", "{\"type\":\"string\",\"format\":\"date-time\"}"),
      { "{\"d\":\"2024-01-31T23:59:59+02:00\"}", "{\"d\":\"2024-01-31T00:00:00.5Z\"}" },
      { "{\"d\":\"2024-01-31 23:59:59Z\"}", "{\"d\":\"2024-01-31T24:00:00Z\"}" } },
    { OBJ1("d", "{\"type\":\"string\",\"format\":\"time\"}"),
      { "{\"d\":\"12:30:00Z\"}" }, { "{\"d\":\"12:30\"}" } },
    { OBJ1("e", "{\"type\":\"string\",\"format\":\"email\"}"),
      { "{\"e\":\"a.b@example.com\"}" }, { "{\"e\":\"ab@c\"}", "{\"e\":\"a b@c.de\"}" } },
    { OBJ1("u", "{\"type\":\"string\",\"format\":\"uuid\"}"),
      { "{\"u\":\"123e4567-e89b-12d3-a456-426614174000\"}" },
      { "{\"u\":\"123e4567e89b12d3a456426614174000\"}" } },
    { OBJ1("i", "{\"type\":\"string\",\"format\":\"ipv4\"}"),
      { "{\"i\":\"192.168.0.1\"}", "{\"i\":\"0.0.0.0\"}" },
      { "{\"i\":\"256.1.1.1\"}", "{\"i\":\"01.1.1.1\"}", "{\"i\":\"1.1.1\"}" } },
    { OBJ1("i", "{\"type\":\"string\",\"format\":\"ipv6\"}"),
      { "{\"i\":\"2001:db8:0:0:0:0:0:1\"}" }, { "{\"i\":\"2001:db8::1:2:3:4:5:6:7\"}" } },
    { OBJ1("h", "{\"type\":\"string\",\"format\":\"hostname\"}"),
      { "{\"h\":\"example.com\"}", "{\"h\":\"a-b.c\"}" }, { "{\"h\":\"-a.com\"}", "{\"h\":\"a..b\"}" } },
    /* integers, digit by digit */
    { OBJ1("n", "{\"type\":\"integer\",\"minimum\":-5,\"maximum\":120}"),
      { "{\"n\":-5}", "{\"n\":0}", "{\"n\":120}", "{\"n\":7}" },
      { "{\"n\":-6}", "{\"n\":121}", "{\"n\":1000}", "{\"n\":-10}", "{\"n\":1.5}" } },
    { OBJ1("n", "{\"type\":\"integer\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":10}"),
      { "{\"n\":1}", "{\"n\":9}" }, { "{\"n\":0}", "{\"n\":10}", "{\"n\":-1}" } },
    { OBJ1("n", "{\"type\":\"integer\",\"multipleOf\":5,\"minimum\":10,\"maximum\":100}"),
      { "{\"n\":10}", "{\"n\":55}", "{\"n\":100}" },
      { "{\"n\":12}", "{\"n\":5}", "{\"n\":105}", "{\"n\":0}" } },
    { OBJ1("n", "{\"type\":\"integer\",\"maximum\":-100}"),
      { "{\"n\":-100}", "{\"n\":-12345}" }, { "{\"n\":-99}", "{\"n\":0}", "{\"n\":5}" } },
    /* numbers: by sign and integer part */
    { OBJ1("x", "{\"type\":\"number\",\"minimum\":0,\"exclusiveMaximum\":10}"),
      { "{\"x\":0}", "{\"x\":9.99}", "{\"x\":5.5}", "{\"x\":0.001}" },
      { "{\"x\":-0.5}", "{\"x\":10}", "{\"x\":10.5}", "{\"x\":11}", "{\"x\":1e1}" } },
    { OBJ1("x", "{\"type\":\"number\",\"minimum\":-2.5,\"maximum\":2.5}"),
      { "{\"x\":-2}", "{\"x\":2}", "{\"x\":1.75}", "{\"x\":-1.5}" },
      { "{\"x\":-3}", "{\"x\":3}", "{\"x\":2.25}", "{\"x\":-2.1}" } },
    /* arrays */
    { OBJ1("a", "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}"),
      { "{\"a\":[1,2]}", "{\"a\":[1, 2, 3]}" },
      { "{\"a\":[1]}", "{\"a\":[1,2,3,4]}", "{\"a\":[]}" } },
    { OBJ1("a", "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],"
                "\"items\":false}"),
      { "{\"a\":[\"a\",1]}", "{\"a\":[\"a\"]}", "{\"a\":[]}" },
      { "{\"a\":[\"a\",\"b\"]}", "{\"a\":[\"a\",1,2]}", "{\"a\":[1]}" } },
    { OBJ1("a", "{\"type\":\"array\",\"prefixItems\":[{\"const\":0}],\"items\":{\"type\":\"boolean\"},"
                "\"minItems\":2}"),
      { "{\"a\":[0,true]}", "{\"a\":[0,false,true]}" }, { "{\"a\":[0]}", "{\"a\":[1,true]}" } },
    { OBJ1("a", "{\"type\":\"array\",\"items\":{\"enum\":[\"x\",\"y\",\"z\"]},\"uniqueItems\":true}"),
      { "{\"a\":[\"x\",\"z\"]}", "{\"a\":[\"z\",\"y\",\"x\"]}", "{\"a\":[]}" },
      { "{\"a\":[\"x\",\"x\"]}", "{\"a\":[\"x\",\"y\",\"z\",\"x\"]}" } },
    /* annotations are accepted */
    { "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"x\",\"$comment\":\"c\","
      "\"title\":\"t\",\"description\":\"d\",\"type\":\"object\",\"properties\":{\"a\":{"
      "\"type\":\"integer\",\"default\":1,\"examples\":[2],\"deprecated\":false}},\"required\":[\"a\"]}",
      { "{\"a\":2}" }, { "{\"a\":\"2\"}" } },
    /* a mix */
    { "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
      "\"code\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-\\\\d{4}$\"},"
      "\"qty\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":99},"
      "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\",\"c\"]},\"uniqueItems\":true,"
      "\"maxItems\":2},\"note\":{\"type\":[\"string\",\"null\"],\"maxLength\":8}},"
      "\"required\":[\"code\",\"qty\"],\"additionalProperties\":false}",
      { "{\"code\":\"ABC-1234\",\"qty\":99,\"tags\":[\"b\"],\"note\":null}",
        "{\"id\":\"123e4567-e89b-12d3-a456-426614174000\",\"code\":\"XYZ-0000\",\"qty\":1}" },
      { "{\"code\":\"ABC-1234\",\"qty\":100}", "{\"code\":\"ABC-1234\",\"qty\":1,\"tags\":[\"a\",\"a\"]}",
        "{\"code\":\"ABC-1234\",\"qty\":1,\"note\":\"123456789\"}" } },
};

typedef struct {
    const char *schema;
    const char *needle1, *needle2;   /* the error names both */
} refused_case;

static const refused_case refused[] = {
    { OBJ1("a", "{\"allOf\":[{}]}"), "'allOf'", "#/properties/a" },
    { OBJ1("a", "{\"not\":{}}"), "'not'", "#/properties/a" },
    { OBJ1("a", "{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"array\",\"prefixItems\":[{},{\"allOf\":[]}]}]}"),
      "#/properties/a/anyOf/1/prefixItems/1: 'allOf'", "" },
    { OBJ1("a", "{\"if\":{},\"then\":{}}"), "'if'", "#/properties/a" },
    { "{\"type\":\"object\",\"patternProperties\":{\"x\":{}}}", "'patternProperties'", "#" },
    { "{\"type\":\"object\",\"minProperties\":1}", "'minProperties'", "#" },
    { "{\"type\":\"object\",\"propertyNames\":{}}", "'propertyNames'", "#" },
    { OBJ1("a", "{\"type\":\"array\",\"contains\":{}}"), "'contains'", "#/properties/a" },
    { OBJ1("a", "{\"x-custom\":1}"), "'x-custom'", "#/properties/a" },
    { "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"http://x/y\"}}}", "'$ref'", "http://x/y" },
    { "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/missing\"}}}", "'$ref'", "#/properties/a" },
    { OBJ1("a", "{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"uniqueItems\":true}"), "'uniqueItems'", "#/properties/a" },
    { OBJ1("a", "{\"type\":\"number\",\"multipleOf\":0.5}"), "'multipleOf'", "#/properties/a" },
    { OBJ1("a", "{\"type\":\"string\",\"format\":\"uri\"}"), "'format'", "uri" },
    { OBJ1("a", "{\"type\":\"string\",\"pattern\":\"(?=a)b\"}"), "'pattern'", "lookaround" },
    { OBJ1("a", "{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}"), "'pattern'", "backreference" },
    { OBJ1("a", "{\"type\":\"string\",\"pattern\":\"\\\\bfoo\"}"), "'pattern'", "word boundary" },
    { OBJ1("a", "{\"type\":\"string\",\"pattern\":\"\\\\p{L}\"}"), "'pattern'", "Unicode property" },
    { OBJ1("a", "{\"type\":\"string\",\"pattern\":\"a^b\"}"), "'pattern'", "'^'" },
    { OBJ1("a", "{\"oneOf\":[{\"type\":\"number\"},{\"type\":\"integer\"}]}"), "'oneOf'", "#/properties/a" },
    { OBJ1("a", "{\"type\":\"string\",\"minLength\":5,\"enum\":[\"x\"]}"), "'minLength'", "'enum'" },
    { OBJ1("a", "{\"type\":\"integer\",\"minimum\":0.2,\"maximum\":0.8}"), "bounds", "#/properties/a" },
    { OBJ1("a", "{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}"), "'maxLength'", "#/properties/a" },
    { "{\"type\":\"array\"}", "top level", "object" },
    { "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"k\":{\"$ref\":\"#/$defs/n\"}},"
      "\"required\":[\"k\"]}},\"$ref\":\"#/$defs/n\"}", "finite", "" },
};

static long
feed_text(const qwen_grammar *g, const char *text, int *complete)
{
    qwen_grammar_state *st = qwen_grammar_state_new(g);
    size_t              i, n = strlen(text);
    long                bad = -1;

    for (i = 0; i < n; i++) {
        if (qwen_grammar_accept_bytes(st, text + i, 1) != 0) {
            bad = (long) i;
            break;
        }
    }
    *complete = qwen_grammar_complete(st);
    if (bad < 0 && *complete) {
        CHECK(qwen_grammar_min_close(st) == 0, "a complete value needs no bytes");
    }
    qwen_grammar_state_free(st);
    return bad;
}

static void
test_keywords(void)
{
    char   err[QWEN_ERR_LEN];
    size_t i, j;
    int    complete;
    long   bad;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        qwen_grammar *g = qwen_grammar_new_json(tok, cases[i].schema, err, sizeof(err));

        CHECK(g != NULL, "case %zu: %s", i, err);
        if (g == NULL) {
            continue;
        }
        for (j = 0; j < 12 && cases[i].valid[j] != NULL; j++) {
            bad = feed_text(g, cases[i].valid[j], &complete);
            CHECK(bad < 0 && complete, "case %zu: valid %s rejected at byte %ld", i,
                  cases[i].valid[j], bad);
        }
        for (j = 0; j < 12 && cases[i].invalid[j] != NULL; j++) {
            bad = feed_text(g, cases[i].invalid[j], &complete);
            CHECK(bad >= 0 || !complete, "case %zu: invalid %s accepted", i, cases[i].invalid[j]);
        }
        qwen_grammar_free(g);
    }
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        qwen_grammar *g;

        err[0] = '\0';
        g = qwen_grammar_new_json(tok, refused[i].schema, err, sizeof(err));
        CHECK(g == NULL && strstr(err, refused[i].needle1) != NULL
              && strstr(err, refused[i].needle2) != NULL,
              "refusal %zu: %s (want %s, %s)", i, g ? "accepted" : err, refused[i].needle1,
              refused[i].needle2);
        qwen_grammar_free(g);
    }
}

/* The fewest bytes to close, at a few points. */
static void
test_min_close(void)
{
    static const struct { const char *schema, *prefix; int32_t want; } mc[] = {
        { "{\"type\":\"object\"}", "", 2 },
        { "{\"type\":\"object\"}", "{\"a\":[1,{\"b\":\"", 4 },              /* "}]} */
        { OBJ1("k", "{\"type\":\"string\",\"minLength\":3}"), "", 11 },     /* {"k":"xxx"} */
        { OBJ1("k", "{\"type\":\"string\",\"pattern\":\"^ab+$\"}"), "{\"k\":\"", 4 },
        { OBJ1("n", "{\"type\":\"integer\",\"minimum\":100}"), "{\"n\":", 4 },
        { OBJ1("n", "{\"type\":\"integer\",\"minimum\":100}"), "{\"n\":1", 3 },
        { OBJ1("e", "{\"enum\":[\"long one\",\"s\"]}"), "{\"e\":", 4 },
        { OBJ1("a", "{\"type\":\"array\",\"minItems\":2,\"items\":{\"type\":\"null\"}}"), "{\"a\":[", 11 },
    };
    char    err[QWEN_ERR_LEN];
    size_t  i;

    for (i = 0; i < sizeof(mc) / sizeof(mc[0]); i++) {
        qwen_grammar       *g = qwen_grammar_new_json(tok, mc[i].schema, err, sizeof(err));
        qwen_grammar_state *st = g ? qwen_grammar_state_new(g) : NULL;

        CHECK(st != NULL && qwen_grammar_accept_bytes(st, mc[i].prefix, strlen(mc[i].prefix)) == 0,
              "min_close %zu: setup %s", i, err);
        if (st != NULL) {
            CHECK(qwen_grammar_min_close(st) == mc[i].want, "min_close %zu: %d, want %d", i,
                  qwen_grammar_min_close(st), mc[i].want);
        }
        qwen_grammar_state_free(st);
        qwen_grammar_free(g);
    }
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint32_t
rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t) (rng >> 11);
}

/*
 * One random answer: each step a random allowed single-byte token (EOG
 * once complete, sometimes), with budget tokens in all. Returns the text
 * (malloc'd) or NULL on a dead end.
 */
static char *
walk(const qwen_grammar *g, int budget, int *steps_out)
{
    qwen_grammar_state *st = qwen_grammar_state_new(g);
    char               *out = malloc((size_t) budget + 1);
    int                 allowed[257], n, step, c, len = 0;

    for (step = 0; step < budget; step++) {
        qwen_grammar_set_budget(st, budget - step - 1);
        if (qwen_grammar_complete(st) && rnd() % 4 == 0) {
            break;   /* EOG */
        }
        n = 0;
        for (c = 0; c < 256; c++) {
            if (byte_tok[c] >= 0 && qwen_grammar_allows(st, byte_tok[c])) {
                allowed[n++] = c;
            }
        }
        if (n == 0) {
            if (qwen_grammar_complete(st) && qwen_grammar_allows(st, eog)) {
                break;
            }
            out[len] = '\0';
            fprintf(stderr, "dead end after: %s (min close %d)\n", out,
                    qwen_grammar_min_close(st));
            free(out);
            out = NULL;
            break;
        }
        /* prefer printable ASCII, as a model mostly writes */
        c = allowed[rnd() % (unsigned) n];
        if (c >= 0x80 && rnd() % 4 != 0) {
            int k;

            for (k = 0; k < n && allowed[k] >= 0x80; k++) {}
            c = k < n ? allowed[(unsigned) k + rnd() % (unsigned) (n - k)] : c;
            if (c >= 0x80) c = allowed[rnd() % (unsigned) n];
        }
        if (qwen_grammar_accept(st, byte_tok[c]) != 0) {
            free(out);
            out = NULL;
            break;
        }
        out[len++] = (char) c;
    }
    if (out != NULL) {
        out[len] = '\0';
        if (!qwen_grammar_complete(st)) {
            free(out);
            out = NULL;
        }
    }
    *steps_out = step;
    qwen_grammar_state_free(st);
    return out;
}

static const char *const validator =
    "import json, sys, re, datetime\n"
    "import jsonschema\n"
    "fc = jsonschema.Draft202012Validator.FORMAT_CHECKER\n"
    "try:\n"
    "    import rfc3339_validator\n"
    "except ImportError:\n"
    "    # Debian 12 has no rfc3339_validator, without which jsonschema checks\n"
    "    # no date-time or time: RFC 3339's grammar and ranges here\n"
    "    def rfc3339(s, date):\n"
    "        if not isinstance(s, str):\n"
    "            return True\n"
    "        m = re.fullmatch((r'(\\d{4}-\\d{2}-\\d{2})[Tt]' if date else '()')\n"
    "                         + r'(\\d{2}):(\\d{2}):(\\d{2})(\\.\\d+)?([Zz]|[+-](\\d{2}):(\\d{2}))', s)\n"
    "        if (not m or int(m[2]) > 23 or int(m[3]) > 59 or int(m[4]) > 60\n"
    "                or (m[7] and (int(m[7]) > 23 or int(m[8]) > 59))):\n"
    "            raise ValueError('not RFC 3339')\n"
    "        if date:\n"
    "            datetime.date.fromisoformat(m[1])\n"
    "        return True\n"
    "    fc.checks('date-time', raises=ValueError)(lambda s: rfc3339(s, True))\n"
    "    fc.checks('time', raises=ValueError)(lambda s: rfc3339(s, False))\n"
    "bad = 0; n = 0\n"
    "for line in open(sys.argv[1]):\n"
    "    rec = json.loads(line); n += 1\n"
    "    try:\n"
    "        inst = json.loads(rec['text'])\n"
    "        v = jsonschema.Draft202012Validator(rec['schema'],\n"
    "            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)\n"
    "        errs = list(v.iter_errors(inst))\n"
    "    except Exception as e:\n"
    "        errs = [e]\n"
    "    if errs:\n"
    "        bad += 1\n"
    "        print('INVALID', rec['text'], '|', errs[0], file=sys.stderr)\n"
    "print('validated', n, 'invalid', bad)\n"
    "sys.exit(1 if bad else 0)\n";

/* Random walks for every schema above, validated outside this program. */
static void
test_walks(void)
{
    char   err[QWEN_ERR_LEN], path[64], script[64], cmd[256];
    size_t i;
    int    k, steps, dead = 0, written = 0, forced = 0, fd, rc;
    FILE  *f;

    snprintf(path, sizeof(path), "/tmp/qwen-schema-walks-XXXXXX");
    fd = mkstemp(path);
    snprintf(script, sizeof(script), "/tmp/qwen-schema-check-XXXXXX");
    rc = mkstemp(script);
    if (fd < 0 || rc < 0 || write(rc, validator, strlen(validator)) != (ssize_t) strlen(validator)) {
        CHECK(0, "temp files");
        return;
    }
    close(rc);
    f = fdopen(fd, "w");
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        qwen_grammar *g = qwen_grammar_new_json(tok, cases[i].schema, err, sizeof(err));
        json_t       *schema = json_loads(cases[i].schema, 0, NULL);

        for (k = 0; g != NULL && k < 12; k++) {
            qwen_grammar_state *st = qwen_grammar_state_new(g);
            int                 need = qwen_grammar_min_close(st), budget;
            char               *text;

            qwen_grammar_state_free(st);
            /* from the tightest budget (every byte forced) to a roomy one */
            budget = need + (k < 3 ? k : (int) (rnd() % 120));
            text = walk(g, budget, &steps);
            if (text == NULL) {
                dead++;
                CHECK(0, "case %zu walk %d (budget %d): dead end or incomplete after %d", i, k,
                      budget, steps);
                continue;
            }
            forced += steps == budget;
            {
                json_t *rec = json_pack("{s:O,s:s}", "schema", schema, "text", text);
                char   *line = json_dumps(rec, JSON_COMPACT);

                fprintf(f, "%s\n", line);
                free(line);
                json_decref(rec);
            }
            written++;
            free(text);
        }
        json_decref(schema);
        qwen_grammar_free(g);
    }
    fclose(f);
    printf("walks: %d answers, %d closed by the budget, %d dead ends\n", written, forced, dead);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %s", script, path);
    rc = system(cmd);
    CHECK(rc == 0, "python3 jsonschema (python3-jsonschema) refused an answer or is missing");
    unlink(path);
    unlink(script);
}

/* Tool calls: <tool_call> JSON </tool_call>, required or auto, parallel. */
static void
test_tools(void)
{
    static const char *const call =
        "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get\"},"
        "\"arguments\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}},"
        "\"required\":[\"x\"],\"additionalProperties\":false}},\"required\":[\"name\",\"arguments\"],"
        "\"additionalProperties\":false},{\"type\":\"object\",\"properties\":{\"name\":{\"const\":"
        "\"put\"},\"arguments\":{\"type\":\"object\"}},\"required\":[\"name\",\"arguments\"],"
        "\"additionalProperties\":false}]}";
    char                err[QWEN_ERR_LEN];
    int32_t             open = qwen_token_id(tok, "<tool_call>", 11);
    int32_t             close = qwen_token_id(tok, "</tool_call>", 12);
    int32_t             hello = byte_tok['H'], nl = byte_tok['\n'];
    int                 mode;

    for (mode = 0; mode < 4; mode++) {
        int                 required = mode & 1, parallel = mode >> 1;
        qwen_grammar       *g = qwen_grammar_new_tools(tok, call, required, parallel, err,
                                                       sizeof(err));
        qwen_grammar_state *st = g ? qwen_grammar_state_new(g) : NULL;
        const char         *body = "\n{\"name\": \"get\", \"arguments\": {\"x\": 7}}\n";
        const char         *bad1 = "\n{\"name\": \"put\", \"arguments\": 1";
        const char         *bad2 = "\n{\"name\": \"get\", \"arguments\": {}}";

        CHECK(st != NULL, "tools grammar: %s", err);
        if (st == NULL) {
            qwen_grammar_free(g);
            continue;
        }
        CHECK(qwen_grammar_allows(st, hello) == !required, "tools %d: text first", mode);
        CHECK(qwen_grammar_allows(st, eog) == !required, "tools %d: the end first", mode);
        CHECK(!qwen_grammar_allows(st, close), "tools %d: no close before a call", mode);
        if (!required) {
            CHECK(qwen_grammar_accept(st, hello) == 0 && qwen_grammar_accept(st, nl) == 0,
                  "tools %d: text", mode);
        }
        CHECK(qwen_grammar_accept(st, open) == 0, "tools %d: <tool_call>", mode);
        CHECK(!qwen_grammar_allows(st, eog) && !qwen_grammar_allows(st, close),
              "tools %d: no end inside a call", mode);
        CHECK(qwen_grammar_accept_bytes(st, bad1, strlen(bad1)) != 0,
              "tools %d: arguments must be an object", mode);
        CHECK(qwen_grammar_accept_bytes(st, bad2, strlen(bad2)) != 0,
              "tools %d: get's x is required", mode);
        CHECK(qwen_grammar_accept_bytes(st, body, strlen(body)) == 0, "tools %d: a call", mode);
        CHECK(!qwen_grammar_allows(st, eog), "tools %d: no end before </tool_call>", mode);
        CHECK(qwen_grammar_accept(st, close) == 0, "tools %d: </tool_call>", mode);
        CHECK(!qwen_grammar_allows(st, hello), "tools %d: no text after a call", mode);
        CHECK(qwen_grammar_allows(st, nl) && qwen_grammar_allows(st, eog),
              "tools %d: whitespace or the end after a call", mode);
        CHECK(qwen_grammar_allows(st, open) == parallel, "tools %d: a second call", mode);
        qwen_grammar_state_free(st);
        qwen_grammar_free(g);
    }
}

int
main(void)
{
    qwen_model *model = test_load_model("tiny-f32.gguf");
    int32_t     id;
    size_t      n;
    const char *p;

    if (model == NULL) {
        TEST_MAIN_END();
    }
    tok = qwen_model_tokenizer(model);
    memset(byte_tok, 0xff, sizeof(byte_tok));
    for (id = 0; id < qwen_tokenizer_vocab_size(tok); id++) {
        p = qwen_token_bytes(tok, id, &n);
        if (p != NULL && n == 1 && byte_tok[(unsigned char) p[0]] < 0) {
            byte_tok[(unsigned char) p[0]] = id;
        }
        if (qwen_token_is_eog(tok, id) && eog == 0) {
            eog = id;
        }
    }
    test_keywords();
    test_min_close();
    test_walks();
    test_tools();
    qwen_model_free(model);
    TEST_MAIN_END();
}
