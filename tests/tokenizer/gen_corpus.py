#!/usr/bin/python3
"""gen_corpus.py - writes tests/tokenizer/corpus.json, the strings the C
tokenizer must encode exactly like the reference. Hand-written cases plus
programmatic ones (digit and whitespace runs, long inputs, seeded random
mixes). Deterministic: rerunning gives the same file, which is committed.

    /usr/bin/python3 tests/tokenizer/gen_corpus.py > tests/tokenizer/corpus.json
"""
import json
import random
import sys

C = []  # the corpus


def add(*items):
    C.extend(items)


# --- English, punctuation, contractions
add("Hello, world!", "hello world", "Hello World", "HELLO WORLD",
    "The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged, that a single man in possession "
    "of a good fortune, must be in want of a wife.",
    "I'm here; you're there; they've gone; we'll see; he'd know; she's fine; "
    "it't odd.",
    "I'M LOUD. YOU'RE LOUD. THEY'VE BEEN LOUD. WE'LL BE LOUD. HE'D BE. SHE'S.",
    "don't can't won't shouldn't wouldn't isn't aren't",
    "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D", "'Re 'rE 'Ll 'lL",
    "'sup? 'twas 'em 'ello", "rock 'n' roll", "o'clock O'Neil d'Artagnan",
    "''quoted'' and ``backticks''", "\"double\" 'single' `back`",
    "Mr. Smith went to Washington, D.C., on Jan. 5th.",
    "e.g., i.e., etc., vs. a.k.a.", "Wait... what?! Really?!?",
    "semi;colon:colon,comma.period!bang?question",
    "(parens) [brackets] {braces} <angles>",
    "email@example.com https://example.org/path?q=1&r=two#frag",
    "C:\\Users\\name\\file.txt", "/usr/local/bin/python3 --version",
    "50% off! $19.99 or \u20ac17,50 or \u00a315", "#hashtag @mention ~tilde ^caret",
    "a-b_c=d+e*f/g\\h|i", "--- *** ___ === +++", "...", "!!!", "?!", "-",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
    "A", "a", "I", " ", "", "x y z", "ab", "Ab", "aB", "AB")

# --- whitespace runs, tabs, CRLF
for k in range(1, 17):
    add(" " * k)
for k in (1, 2, 3, 4, 8):
    add("\t" * k, "\n" * k, "\r\n" * k)
add("a b", "a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a\nb", "a\n\nb",
    "a\r\nb", "a\r\n\r\nb", "a\rb", "a\r\r\nb", "a \nb", "a\n b", "a \n b",
    " a", "  a", "   a", "a ", "a  ", "a   ", " a ", "\ta", "\na", "a\n",
    "line1\r\nline2\r\nline3\r\n", "trailing spaces   \nnext line",
    " \t \n \r\n ", "\n \n \n", "  \n\n  \n", "\t\n\t\n", "x\n\n\n\ny",
    "indent:\n    four\n        eight\n\ttab\n\t\ttwo tabs",
    "a\u00a0b", "a\u00a0\u00a0b", "\u3000\u3000ideographic", "a\u2009b\u200ac",
    "a\u2028b\u2029c", "a\u000bb\u000cc", "end with newline\n",
    "   leading and trailing   ", "\u00a0 nbsp then space")

# --- digits
for k in range(1, 13):
    add("".join(str((i * 7 + 3) % 10) for i in range(k)))
add("1234567890" * 10, "3.14159265358979", "1,000,000", "1 000 000", "-42",
    "+1 (555) 123-4567", "2024-01-15T10:30:00Z", "0x1F 0b1010 0o777 1e-10",
    "v1.2.3", "192.168.0.1", "a1b2c3", "abc123def", "123abc", "\u0661\u0662\u0663",
    "\uff11\uff12\uff13", "x\u00b2 + y\u00b3", "\u2167 \u216b \u2160\u2161", "\u00bd \u00bc",
    "\u0967\u0968\u0969 \u09e7\u09e8", "\u4e00\u4e8c\u4e09 123 \u58f9")

# --- CJK, other scripts
add("\u4f60\u597d\uff0c\u4e16\u754c\uff01",
    "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\u3002\u5929\u5b89\u95e8\u4e0a\u592a\u9633\u5347\u3002",
    "\u673a\u5668\u5b66\u4e60\u662f\u4eba\u5de5\u667a\u80fd\u7684\u4e00\u4e2a\u5206\u652f\u3002",
    "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c", "\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a",
    "\u6771\u4eac\u90fd\u6e0b\u8c37\u533a", "\u30b3\u30fc\u30d2\u30fc\u3092\u304f\u3060\u3055\u3044\u3002",
    "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
    "Vi\u1ec7t Nam xin ch\u00e0o", "T\u00fcrk\u00e7e \u00e7ok g\u00fczel", "Stra\u00dfe Gr\u00fc\u00dfe \u00c4\u00d6\u00dc",
    "fran\u00e7ais na\u00efve caf\u00e9 r\u00e9sum\u00e9", "\u00bfQu\u00e9 tal? \u00a1Bien!",
    "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0", "\u0532\u0561\u0580\u0565\u0582",
    "\u12a0\u121b\u122d\u129b", "\u1780\u1798\u17d2\u1796\u17bb\u1787\u17b6",
    "Hello\u4f60\u597dWorld\u4e16\u754c", "English\u65e5\u672c\u8a9e\ud55c\uad6d\uc5b4\u0420\u0443\u0441",
    "AI\u6a21\u578bQwen3\u652f\u6301119\u79cd\u8bed\u8a00",
    "\u300c\u5f15\u7528\u300d\u300e\u4e8c\u91cd\u300f\u3010\u62ec\u5f27\u3011",
    "\uff08\u5168\u89d2\uff09\uff1a\uff1b\uff0c\u3002\uff01\uff1f",
    "\uff21\uff22\uff23\uff41\uff42\uff43", "\u3000\u5168\u89d2\u7a7a\u683c\u3000",
    "\ud835\udc00\ud835\udc01\ud835\udc02 math bold", "\ud840\udc00\ud840\udc01 ext-B")

# --- emoji (ZWJ sequences, modifiers, flags, keycaps, selectors)
add("\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466",
    "\U0001F3F3\uFE0F\u200D\U0001F308", "\U0001F1FA\U0001F1F8\U0001F1EF\U0001F1F5",
    "#\uFE0F\u20E3 1\uFE0F\u20E3", "\u2764\uFE0F \u2764", "\U0001F937\U0001F3FD\u200D\u2640\uFE0F",
    "I \u2764\uFE0F NY \U0001F5FD!", "\U0001F680\U0001F680\U0001F680",
    "emoji\U0001F600in\U0001F600text", "\U0001F9D1\u200D\U0001F4BB coding",
    "\u263A\uFE0E vs \u263A\uFE0F", "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F")

# --- combining marks (NFC changes these) and other normalization cases
add("e\u0301", "cafe\u0301", "Cafe\u0301 au lait", "A\u030angstro\u0308m", "n\u0303",
    "a\u0323\u0302", "a\u0302\u0323", "o\u0308\u0304", "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af",
    "\u212b", "\u2126", "\u2000\u2001", "\ufb01 ligature", "\uf900\uf901", "\u0344",
    "\u304b\u3099\u304d\u3099", "\u30cf\u309a", "\u0915\u093c", "\u00e9 vs e\u0301",
    "Zalgo: Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da",
    "\u0301 leading combining", "x\u0301\u0301\u0301", "\u1e9b\u0323",
    "\u0041\u030a\u0301", "\u00c5\u0301", "\u0112\u0300", "\u03b1\u0313\u0301",
    "word\u0300word", " \u0308", "\u05d1\u05bc", "\u0627\u0653")

# --- code
add("int main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n",
    "for (let i = 0; i < n; i++) { sum += a[i]; }",
    "{\"key\": \"value\", \"n\": [1, 2, 3], \"ok\": true, \"nil\": null}",
    "<html><body class=\"x\"><p>Hi &amp; bye</p></body></html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "#!/bin/sh\nset -eu\nfor f in *.c; do gcc -c \"$f\"; done\n",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "x = [i for i in range(10) if i % 2 == 0]",
    "git commit -m 'fix: handle CRLF'\r\n", "a&&b||c!=d==e<=f>=g->h::i",
    "/^\\s*(\\d+)\\.(\\d+)$/gm", "    \tmixed indent\n\t    again",
    "// comment\n/* block */\n# hash\n-- sql", "\u00a0\u00a0\u00a0\u00a0code()",
    "if x:\n\tpass\r\nelse:\r\n\tpass", "#include <stdio.h>", "@decorator\ndef g(): ...",
    "`inline` ```fenced```", "key: value\nlist:\n  - a\n  - b\n",
    "\\begin{equation} E = mc^2 \\end{equation}")

# --- added/special tokens inside text
add("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<think>\nLet me think.\n</think>\n\nThe answer is 42.",
    "<think></think>", "<think><think></think></think>", "x<|endoftext|>y",
    "<|endoftext|>", "<|endoftext|><|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|im_start", "<|im_start|", "im_start|>", "<|im_start |>", "<<|im_end|>>",
    "<|IM_START|>", "< think>", "<think >", "<thinking>", "</think", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
    "<tool_response>\nok\n</tool_response>", "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<|vision_start|><|image_pad|><|vision_end|>", "<|box_start|>(1,2)<|box_end|>",
    "<|object_ref_start|>x<|object_ref_end|>", "<|quad_start|><|quad_end|>",
    "<|repo_name|>r<|file_sep|>f", "<|video_pad|><|vision_pad|><|fim_pad|>",
    " <|im_end|> ", "\n<|im_end|>\n", "e\u0301<|im_end|>\u0301", "<|im_end|>'s",
    "text <think> more", "<|im_start|>user\n\u4f60\u597d<|im_end|>", "<|endoftext|>\n\n<|endoftext|>",
    "<<<>>>", "<|", "|>", "<|>", "<||>", "<|im_end|><|im_end|><|im_end|>")

# --- edge characters
add("\u0000", "a\u0000b", "\u0001\u0002\u007f", "tab\there", "\u200b\u200c\u200d",
    "\ufeffBOM", "\ufffd", "\U0010fffd", "\ue000 private", "\u00ad soft hyphen",
    "\u0085", "a\u0085b", "\u180e", "\u2060word\u2060", "\u061c", "\u00ff\u0100\u0101",
    "\u0120\u010a", "\u0120hello", "\u00c4\u00a0")

# --- long inputs
para = ("Large language models are trained on vast amounts of text. They learn "
        "statistical patterns of language, and can then generate, summarize and "
        "translate text. Tokenization splits that text into pieces first. ")
add(para * 30)
add(("\u5927\u578b\u8bed\u8a00\u6a21\u578b\u5728\u6d77\u91cf\u6587\u672c\u4e0a\u8bad\u7ec3\uff0c"
     "\u5b66\u4e60\u8bed\u8a00\u7684\u7edf\u8ba1\u89c4\u5f8b\u3002") * 200)
add(" " * 3000, "\n" * 500, "\t" * 300, " \n" * 400, "a" * 1000, "ab" * 700,
    "9" * 2000, "!" * 777, "=-" * 300, "x" * 64, "x" * 65, "y" * 63, "\u00e9" * 200,
    "e\u0301" * 150, "\U0001F600" * 150, "supercalifragilisticexpialidocious" * 20,
    "https://example.com/" + "/".join("seg%d" % i for i in range(200)),
    "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 30,
    "word " * 1000, "Ab" + "c" * 500 + "\n" + " " * 100 + "end")

# --- programmatic whitespace/letter interleavings (regex lookahead cases)
for k in range(1, 6):
    for tail in ("x", "\n", "!", "1", "\u4e2d", "\u00e9"):
        add(" " * k + tail, tail + " " * k, " " * k + "\n" + " " * k + tail)

# --- seeded random mixes of fragments from every class above
rng = random.Random(20240531)
FRAG = ["a", "Z", "hello", " world", "'s", "'LL", "'", "1", "42", "\u4e2d\u6587", "\u3042",
        "\ud55c", " ", "  ", "\t", "\n", "\r\n", "\r", "!", "?!", ".", ",", "(", ")", "{",
        "\"", "#", "$", "\U0001F600", "\u200d", "\U0001F469\u200D\U0001F4BB", "e\u0301",
        "\u0301", "\u00e9", "\u00a0", "\u3000", "<|im_end|>", "<think>", "</think>", "<",
        "|", ">", "_", "-", "\u0410\u0411", "\u05d0", "\u0661", "\u00b2", "\u212b", "\\",
        "\u0120", "\u0100"]
for _ in range(120):
    n = rng.randint(1, 25)
    add("".join(rng.choice(FRAG) for _ in range(n)))

assert len(C) >= 300, len(C)
json.dump(C, sys.stdout, ensure_ascii=True, indent=0)
sys.stdout.write("\n")
print("corpus: %d strings" % len(C), file=sys.stderr)
