#!/usr/bin/python3
"""cli_test.py - tests the CLI forms `qwen tokenize|detokenize|template`.

usage: QWEN_TOKENIZER_DIR=... QWEN_TOKENIZER_REFS=... cli_test.py QWEN_BIN PACKAGE_DIR
File bytes are tokenized exactly (CRLF, no final newline, special tokens...)
and compared with the JS reference tokenizer run on the same bytes; the
template command is compared with the Jinja references; errors must give a
non-zero exit status and a message.
"""
import json
import os
import subprocess
import sys
import tempfile
import unicodedata

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL cli: " + what, file=sys.stderr)


def run(args, stdin=None):
    p = subprocess.run(args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: cli_test.py QWEN_BIN PACKAGE_DIR")
    qwen, pkg = sys.argv[1], sys.argv[2]
    tok_dir = os.environ.get("QWEN_TOKENIZER_DIR")
    refs = os.environ.get("QWEN_TOKENIZER_REFS")
    if not tok_dir or not refs:
        print("FAIL cli: QWEN_TOKENIZER_DIR and QWEN_TOKENIZER_REFS must be set", file=sys.stderr)
        print("0 passed, 1 failed")
        sys.exit(1)
    tmp = tempfile.mkdtemp(prefix="qwen_cli_test_")

    # --- tokenize: exact file bytes against the JS reference
    texts = [
        b"Hello, world!",
        b"line one\r\nline two\r\n",
        b"no final newline\n\n\n",
        b"<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        "emoji \U0001F468\u200D\U0001F469\u200D\U0001F467 and cafe\u0301 and \u4f60\u597d".encode(),
        b"\tcode(x) {\n\t\treturn x;   \n}\n",
        b" " * 100 + b"x" + b"\n" * 7,
    ]
    files = []
    for i, t in enumerate(texts):
        path = os.path.join(tmp, "t%d.txt" % i)
        with open(path, "wb") as f:
            f.write(t)
        files.append(path)
    js = ("const {fromPreTrained} = require(process.argv[1]); const fs = require('fs');"
          "const t = fromPreTrained(); const out = [];"
          "for (const f of process.argv.slice(2)) out.push(t.encode(fs.readFileSync(f, 'utf8'),"
          "{add_special_tokens: false}));"
          "console.log(JSON.stringify(out));")
    rc, out, err = run(["node", "-e", js, os.path.abspath(pkg)] + files)
    check(rc == 0, "node reference failed: " + err)
    ref = json.loads(out) if rc == 0 else [[]] * len(files)
    for i, path in enumerate(files):
        rc, out, err = run([qwen, "tokenize", "-m", tok_dir, "--text-file", path])
        check(rc == 0, "tokenize %s: %s" % (path, err))
        ids = json.loads(out) if rc == 0 else None
        check(ids == ref[i], "tokenize text %d: got %s, reference %s" % (i, ids, ref[i]))
        if ids:
            rc, out, err = run([qwen, "detokenize", "-m", tok_dir, "--ids",
                                ",".join(str(x) for x in ids)])
            want = unicodedata.normalize("NFC", texts[i].decode()).encode()
            check(rc == 0 and out == want, "detokenize text %d: %r != %r (%s)" % (i, out, want, err))

    # --- bench mode prints a throughput
    big = os.path.join(tmp, "big.txt")
    with open(os.path.join(refs, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    with open(big, "w", encoding="utf-8") as f:
        for _ in range(20):
            f.write("\n".join(s for s in corpus if len(s) <= 300))
    rc, out, err = run([qwen, "tokenize", "-m", tok_dir, "--text-file", big, "--bench"])
    check(rc == 0 and b"MB/s" in out, "--bench: rc=%d out=%r err=%s" % (rc, out, err))
    if rc == 0:
        sys.stdout.write("cli bench (%d KB of mixed text): %s" % (os.path.getsize(big) // 1024,
                         out.decode().splitlines()[-1] + "\n"))

    # --- errors
    bad = os.path.join(tmp, "bad.txt")
    with open(bad, "wb") as f:
        f.write(b"ok so far \xff\xfe then junk")
    rc, out, err = run([qwen, "tokenize", "-m", tok_dir, "--text-file", bad])
    check(rc == 1 and "invalid UTF-8 at byte 10" in err and out == b"",
          "invalid UTF-8: rc=%d err=%s" % (rc, err))
    rc, out, err = run([qwen, "tokenize", "-m", os.path.join(tmp, "nope"), "--text-file", bad])
    check(rc == 1 and "nope" in err, "missing model: rc=%d err=%s" % (rc, err))
    rc, out, err = run([qwen, "tokenize", "--text-file", bad])
    check(rc == 2 and "usage" in err, "usage error: rc=%d err=%s" % (rc, err))
    rc, out, err = run([qwen, "detokenize", "-m", tok_dir, "--ids", "1,x"])
    check(rc == 2, "bad --ids: rc=%d" % rc)
    rc, out, err = run([qwen, "detokenize", "-m", tok_dir, "--ids", "1,151800"])
    check(rc == 1 and "151800" in err, "unknown id: rc=%d err=%s" % (rc, err))

    # --- template against the Jinja references
    with open(os.path.join(refs, "conversations.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    with open(os.path.join(refs, "chat_ref.json"), encoding="utf-8") as f:
        rcases = json.load(f)["cases"]
    n_ok = 0
    for i, (c, r) in enumerate(zip(cases, rcases)):
        mpath = os.path.join(tmp, "m%d.json" % i)
        args = [qwen, "template", "-m", tok_dir, "--messages", mpath]
        if i % 2 and "tools" in c:   # both ways of passing tools
            with open(mpath, "w", encoding="utf-8") as f:
                json.dump(c["messages"], f)
            tpath = os.path.join(tmp, "t%d.json" % i)
            with open(tpath, "w", encoding="utf-8") as f:
                json.dump(c["tools"], f)
            args += ["--tools", tpath]
        else:
            with open(mpath, "w", encoding="utf-8") as f:
                json.dump({k: c[k] for k in ("messages", "tools") if k in c}, f)
        if c.get("enable_thinking") is False:
            args.append("--no-think")
        if not c.get("add_generation_prompt", True):
            args.append("--no-generation-prompt")
        rc, out, err = run(args)
        ok = rc == 0 and out == r.get("text", "").encode()
        check(ok, "template %r: rc=%d err=%s" % (c["name"], rc, err))
        n_ok += ok
    print("cli template: %d/%d conversations equal the Jinja reference" % (n_ok, len(cases)))
    bad_json = os.path.join(tmp, "bad.json")
    with open(bad_json, "w") as f:
        f.write('[{"role": "user", "content": 5}]')
    rc, out, err = run([qwen, "template", "--messages", bad_json])
    check(rc == 1 and "content" in err, "non-string content: rc=%d err=%s" % (rc, err))

    for name in os.listdir(tmp):
        os.unlink(os.path.join(tmp, name))
    os.rmdir(tmp)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
