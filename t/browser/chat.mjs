// t/browser/chat.mjs - the chat page (html/) in a real browser: Debian's
// chromium, headless, driven by playwright-core (never a downloaded
// browser), against the nginx that t/browser.t started with
// conf/nginx.conf. Prints one JSON line per check ({"ok","name","diag"}),
// or {"skip": why} first when chromium cannot start at all; t/browser.t
// turns them into TAP. Screenshots go to $QWEN_SHOTS.
//
// Environment: QWEN_PORT, QWEN_NPM_DIR, QWEN_ERROR_LOG, QWEN_ACCESS_LOG,
// QWEN_SHOTS, QWEN_CHROMIUM (default /usr/bin/chromium).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const port = process.env.QWEN_PORT;
const base = `http://127.0.0.1:${port}`;
const shots = process.env.QWEN_SHOTS || 'build/browser';
const errorLog = process.env.QWEN_ERROR_LOG;
const accessLog = process.env.QWEN_ACCESS_LOG;
const chromiumPath = process.env.QWEN_CHROMIUM || '/usr/bin/chromium';
const require = createRequire(path.join(process.env.QWEN_NPM_DIR || 'build/npm', 'node_modules', '/'));

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const check = (ok, name, diag) => { out({ ok: !!ok, name, diag: ok ? undefined : diag }); return !!ok; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// never hang make test: the whole run has two minutes
setTimeout(() => { out({ ok: false, name: 'the browser run ends within 120 s' }); process.exit(2); },
           120000).unref();

const { chromium } = require('playwright-core');

fs.mkdirSync(shots, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'qwen-chromium-'));
let ctx;
try {
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1000, height: 720 },
    deviceScaleFactor: 1,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
} catch (e) {
  out({ skip: `chromium cannot start (${chromiumPath}): ${String(e.message).split('\n')[0]}` });
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(0);
}

// this run's screenshots only
for (const f of fs.readdirSync(shots)) if (/^\d\d-[\w-]+\.png$/.test(f)) fs.rmSync(path.join(shots, f));
const page = ctx.pages()[0] || await ctx.newPage();
const consoleErrors = [];
const pageErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => pageErrors.push(String(e)));
const chatRequests = [];
page.on('request', (r) => {
  if (r.url().includes('/chat/completions')) chatRequests.push(r);
});

const shot = (name) => page.screenshot({ path: path.join(shots, name) });
const lastTurn = () => page.locator('.turn').last();
const state = () => page.evaluate(() => {
  const b = [...document.querySelectorAll('.msg.assistant')].pop();
  return b ? b.dataset.state : null;
});
async function waitState(states, ms = 20000) {
  const t = Date.now();
  let s;
  while (Date.now() - t < ms) {
    s = await state();
    if (states.includes(s)) return s;
    await sleep(20);
  }
  return s;
}
async function send(text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}
async function settings({ thinking, temperature, maxTokens, json, schema, endpoint }) {
  if (thinking !== undefined) await page.setChecked('#thinking', thinking);
  if (temperature !== undefined) await page.fill('#temperature', String(temperature));
  if (maxTokens !== undefined) await page.fill('#max-tokens', String(maxTokens));
  if (json !== undefined) await page.setChecked('#json-mode', json);
  if (schema !== undefined) await page.fill('#schema', schema);
  if (endpoint !== undefined) {
    await page.evaluate((v) => { document.getElementById('endpoint').value = v; }, endpoint);
  }
}
const newChat = () => page.click('#clear');
const text = (sel) => lastTurn().locator(sel).innerText();

// An SSE body in the OpenAI chat stream's shape.
function sse(parts, usage, finish = 'stop') {
  const id = 'chatcmpl-test';
  const chunk = (delta, fr = null) => ({ id, object: 'chat.completion.chunk', created: 1, model: 'qwen3',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: fr }], usage: null });
  const ev = [chunk({ role: 'assistant', content: '' })];
  for (const p of parts) ev.push(chunk(p));
  ev.push(chunk({}, finish));
  if (usage) ev.push({ id, object: 'chat.completion.chunk', created: 1, model: 'qwen3', choices: [], usage });
  return ev.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n';
}
const fulfillSSE = (body) => (route) => route.fulfill({
  status: 200, headers: { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' }, body });

function errorLogText() { try { return fs.readFileSync(errorLog, 'utf8'); } catch { return ''; } }
function accessLogText() { try { return fs.readFileSync(accessLog, 'utf8'); } catch { return ''; } }
async function cancelledCount() {
  const t = await (await fetch(`${base}/metrics`)).text();
  const m = /^qwen_request_success_total\{finished_reason="cancelled"\} (\d+)/m.exec(t);
  return m ? Number(m[1]) : -1;
}
// A local server that answers every POST with a scripted SSE body, one
// event every `gap` ms (CORS allowed: the page is on nginx's origin).
function scriptedServer(body, gap) {
  const events = body.split(/(?<=\n\n)/);
  const bodies = [];
  const srv = http.createServer((req, res) => {
    const cors = { 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Headers': 'content-type',
                   'Access-Control-Allow-Methods': 'POST' };
    if (req.method === 'OPTIONS') { res.writeHead(204, cors); res.end(); return; }
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', async () => {
      try { bodies.push(JSON.parse(data)); } catch { bodies.push(null); }
      res.writeHead(200, { ...cors, 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      for (const e of events) {
        if (res.destroyed) return;
        res.write(e);
        await sleep(gap);
      }
      res.end();
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({
    port: srv.address().port, bodies, close: () => srv.close() })));
}
function closedPort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}
async function health() {
  const r = await fetch(`${base}/health`);
  return r.json();
}

try {
  // ---------------------------------------------------------------- load
  const resp = await page.goto(`${base}/chat/`, { waitUntil: 'load' });
  check(resp && resp.status() === 200, 'GET /chat/ serves the page', `status ${resp && resp.status()}`);
  check((resp.headers()['content-type'] || '').startsWith('text/html'), '... as text/html',
        resp.headers()['content-type']);
  await sleep(300);
  check(await page.title() === 'Qwen3 chat', '... titled "Qwen3 chat"', await page.title());
  check(consoleErrors.length === 0 && pageErrors.length === 0, 'the page loads with no console errors',
        JSON.stringify({ consoleErrors, pageErrors }));
  check(await page.isChecked('#thinking') && await page.isEnabled('#send') && !(await page.isEnabled('#stop')),
        'thinking on, Send enabled, Stop disabled at first');
  await shot('01-empty.png');

  // ---------------------------------------------------------- streaming
  await settings({ thinking: false, temperature: 1, maxTokens: 150 });
  let nReq = chatRequests.length;
  await send('Hello! Who are you?');
  const seen = [];
  let midShot = false;
  const t0 = Date.now();
  for (;;) {
    const o = await page.evaluate(() => {
      const b = [...document.querySelectorAll('.msg.assistant')].pop();
      return { s: b.dataset.state, n: b.querySelector('.answer').innerText.length };
    });
    if (!seen.length || seen[seen.length - 1] !== o.n) seen.push(o.n);
    if (!midShot && seen.length >= 4 && o.s === 'answering') { midShot = true; await shot('02-streaming.png'); }
    if (o.s === 'done' || o.s === 'error' || o.s === 'stopped' || Date.now() - t0 > 30000) break;
    await sleep(15);
  }
  const grew = seen.filter((n) => n > 0);
  check(grew.length >= 4 && grew.every((n, i) => i === 0 || n > grew[i - 1]),
        `the answer streams in visibly: its text grew across ${grew.length} observations`,
        `lengths seen: ${seen.join(' ')}`);
  check(await state() === 'done', '... and ends done', await text('.error').catch(() => ''));
  const req1 = chatRequests[nReq];
  const b1 = req1 ? req1.postDataJSON() : {};
  check(b1.stream === true && b1.stream_options && b1.stream_options.include_usage === true,
        'the request asks for a stream with include_usage', JSON.stringify(b1));
  check(b1.chat_template_kwargs && b1.chat_template_kwargs.enable_thinking === false
        && b1.temperature === 1 && b1.max_tokens === 150 && !('response_format' in b1),
        '... with the switches: enable_thinking false, temperature 1, max_tokens 150, no response_format',
        JSON.stringify(b1));
  const resp1 = req1 ? await req1.response() : null;
  check(resp1 && (resp1.headers()['content-type'] || '').startsWith('text/event-stream'),
        '... and the server answers text/event-stream');
  const stats1 = await text('.stats');
  const m1 = /^(\d+) tokens · first token (\d+) ms · ([\d.]+) tokens\/s · prompt (\d+)/.exec(stats1);
  check(m1, 'the answer shows tokens, time to first token and tokens/s from the usage', stats1);
  await sleep(100);
  const acc = (accessLogText().match(/POST \/v1\/chat\/completions .*/g) || []).pop() || '';
  const accTok = /completion=(\d+)/.exec(acc);
  const accPrompt = /prompt=(\d+)/.exec(acc);
  check(m1 && accTok && m1[1] === accTok[1] && accPrompt && m1[4] === accPrompt[1],
        `... the same counts as the server's access log (${m1 && m1[1]} tokens, prompt ${m1 && m1[4]})`,
        `page: ${stats1} / access log: ${acc}`);
  await shot('03-answer.png');

  // ------------------------------------------------------- multi-turn
  const first = (await page.evaluate(() => window.qwenChat.history()));
  await settings({ maxTokens: 8 });
  nReq = chatRequests.length;
  await send('Tell me more.');
  await waitState(['done', 'error', 'stopped']);
  const b2 = chatRequests[nReq] ? chatRequests[nReq].postDataJSON() : {};
  const msgs = b2.messages || [];
  check(msgs.length === 3 && msgs[0].role === 'user' && msgs[0].content === 'Hello! Who are you?'
        && msgs[1].role === 'assistant' && first.length === 2 && msgs[1].content === first[1].content
        && msgs[1].content.length > 0 && msgs[2].role === 'user' && msgs[2].content === 'Tell me more.',
        'the second message is sent with the first exchange (multi-turn, page memory)',
        JSON.stringify(msgs).slice(0, 400));
  check(await state() === 'done', '... and answered');

  // ---------------------------------------------------------------- stop
  await newChat();
  check(await page.locator('.turn').count() === 0
        && (await page.evaluate(() => window.qwenChat.history())).length === 0,
        'New chat forgets the conversation');
  await settings({ temperature: 1, maxTokens: 3000 });
  const logBefore = errorLogText().length;
  const accBefore = accessLogText().length;
  const cancelledBefore = await cancelledCount();
  await send('Write a very long story.');
  let n = 0;
  for (let i = 0; i < 1000 && n < 40; i++) {
    n = await page.evaluate(() => document.querySelector('.turn:last-child .answer').innerText.length);
    if (['done', 'error'].includes(await state())) break;
    await sleep(10);
  }
  const before = await state();
  await page.click('#stop');
  const st = await waitState(['stopped', 'done', 'error'], 5000);
  check(before === 'answering' && st === 'stopped', 'Stop during an answer: the turn shows stopped',
        `before ${before}, after ${st}`);
  check(await page.isEnabled('#send') && !(await page.isEnabled('#stop')), '... Send enabled again, Stop disabled');
  const lenAtStop = await page.evaluate(() => document.querySelector('.turn:last-child .answer').innerText.length);
  // what the server records of it: nginx saw the connection close, the
  // request's finish reason is "cancelled" (access log, $qwen_finish_reason;
  // and an error log "qwen: done: ... cancelled" line where the module
  // writes one), the cancelled counter moved and the slot is free
  let closedLine = '', accLine = '', doneLine = '';
  for (let i = 0; i < 100 && !(closedLine && accLine); i++) {
    const e = errorLogText().slice(logBefore);
    // whichever nginx meets first: the read of the closed socket, or a
    // write into it (a token's chunk already on its way)
    closedLine = (/[^\n]*(client prematurely closed connection|failed \((32: Broken pipe|104: Connection reset by peer)\))[^\n]*POST \/v1\/chat\/completions[^\n]*/.exec(e) || [''])[0];
    doneLine = (/qwen: done: [^\n]*cancelled/.exec(e) || [''])[0];
    accLine = (/[^\n]*POST \/v1\/chat\/completions [^\n]*finish=cancelled[^\n]*/.exec(accessLogText().slice(accBefore)) || [''])[0];
    if (!(closedLine && accLine)) await sleep(50);
  }
  check(closedLine, '... the browser closed the connection: nginx logs "client prematurely closed connection" or a write\'s broken pipe',
        errorLogText().slice(logBefore));
  check(accLine, `... and the request finished "cancelled" (access log: ${accLine.replace(/^.*?" 200/, '200')})`,
        accessLogText().slice(accBefore));
  if (doneLine) check(true, `... the error log says so too ("${doneLine}")`);
  check(await cancelledCount() === cancelledBefore + 1,
        '... qwen_request_success_total{finished_reason="cancelled"} counts it');
  let h = {};
  for (let i = 0; i < 40; i++) {
    h = await health();
    if (h.running === 0) break;
    await sleep(50);
  }
  check(h.running === 0, '... and its slot is free (/health running 0)', JSON.stringify(h));
  await sleep(300);
  const lenLater = await page.evaluate(() => document.querySelector('.turn:last-child .answer').innerText.length);
  check(lenAtStop > 0 && lenLater === lenAtStop && /stopped after/.test(await text('.stats')),
        '... the answer stops growing and says "stopped after"', `${lenAtStop} -> ${lenLater}`);
  await shot('04-stopped.png');

  // Escape stops too; New chat during an answer keeps nothing of it
  await newChat();
  await send('Another long story.');
  await waitState(['answering', 'done', 'error'], 10000);
  await page.keyboard.press('Escape');
  check(await waitState(['stopped', 'done', 'error'], 5000) === 'stopped', 'Escape stops an answer too');
  await send('And one more.');
  await waitState(['answering', 'done', 'error'], 10000);
  await newChat();
  await sleep(300);
  check(await page.locator('.turn').count() === 0
        && (await page.evaluate(() => window.qwenChat.history())).length === 0,
        'New chat during an answer: the page keeps nothing of the old conversation');

  // ------------------------------- thinking and Markdown (scripted SSE)
  // A scripted stream from a small local server, one delta every 12 ms, so
  // the thinking is seen open while it streams and folded after.
  await newChat();
  const thinkingText = 'The user asks how to open this page. I should mention make run and the /chat/ location.';
  const answerMd = [
    '### Opening the chat page', '',
    'Run **`make run`**, then open the page. It is *plain* static files:', '',
    '- `html/index.html`, `chat.js` and `chat.css`',
    '- no build step, nothing from the internet', '',
    '```nginx', 'location /chat/ {', '    alias /srv/qwen/html/;', '}', '```', '',
    '1. Type a question', '2. Watch the answer stream in',
  ].join('\n');
  const pieces = (str, k) => str.match(new RegExp(`[\\s\\S]{1,${k}}`, 'g'));
  const scripted = await scriptedServer(sse(
    [...pieces(thinkingText, 5).map((t) => ({ reasoning_content: t })),
     ...pieces(answerMd, 4).map((t) => ({ content: t }))],
    { prompt_tokens: 31, completion_tokens: 96, total_tokens: 127,
      prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 23 } }), 12);
  await settings({ thinking: true, temperature: 0.6, maxTokens: 2048,
                   endpoint: `http://127.0.0.1:${scripted.port}/v1/chat/completions` });
  nReq = chatRequests.length;
  await send('How do I open this chat page?');
  let openWhileThinking = null;
  for (let i = 0; i < 500; i++) {
    const o = await page.evaluate(() => {
      const b = [...document.querySelectorAll('.msg.assistant')].pop();
      return { s: b.dataset.state, open: b.querySelector('details.thinking').open,
               t: b.querySelector('.think-text').textContent.length };
    });
    if (o.s === 'thinking' && o.t > 10) { openWhileThinking = o.open; break; }
    if (['answering', 'done', 'error', 'stopped'].includes(o.s)) break;
    await sleep(5);
  }
  await waitState(['done', 'error', 'stopped']);
  await settings({ endpoint: '/v1/chat/completions' });
  scripted.close();
  const b3 = scripted.bodies[0] || {};
  check(b3.chat_template_kwargs && b3.chat_template_kwargs.enable_thinking === true,
        'the thinking switch on sends enable_thinking true', JSON.stringify(b3));
  const think = lastTurn().locator('details.thinking');
  check(openWhileThinking === true, 'the thinking is shown open while it streams', String(openWhileThinking));
  check(await think.isVisible() && (await think.locator('.think-text').textContent()) === thinkingText,
        '... all the reasoning_content deltas');
  check(!(await think.evaluate((d) => d.open)) && /^Thought for [\d.]+ (ms|s)$/.test(await think.locator('summary').innerText()),
        '... folded once the answer starts ("Thought for ...")', await think.locator('summary').innerText());
  const ans = await lastTurn().locator('.answer').innerText();
  check(!ans.includes('The user asks'), '... apart from the answer');
  const md = await lastTurn().locator('.answer').evaluate((a) => ({
    h: a.querySelectorAll('h5').length, strong: a.querySelector('strong code') ? 1 : 0,
    em: a.querySelectorAll('em').length, ul: a.querySelectorAll('ul > li').length,
    ol: a.querySelectorAll('ol > li').length,
    pre: (a.querySelector('pre code') || {}).textContent || '',
    lang: (a.querySelector('.code-lang') || {}).textContent || '',
    inline: [...a.querySelectorAll('li code')].map((c) => c.textContent).join(','),
  }));
  check(md.h === 1 && md.strong === 1 && md.em === 1 && md.ul === 2 && md.ol === 2
        && md.pre === 'location /chat/ {\n    alias /srv/qwen/html/;\n}' && md.lang === 'nginx'
        && md.inline === 'html/index.html,chat.js,chat.css',
        'Markdown: heading, bold, italic, inline code, lists and a fenced code block', JSON.stringify(md));
  check(/^96 tokens \(23 thinking\) · first token \d+ ms · [\d.]+ tokens\/s · prompt 31$/.test(await text('.stats')),
        'the stats come from the stream\'s usage chunk', await text('.stats'));
  await think.locator('summary').click();
  await sleep(100);
  await shot('05-markdown.png');
  await think.locator('summary').click();

  // ------------------------------------------------- no HTML injection
  await newChat();
  await page.route('**/v1/chat/completions', fulfillSSE(sse([
    { reasoning_content: 'Thinking <img src=y onerror="window.__pwned=4"> about it' },
    { content: 'Here: <img src=x on' }, { content: 'error="window.__pwned=1"> and ' },
    { content: '**<b>bold?</b>** <script>window.__pwned=2</script>\n\n' },
    { content: '```html\n<svg onload="window.__pwned=3"></svg>\n```\n' },
    { content: '- <a href="javascript:window.__pwned=5">click</a> `<i>code</i>`\n' },
  ], { prompt_tokens: 5, completion_tokens: 40, total_tokens: 45 })));
  await send('Show me some HTML');
  await waitState(['done', 'error', 'stopped']);
  await sleep(200);
  const inj = await page.evaluate(() => ({
    pwned: window.__pwned,
    els: document.querySelectorAll('#log img, #log script, #log svg, #log b, #log a, #log i').length,
    answer: document.querySelector('.turn:last-child .answer').textContent,
    think: document.querySelector('.turn:last-child .think-text').textContent,
  }));
  check(inj.els === 0 && inj.pwned === undefined,
        'model output with <img onerror>, <script>, <svg onload>, <a href=javascript:> makes no element and runs nothing',
        JSON.stringify(inj));
  check(inj.answer.includes('Here: <img src=x onerror="window.__pwned=1"> and ')
        && inj.answer.includes('<b>bold?</b>') && inj.answer.includes('<svg onload="window.__pwned=3"></svg>')
        && inj.answer.includes('<i>code</i>'),
        '... it is shown as text, across delta boundaries too', inj.answer);
  check(inj.think.includes('<img src=y onerror="window.__pwned=4">'), '... in the thinking too', inj.think);
  await shot('06-injection.png');
  await page.unroute('**/v1/chat/completions');

  // --------------------------------------------------------- JSON mode
  await newChat();
  await settings({ thinking: false, temperature: 0, maxTokens: 40, json: true, schema: '' });
  check(await page.isVisible('#schema'), 'the JSON switch shows the schema box');
  nReq = chatRequests.length;
  await send('Give me JSON.');
  await waitState(['done', 'error', 'stopped']);
  let b4 = chatRequests[nReq] ? chatRequests[nReq].postDataJSON() : {};
  check(b4.response_format && b4.response_format.type === 'json_object' && await state() === 'done',
        'JSON mode with an empty schema box: response_format json_object, answered',
        JSON.stringify(b4.response_format) + ' ' + await state());
  check(await lastTurn().locator('.answer.json pre code').count() === 1, '... shown as a code block');
  const schema = { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Rome'] } },
                   required: ['city'] };
  await settings({ schema: JSON.stringify(schema, null, 1) });
  nReq = chatRequests.length;
  await send('Which city?');
  await waitState(['done', 'error', 'stopped']);
  b4 = chatRequests[nReq] ? chatRequests[nReq].postDataJSON() : {};
  const rf = b4.response_format || {};
  check(rf.type === 'json_schema' && rf.json_schema
        && JSON.stringify(rf.json_schema.schema) === JSON.stringify(schema) && await state() === 'done',
        'a schema in the box: response_format json_schema with it, answered', JSON.stringify(rf));

  // ------------------------------------------------------------ errors
  // a real error body from the server: a schema keyword it refuses
  await settings({ schema: '{"type": "object", "properties": {"a": {"$ref": "#/x"}}}' });
  await send('Bad schema, please.');
  await waitState(['done', 'error', 'stopped']);
  let err = await text('.error').catch(() => '');
  check(await state() === 'error' && /HTTP 400, invalid_request_error/.test(err) && /\$ref/.test(err),
        'a 400 from the server shows its JSON error message', err);
  check(await lastTurn().evaluate((t) => t.classList.contains('dropped'))
        && !(await page.evaluate(() => window.qwenChat.history())).some((m) => m.content === 'Bad schema, please.'),
        '... and the failed turn is not sent again');
  await shot('07-error.png');
  nReq = chatRequests.length;
  await settings({ schema: '{"type": "object",' });
  await send('Broken schema box.');
  await waitState(['error'], 3000);
  err = await text('.error').catch(() => '');
  check(/does not hold valid JSON/.test(err) && chatRequests.length === nReq,
        'a schema box that is not JSON is reported before anything is sent', err);
  await settings({ schema: '' });
  await settings({ json: false });

  // 429 with its retry hint (scripted), then Retry against the real server
  await newChat();
  await page.route('**/v1/chat/completions', (route) => route.fulfill({
    status: 429, headers: { 'Content-Type': 'application/json', 'Retry-After': '3' },
    body: JSON.stringify({ error: { message: 'all 4 slots are busy and 16 requests wait: retry after 3 s',
      type: 'overloaded_error', param: null, code: null, retry_after: 3 } }) }));
  await settings({ maxTokens: 10 });
  await send('Are you busy?');
  await waitState(['done', 'error', 'stopped']);
  err = await text('.error').catch(() => '');
  check(/busy \(HTTP 429, overloaded_error\): all 4 slots are busy and 16 requests wait: retry after 3 s\. Try again in 3 s\./.test(err)
        && await lastTurn().locator('.error button.retry').count() === 1,
        'a 429 shows the message, the retry hint and a Retry button', err);
  await shot('08-busy.png');
  await page.unroute('**/v1/chat/completions');
  await lastTurn().locator('.error button.retry').click();
  await sleep(50);
  check(await waitState(['done', 'error', 'stopped']) === 'done' && await page.locator('.turn').count() === 2,
        '... Retry sends it again (now answered)');

  // an error event inside the stream (scripted)
  await page.route('**/v1/chat/completions', (route) => route.fulfill({
    status: 200, headers: { 'Content-Type': 'text/event-stream' },
    body: `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'Partial' }, finish_reason: null }] })}\n\n`
        + `data: ${JSON.stringify({ error: { message: 'request timed out after 300 ms', type: 'server_error' } })}\n\n` }));
  await send('Time out, please.');
  await waitState(['done', 'error', 'stopped']);
  err = await text('.error').catch(() => '');
  check(/ended the answer with an error: request timed out after 300 ms/.test(err),
        'an error event in the stream is shown', err);
  await page.unroute('**/v1/chat/completions');

  // nothing listening: the real connection is refused
  const closed = await closedPort();
  await settings({ endpoint: `http://127.0.0.1:${closed}/v1/chat/completions` });
  await send('Is anyone there?');
  await waitState(['done', 'error', 'stopped']);
  err = await text('.error').catch(() => '');
  check(new RegExp(`Cannot reach the server at http://127\\.0\\.0\\.1:${closed}/v1/chat/completions`).test(err)
        && await lastTurn().locator('.error button.retry').count() === 1,
        'an unreachable server is reported, with Retry', err);
  await shot('09-unreachable.png');
  await settings({ endpoint: '/v1/chat/completions' });

  // ---------------------------------------------------------- the end
  check(pageErrors.length === 0, 'no uncaught script error in the whole run', pageErrors.join('\n'));
  const cookies = await ctx.cookies();
  const storage = await page.evaluate(() => localStorage.length + sessionStorage.length);
  check(cookies.length === 0 && storage === 0, 'no cookies and no storage used',
        JSON.stringify({ cookies, storage }));
  out({ done: true });
} catch (e) {
  check(false, 'the browser script runs to the end', String(e && e.stack || e));
  await shot('99-failure.png').catch(() => {});
} finally {
  await ctx.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}
