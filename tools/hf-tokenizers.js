#!/usr/bin/env node
// Independent reference: Hugging Face tokenizers (Rust, through the npm package @anush008/tokenizers).
// Not a project dependency: install it outside the repository and point NODE_PATH at it, e.g.
//   mkdir -p /tmp/hftok && cd /tmp/hftok && npm install @anush008/tokenizers @anush008/tokenizers-linux-x64-gnu
//   NODE_PATH=/tmp/hftok/node_modules node tools/hf-tokenizers.js oracle TOKENIZER.json TEXTS.jsonl > expected.jsonl
//   NODE_PATH=/tmp/hftok/node_modules node tools/hf-tokenizers.js bench TOKENIZER.json CORPUS.txt[.gz] [DOC_START_REGEX]
//   NODE_PATH=/tmp/hftok/node_modules node tools/hf-tokenizers.js time TOKENIZER.json CORPUS.txt[.gz] [IDS_OUT.json]
// oracle: each {"text": ...} line in → {"text": ..., "ids": [...]} line out (no special tokens added).
// bench: encode MB/s of the corpus as one text (one thread) and as documents through encodeBatch (all cores).
// time: one encode of the corpus as one text by a fresh tokenizer (empty word cache) after a warm-up encode by another,
// as bench/Whittle.Native.Bench's tokenizers-compare times ours and Microsoft's; prints {"bytes", "seconds", "ids"} and
// writes the ids as a JSON array to IDS_OUT when given (the whole-corpus reference of that comparison).
const fs = require('fs');
const zlib = require('zlib');
const { Tokenizer } = require('@anush008/tokenizers');

async function main() {
  const [mode, tokPath, input, arg] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokPath);
  const readCorpus = () => {
    let buf = fs.readFileSync(input);
    if (buf[0] === 0x1f && buf[1] === 0x8b) buf = zlib.gunzipSync(buf);
    return buf;
  };
  if (mode === 'time') {
    const buf = readCorpus();
    const text = buf.toString('utf8');
    await tok.encode(text, null, { addSpecialTokens: false });
    const fresh = Tokenizer.fromFile(tokPath);
    const t0 = process.hrtime.bigint();
    const ids = (await fresh.encode(text, null, { addSpecialTokens: false })).getIds();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (arg) fs.writeFileSync(arg, JSON.stringify(Array.from(ids)));
    console.log(JSON.stringify({ bytes: buf.length, seconds, ids: ids.length }));
  } else if (mode === 'oracle') {
    for (const line of fs.readFileSync(input, 'utf8').split('\n')) {
      if (!line) continue;
      const text = JSON.parse(line).text;
      const enc = await tok.encode(text, null, { addSpecialTokens: false });
      process.stdout.write(JSON.stringify({ text, ids: Array.from(enc.getIds()) }) + '\n');
    }
  } else if (mode === 'bench') {
    const buf = readCorpus();
    const text = buf.toString('utf8');
    const mb = buf.length / 1e6;
    const re = new RegExp(arg || '^(CHAPTER|Chapter) ', 'm');
    const docs = [];
    let rest = text;
    // Same document cut as `whittle tokenize --doc-start`: a matching line starts a new document.
    for (;;) {
      const m = rest.slice(1).search(re);
      if (m < 0) { docs.push(rest); break; }
      docs.push(rest.slice(0, m + 1));
      rest = rest.slice(m + 1);
    }
    const time = async (f) => { await f(); const t0 = process.hrtime.bigint(); const r = await f(); return [Number(process.hrtime.bigint() - t0) / 1e9, r]; };
    const [t1, e1] = await time(() => tok.encode(text, null, { addSpecialTokens: false }));
    const [t2, e2] = await time(() => tok.encodeBatch(docs, { addSpecialTokens: false }));
    const n2 = e2.reduce((s, e) => s + e.getIds().length, 0);
    console.log(JSON.stringify({ bytes: buf.length, documents: docs.length,
      single: { seconds: t1, mb_per_s: mb / t1, tokens: e1.getIds().length },
      batch: { seconds: t2, mb_per_s: mb / t2, tokens: n2 } }));
  } else {
    console.error('usage: hf-tokenizers.js oracle|bench|time TOKENIZER.json INPUT [ARG]');
    process.exit(2);
  }
}
main().catch(e => { console.error(e); process.exit(1); });
