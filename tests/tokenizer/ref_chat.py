#!/usr/bin/python3
"""ref_chat.py - reference renderings of the Qwen3 chat template for the C
renderer's tests, made with Jinja2 set up the way Hugging Face transformers
does it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, tojson = json.dumps(ensure_ascii=False), raise_exception).

usage: /usr/bin/python3 ref_chat.py tokenizer_config.json conversations.json out.json
Writes {"cases": [{"name", "text"} or {"name", "error"}], "floats": [[s, repr]]}.
"""
import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: ref_chat.py tokenizer_config.json conversations.json out.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        template_text = json.load(f)["chat_template"]
    with open(sys.argv[2], encoding="utf-8") as f:
        fixtures = json.load(f)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(template_text)

    out_cases = []
    for case in fixtures["cases"]:
        kwargs = {"messages": case["messages"],
                  "add_generation_prompt": case.get("add_generation_prompt", True)}
        if "tools" in case:
            kwargs["tools"] = case["tools"]
        if "enable_thinking" in case:
            kwargs["enable_thinking"] = case["enable_thinking"]
        try:
            out_cases.append({"name": case["name"], "text": template.render(**kwargs)})
        except Exception as e:  # the C side must then fail too
            out_cases.append({"name": case["name"], "error": "%s: %s" % (type(e).__name__, e)})

    floats = [[s, repr(float(s))] for s in fixtures.get("floats", [])]
    with open(sys.argv[3], "w", encoding="utf-8") as f:
        json.dump({"cases": out_cases, "floats": floats}, f, ensure_ascii=False, indent=1)
    print("ref_chat: %d conversations -> %s" % (len(out_cases), sys.argv[3]), file=sys.stderr)


main()
