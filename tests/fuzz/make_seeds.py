#!/usr/bin/env python3
"""make_seeds.py - writes the generated seeds of tests/fuzz/corpus (run once
by hand; the results are committed): GGUF and HF directories of the "micro"
shape from build/make_test_model, one GGUF with a small byte-level BPE
tokenizer in its metadata, and the grammar, tokenizer and chat seeds.
The request seeds are the JSON bodies of proto/tests (extracted earlier).
Usage: tests/fuzz/make_seeds.py BUILD_DIR"""
import hashlib, os, random, struct, subprocess, sys, tempfile

build = sys.argv[1] if len(sys.argv) > 1 else "build"
here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(here, "corpus")
rng = random.Random(20261203)


def save(target, data, name=None):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    name = name or "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def add_tokenizer(gguf):
    """The micro GGUF with tokenizer.ggml.* added (288 tokens, as the vocab)."""
    magic, ver, n_t, n_kv = struct.unpack_from("<4sIQQ", gguf, 0)
    pos = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_val(t, pos):
        if t == 8:
            (n,) = struct.unpack_from("<Q", gguf, pos)
            return pos + 8 + n
        if t == 9:
            at, cnt = struct.unpack_from("<IQ", gguf, pos)
            pos += 12
            for _ in range(cnt):
                pos = skip_val(at, pos)
            return pos
        return pos + sizes[t]
    align = 32
    for _ in range(n_kv):
        (kl,) = struct.unpack_from("<Q", gguf, pos)
        key = gguf[pos + 8:pos + 8 + kl]
        pos += 8 + kl
        (t,) = struct.unpack_from("<I", gguf, pos)
        pos += 4
        if key == b"general.alignment":
            (align,) = struct.unpack_from("<I", gguf, pos)
        pos = skip_val(t, pos)
    kv_end = pos
    for _ in range(n_t):
        (nl,) = struct.unpack_from("<Q", gguf, pos)
        pos += 8 + nl
        (nd,) = struct.unpack_from("<I", gguf, pos)
        pos += 4 + 8 * nd + 4 + 8
    infos_end = pos
    data_start = (infos_end + align - 1) // align * align
    # GPT-2's byte-level alphabet (256 tokens), a few merges, the specials
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_tok = {b: chr(c) for b, c in zip(bs, cs)}
    toks = [byte_tok[b] for b in range(256)]
    merges = ["h e", "l l", "he ll", "hell o", "\u0120 hello", "\u0120 t", "t h", "\u010a \u010a"]
    toks += [m.replace(" ", "") for m in merges]
    toks += ["<think>", "</think>", "<tool_call>", "</tool_call>"]
    types = [1] * len(toks)
    types[-4:] = [4, 4, 4, 4]
    while len(toks) < 285:
        toks.append("[PAD%d]" % len(toks))
        types.append(5)
    toks += ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types += [3, 3, 3]
    kv = b""
    kv += gstr("tokenizer.ggml.model") + struct.pack("<I", 8) + gstr("gpt2")
    kv += gstr("tokenizer.ggml.pre") + struct.pack("<I", 8) + gstr("qwen2")
    kv += gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, len(toks))
    kv += b"".join(gstr(t) for t in toks)
    kv += gstr("tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 5, len(types))
    kv += b"".join(struct.pack("<i", t) for t in types)
    kv += gstr("tokenizer.ggml.merges") + struct.pack("<IIQ", 9, 8, len(merges))
    kv += b"".join(gstr(m) for m in merges)
    kv += gstr("tokenizer.ggml.eos_token_id") + struct.pack("<II", 4, 287)
    kv += gstr("tokenizer.ggml.padding_token_id") + struct.pack("<II", 4, 285)
    kv += gstr("tokenizer.ggml.bos_token_id") + struct.pack("<II", 4, 285)
    kv += gstr("tokenizer.chat_template") + struct.pack("<I", 8) + gstr("{{ messages }}")
    head = struct.pack("<4sIQQ", magic, ver, n_t, n_kv + 9) + gguf[24:kv_end] + kv \
        + gguf[kv_end:infos_end]
    pad = (-len(head)) % align
    return head + b"\0" * pad + gguf[data_start:]


def main():
    gen = os.path.join(build, "make_test_model")
    with tempfile.TemporaryDirectory() as tmp:
        for t in ("q8_0", "bf16", "q4_k_m"):
            p = os.path.join(tmp, t + ".gguf")
            subprocess.run([gen, "--shape", "micro", "--gguf", p, "--type", t], check=True,
                           stdout=subprocess.DEVNULL)
            data = open(p, "rb").read()
            save("gguf", data, "micro-" + t + ".gguf")
            if t == "q8_0":
                save("gguf", add_tokenizer(data), "micro-q8_0-tokenizer.gguf")
        for dt in ("bf16",):
            d = os.path.join(tmp, "hf-" + dt)
            subprocess.run([gen, "--shape", "micro", "--hf", d, "--dtype", dt], check=True,
                           stdout=subprocess.DEVNULL)
            cfg = open(os.path.join(d, "config.json"), "rb").read()
            st = open(os.path.join(d, "model.safetensors"), "rb").read()
            save("hf", struct.pack("<H", len(cfg)) + cfg + st, "micro-" + dt)

    # grammar: schema NUL program (see fuzz_grammar.c)
    person = (b'{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},'
              b'"color":{"enum":["red","green"]},"tags":{"type":"array","items":'
              b'{"type":"string"}},"address":{"type":"object","properties":{"city":'
              b'{"type":"string"},"zip":{"type":["string","null"]}},"required":["city"]}},'
              b'"required":["name","age"],"additionalProperties":false}')
    docs = [b'{"name":"Ada","age":36,"color":"red","tags":["a"],"address":{"city":"X","zip":null}}',
            b'{"a": [1, 2.5e-3, true, null, {"b": "\\u00e9\\n"}]}']
    for schema in (b"", person, b'{"type":"object"}',
                   b'{"type":"object","properties":{"n":{"type":"number"},"b":{"type":"boolean"}}}'):
        for doc in docs:
            prog = b""
            for i in range(0, len(doc), 7):
                chunk = doc[i:i + 7]
                prog += bytes([1, len(chunk)]) + chunk
            save("grammar", schema + b"\0" + prog + b"\x03")
        prog = b"".join(bytes([2]) + struct.pack("<I", rng.randrange(1 << 24))[:3]
                        for _ in range(40))
        save("grammar", schema + b"\0" + prog + b"\x03")
        prog = b"".join(bytes([0]) + struct.pack("<I", rng.randrange(1 << 24))[:3]
                        for _ in range(10))
        save("grammar", schema + b"\0" + prog)

    # tokenizer: mode byte, then text / int32 ids / a token string
    for text in ["Hello, world!", "  leading and trailing  \n\n", "naïve café 東京 😀",
                 "<|im_start|>user\nhi<|im_end|>", "e\u0301 ﬁ Å", "1234567 3.14159",
                 "don't I'll we've", "\t\r\n\x0b\x0c", "<think>\n\n</think>\n\n"]:
        save("tokenizer", b"\0" + text.encode())
    save("tokenizer", b"\0\xff\xfe invalid \xc3")
    for ids in ([9707, 11, 1879, 0], [151644, 872, 198, 151645], [-1, 151936, 2 ** 31 - 1],
                [145, 224, 163, 242, 111], [rng.randrange(151936) for _ in range(20)]):
        save("tokenizer", b"\1" + b"".join(struct.pack("<i", i) for i in ids))
    for s in ["Ġhello", "<|im_end|>", "hello", "ĊĊ"]:
        save("tokenizer", b"\2" + s.encode())

    # chat: flags, then NUL-separated fields (see fuzz_chat.c)
    def chat(flags, fields):
        return bytes([flags]) + b"\0".join(f.encode() for f in fields)
    tools = ('[{"type":"function","function":{"name":"get_weather","description":"Weather",'
             '"parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]')
    save("chat", chat(1, ["\0", "You are helpful.", "", "", "\1", "Hi!", "", ""]))
    save("chat", chat(3, ["\1", "What is 2+2?", "", "", "\2", "4", "Adding.", "",
                          "\1", "And 3+3?", "", ""]))
    save("chat", chat(7, [tools, "\1", "Weather in Paris?", "", "",
                          "\2", "", "Let me check.",
                          '[{"type":"function","function":{"name":"get_weather",'
                          '"arguments":{"city":"Paris"}}}]',
                          "\3", '{"temp":21}', "", "", "\3", "second result", "", ""]))
    save("chat", chat(1, ["\4developer", "custom role", "", "", "\1", "<think>x</think>", "", ""]))


main()
