/*
 * test_util.c - the layers below the APIs, without a model: qp_buf growth,
 * the JSON writer (escapes, shortest numbers, key order), the error bodies
 * of qp_error_make in both shapes, RFC 3339 timestamps as Go prints them
 * and SHA-256 against the FIPS 180-4 vectors.
 */
#include <math.h>

#include "proto_test.h"
#include "util.h"         /* private: the JSON writer, time and hash are tested too */

static void
test_buf_and_json(void)
{
    qp_buf   b = { 0 };
    qp_error err;
    json_t  *v;
    int      i;

    for (i = 0; i < 1000; i++) {
        CHECK(qp_buf_printf(&b, "%d,", i) == 0, "printf");
    }
    CHECK(b.len == 3890 && strncmp(b.data, "0,1,2,", 6) == 0, "buf grows: %zu", b.len);
    qp_buf_reset(&b);
    CHECK(b.len == 0 && b.cap > 0, "reset keeps memory");
    CHECK(qp_buf_printf(&b, "%s", "a longer string than the small stack buffer of "
                        "one hundred and twenty eight bytes used by qp_buf_printf "
                        "for short numbers, to take the second path") == 0
          && b.len > 128, "long printf");
    qp_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0, "free");

    qp_error_make(CHAT, 429, NULL, "queue \"full\"\n\x01 \xff end", 3, &err);
    CHECK(err.status == 429, "status");
    v = json_loads(err.body, 0, NULL);
    CHECK(v != NULL, "error body JSON: %s", err.body);
    CHECK(streq(jstr(v, "error.type"), "overloaded_error"), "429 type");
    CHECK(streq(jstr(v, "error.message"), "queue \"full\"\n\x01 \xef\xbf\xbd end"),
          "escaped message: %s", err.body);
    CHECK(json_integer_value(jget(v, "error.retry_after")) == 3, "retry_after in body");
    CHECK(json_is_null(jget(v, "error.param")) && json_is_null(jget(v, "error.code")),
          "param/code null");
    CHECK(strstr(err.body, "\\u0001") != NULL, "control chars as \\u00XX: %s", err.body);
    json_decref(v);

    qp_error_make_code(CHAT, 429, "tokens", "rate_limit_exceeded", "over quota", 7, &err);
    v = json_loads(err.body, 0, NULL);
    CHECK(streq(jstr(v, "error.type"), "tokens")
          && streq(jstr(v, "error.code"), "rate_limit_exceeded")
          && json_integer_value(jget(v, "error.retry_after")) == 7,
          "error with a code: %s", err.body);
    json_decref(v);
    qp_error_make_code(QP_OLLAMA_CHAT, 429, "tokens", "rate_limit_exceeded", "over", 0, &err);
    CHECK(streq(err.body, "{\"error\":\"over\"}"), "Ollama has no code: %s", err.body);

    qp_error_make(CHAT, 503, "overloaded_error", "shutting down", 0, &err);
    CHECK(strstr(err.body, "retry_after") == NULL, "no hint without retry_after");
    qp_error_make(CHAT, 413, NULL, "too large", 0, &err);
    v = json_loads(err.body, 0, NULL);
    CHECK(streq(jstr(v, "error.type"), "invalid_request_error"), "413 type");
    json_decref(v);
    qp_error_make(QP_OLLAMA_CHAT, 503, NULL, "busy", 5, &err);
    v = json_loads(err.body, 0, NULL);
    CHECK(streq(jstr(v, "error"), "busy") && json_integer_value(jget(v, "retry_after")) == 5,
          "Ollama error body: %s", err.body);
    json_decref(v);

    /* numbers: shortest round trip; no inf in JSON */
    qp_buf_reset(&b);
    qp_json_float(&b, 0.1f); qp_json_raw(&b, " ");
    qp_json_float(&b, -2.0f); qp_json_raw(&b, " ");
    qp_json_float(&b, -1.0f / 3.0f); qp_json_raw(&b, " ");
    qp_json_float(&b, -INFINITY); qp_json_raw(&b, " ");
    qp_json_double(&b, 0.1); qp_json_raw(&b, " ");
    qp_json_double(&b, 1e300); qp_json_raw(&b, " ");
    qp_json_double(&b, NAN);
    CHECK(streq(b.data, "0.1 -2.0 -0.33333334 -9999.0 0.1 1e+300 null"), "numbers: %s", b.data);
    qp_buf_reset(&b);
    v = json_loads("{\"b\":[1,2.5,\"\u00e9\\n\"],\"a\":{\"x\":null,\"y\":true}}", 0, NULL);
    qp_json_value(&b, v, 1);
    CHECK(streq(b.data, "{\"b\": [1, 2.5, \"\xc3\xa9\\n\"], \"a\": {\"x\": null, \"y\": true}}"),
          "spaced value, key order kept: %s", b.data);
    qp_buf_reset(&b);
    qp_json_value(&b, v, 0);
    CHECK(streq(b.data, "{\"b\":[1,2.5,\"\xc3\xa9\\n\"],\"a\":{\"x\":null,\"y\":true}}"),
          "compact value: %s", b.data);
    json_decref(v);
    qp_buf_reset(&b);
    qp_json_str(&b, "a\"\\\x1f\x7f\xc3", 6);
    CHECK(streq(b.data, "\"a\\\"\\\\\\u001f\x7f\\ufffd\""), "escapes: %s", b.data);
    qp_buf_free(&b);

    /* a message far longer than the body still gives valid JSON */
    {
        char big[4000];

        memset(big, '\n', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        qp_error_make(CHAT, 500, NULL, big, 0, &err);
        v = json_loads(err.body, 0, NULL);
        CHECK(v != NULL && strlen(err.body) < sizeof(err.body), "long message truncated");
        json_decref(v);
    }
}

static void
test_time_and_hash(void)
{
    struct timespec ts;
    char            buf[QP_RFC3339_LEN], hex[65];
    uint8_t         h[32];
    int             i;
    static const char *const msgs[] = {
        "", "abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
    };
    static const char *const want[] = {
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    };
    static const struct {
        long        ns;
        const char *want;
    } times[] = {
        { 0, "2023-11-14T22:13:20Z" },
        { 123456789, "2023-11-14T22:13:20.123456789Z" },
        { 120000000, "2023-11-14T22:13:20.12Z" },
        { 5, "2023-11-14T22:13:20.000000005Z" },
    };
    char million[1000];

    /* whole seconds, nanoseconds, trailing zeros dropped, leading ones kept */
    ts.tv_sec = 1700000000;
    for (i = 0; i < 4; i++) {
        ts.tv_nsec = times[i].ns;
        qp_rfc3339(&ts, buf);
        CHECK(streq(buf, times[i].want), "%ld ns: %s", times[i].ns, buf);
    }
    qp_rfc3339_now(buf);
    CHECK(is_rfc3339_utc(buf), "now %s", buf);

    for (i = 0; i < 3; i++) {
        int k;

        qp_sha256(msgs[i], strlen(msgs[i]), h);
        for (k = 0; k < 32; k++) {
            snprintf(hex + 2 * k, 3, "%02x", h[k]);
        }
        CHECK(streq(hex, want[i]), "sha256(%s) = %s", msgs[i], hex);
    }
    /* 1000 x 'a' crosses many blocks; 64- and 55/56-byte edges */
    memset(million, 'a', sizeof(million));
    qp_sha256(million, 1000, h);
    for (i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    }
    CHECK(streq(hex, "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"),
          "sha256(a x 1000) = %s", hex);
    qp_sha256(million, 55, h);
    CHECK(h[0] == 0x9f && h[1] == 0x43, "55 bytes");
    qp_sha256(million, 64, h);
    CHECK(h[0] == 0xff && h[1] == 0xe0, "64 bytes");
}

int
main(void)
{
    test_buf_and_json();
    test_time_and_hash();
    TEST_MAIN_END();
}
