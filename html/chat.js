// html/chat.js - the chat page: sends the conversation to the OpenAI chat
// endpoint with "stream": true, reads the SSE stream with fetch and a
// ReadableStream, and paints the thinking (reasoning_content deltas) and
// the answer as they arrive. Model output only ever enters the page as text
// nodes: the small Markdown renderer below builds elements itself and never
// parses HTML. Nothing is stored: no cookies, no local storage.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    log: $('log'), empty: $('empty'), input: $('input'), composer: $('composer'),
    send: $('send'), stop: $('stop'), clear: $('clear'),
    thinking: $('thinking'), temperature: $('temperature'), maxTokens: $('max-tokens'),
    jsonMode: $('json-mode'), schemaRow: $('schema-row'), schema: $('schema'),
    system: $('system'), endpoint: $('endpoint'),
  };

  // The conversation sent with every request: only exchanges that got an
  // answer (a failed turn stays on screen but is not sent again).
  const history = [];
  let running = null;          // { controller, turn } while a request runs
  let conversation = 0;        // bumped by New chat: late answers of the old one are not kept

  // ------------------------------------------------------------ elements

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function nearBottom() {
    const l = ui.log;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 120;
  }

  function scrollDown() { ui.log.scrollTop = ui.log.scrollHeight; }

  // ------------------------------------------------------------ Markdown
  // A deliberately small subset: fenced code blocks, inline code, bold,
  // italic, headings, bullet and numbered lists, quotes, rules, paragraphs
  // (single newlines kept as line breaks). Links and HTML stay plain text.

  const INLINE = '(`+)([^`]|[^`][\\s\\S]*?[^`])\\1(?!`)' +               // 1,2 code
    '|\\*\\*(?=\\S)([\\s\\S]*?\\S)\\*\\*' +                               // 3 bold
    '|(?<![\\w])__(?=\\S)([\\s\\S]*?\\S)__(?![\\w])' +                    // 4 bold
    '|\\*(?=[^\\s*])([\\s\\S]*?[^\\s*])\\*(?!\\*)' +                      // 5 italic
    '|(?<![\\w])_(?=[^\\s_])([\\s\\S]*?[^\\s_])_(?![\\w])';               // 6 italic

  function appendInline(parent, text, depth = 0) {
    if (depth > 4) { parent.appendChild(document.createTextNode(text)); return; }
    const re = new RegExp(INLINE, 'g');
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[1] !== undefined) {
        let code = m[2];
        if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
        parent.appendChild(el('code', null, code));
      } else if (m[3] !== undefined || m[4] !== undefined) {
        const s = el('strong');
        appendInline(s, m[3] !== undefined ? m[3] : m[4], depth + 1);
        parent.appendChild(s);
      } else {
        const i = el('em');
        appendInline(i, m[5] !== undefined ? m[5] : m[6], depth + 1);
        parent.appendChild(i);
      }
      last = re.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function codeBlock(text, lang, open) {
    const wrap = el('div', 'code');
    if (lang || open) {
      wrap.appendChild(el('div', 'code-lang', (lang || '') + (open ? ' …' : '')));
    }
    const pre = el('pre');
    pre.appendChild(el('code', null, text));
    wrap.appendChild(pre);
    return wrap;
  }

  function renderMarkdown(src) {
    const frag = document.createDocumentFragment();
    const lines = src.split('\n');
    let para = null;           // the open paragraph
    let list = null;           // { el, ordered, item }
    let quote = null;          // the open blockquote
    const close = () => { para = null; list = null; quote = null; };

    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];

      const fence = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/.exec(line);
      if (fence) {
        close();
        const end = new RegExp('^ {0,3}' + (fence[1][0] === '`' ? '`' : '~') +
                               '{' + fence[1].length + ',}\\s*$');
        const body = [];
        let j = i + 1;
        while (j < lines.length && !end.test(lines[j])) body.push(lines[j++]);
        frag.appendChild(codeBlock(body.join('\n'), fence[2], j >= lines.length));
        i = j;
        continue;
      }
      if (/^\s*$/.test(line)) { close(); continue; }

      const h = /^ {0,3}(#{1,6})\s+(.*?)(\s+#+)?\s*$/.exec(line);
      if (h) {
        close();
        const e = el('h' + Math.min(6, h[1].length + 2));
        appendInline(e, h[2]);
        frag.appendChild(e);
        continue;
      }
      if (/^ {0,3}([-*_])( *\1){2,} *$/.test(line)) {
        close();
        frag.appendChild(el('hr'));
        continue;
      }
      const li = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/.exec(line);
      if (li) {
        para = null; quote = null;
        const ordered = /\d/.test(li[2]);
        if (!list || list.ordered !== ordered) {
          const e = el(ordered ? 'ol' : 'ul');
          if (ordered && parseInt(li[2], 10) !== 1) e.start = parseInt(li[2], 10);
          frag.appendChild(e);
          list = { el: e, ordered, item: null };
        }
        const item = el('li');
        const depth = Math.min(3, Math.floor(li[1].replace(/\t/g, '    ').length / 2));
        if (depth > 0) item.className = 'depth-' + depth;
        appendInline(item, li[3]);
        list.el.appendChild(item);
        list.item = item;
        continue;
      }
      if (list && /^\s+\S/.test(line)) {          // a list item's next line
        list.item.appendChild(el('br'));
        appendInline(list.item, line.trim());
        continue;
      }
      const q = /^ {0,3}>\s?(.*)$/.exec(line);
      if (q) {
        para = null; list = null;
        if (!quote) { quote = el('blockquote'); frag.appendChild(quote); }
        else quote.appendChild(el('br'));
        appendInline(quote, q[1]);
        continue;
      }
      list = null; quote = null;
      if (!para) { para = el('p'); frag.appendChild(para); }
      else para.appendChild(el('br'));
      appendInline(para, line);
    }
    return frag;
  }

  // ------------------------------------------------------------ turns

  function addTurn(text, json) {
    ui.empty.hidden = true;
    const turn = { json, thinking: '', answer: '', pending: false, thinkingOpenedByUs: false,
                   thinkingClosed: false, st: null };
    const art = el('article', 'turn');
    const user = el('div', 'msg user');
    user.appendChild(el('div', 'who', 'You'));
    user.appendChild(el('div', 'text', text));
    const bot = el('div', 'msg assistant');
    bot.dataset.state = 'waiting';
    bot.appendChild(el('div', 'who', 'Qwen3'));
    const think = el('details', 'thinking');
    think.hidden = true;
    const sum = el('summary', null, 'Thinking…');
    think.appendChild(sum);
    const thinkText = el('div', 'think-text');
    think.appendChild(thinkText);
    bot.appendChild(think);
    const answer = el('div', 'answer' + (json ? ' json' : ''));
    bot.appendChild(answer);
    const wait = el('div', 'typing', '…');
    bot.appendChild(wait);
    const stats = el('div', 'stats');
    bot.appendChild(stats);
    const error = el('div', 'error');
    error.hidden = true;
    error.setAttribute('role', 'alert');
    bot.appendChild(error);
    art.append(user, bot);
    ui.log.appendChild(art);
    scrollDown();
    Object.assign(turn, { art, bot, think, sum, thinkText, answerEl: answer, wait, stats, error, text });
    return turn;
  }

  function setState(turn, state) { turn.bot.dataset.state = state; }

  function paint(turn) {
    turn.pending = false;
    const follow = nearBottom();
    if (turn.thinking) {
      turn.think.hidden = false;
      turn.thinkText.textContent = turn.thinking;
      if (!turn.answer && !turn.thinkingOpenedByUs) {
        turn.think.open = true;         // open while it thinks ...
        turn.thinkingOpenedByUs = true;
      }
    }
    if (turn.answer) {
      if (turn.thinking && !turn.thinkingClosed) {
        turn.think.open = false;        // ... folded once the answer starts
        turn.thinkingClosed = true;
        const st = turn.st;
        if (st && st.tFirst !== null && st.tAnswer !== null) {
          turn.sum.textContent = `Thought for ${fmtMs(st.tAnswer - st.tFirst)}`;
        } else {
          turn.sum.textContent = 'Thinking';
        }
      }
      if (turn.json) {
        turn.answerEl.replaceChildren(codeBlock(turn.pretty || turn.answer, 'json', false));
      } else {
        turn.answerEl.replaceChildren(renderMarkdown(turn.answer));
      }
    }
    turn.wait.hidden = turn.bot.dataset.state !== 'waiting';
    if (follow) scrollDown();
  }

  function schedule(turn) {
    if (turn.pending) return;
    turn.pending = true;
    requestAnimationFrame(() => { if (turn.pending) paint(turn); });
  }

  function showError(turn, message, retry) {
    turn.error.replaceChildren(el('span', null, message));
    if (retry) {
      const b = el('button', 'retry', 'Retry');
      b.type = 'button';
      b.addEventListener('click', () => { if (!running) submit(turn.text); });
      turn.error.appendChild(b);
    }
    turn.error.hidden = false;
    setState(turn, 'error');
  }

  // ------------------------------------------------------------ requests

  function readSettings() {
    const temperature = Number(ui.temperature.value);
    if (ui.temperature.value === '' || !(temperature >= 0 && temperature <= 2)) {
      throw new Error('Temperature must be a number from 0 to 2.');
    }
    const maxTokens = Number(ui.maxTokens.value);
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      throw new Error('Max tokens must be a whole number, 1 or more.');
    }
    const body = {
      stream: true,
      stream_options: { include_usage: true },
      temperature,
      max_tokens: maxTokens,
      chat_template_kwargs: { enable_thinking: ui.thinking.checked },
    };
    if (ui.jsonMode.checked) {
      const text = ui.schema.value.trim();
      if (!text) {
        body.response_format = { type: 'json_object' };
      } else {
        let schema;
        try { schema = JSON.parse(text); } catch (e) {
          throw new Error('The JSON schema box does not hold valid JSON: ' + e.message);
        }
        body.response_format = { type: 'json_schema', json_schema: { name: 'answer', schema } };
      }
    }
    return body;
  }

  function errorMessage(status, statusText, headers, bodyText) {
    let msg = '';
    let type = '';
    let retryAfter = headers.get('Retry-After');
    try {
      const j = JSON.parse(bodyText);
      if (j && typeof j.error === 'string') msg = j.error;
      else if (j && j.error && typeof j.error === 'object') {
        msg = String(j.error.message || '');
        type = j.error.type ? String(j.error.type) : '';
        if (retryAfter === null && j.error.retry_after !== undefined) retryAfter = String(j.error.retry_after);
      }
    } catch (e) { /* not JSON: show the start of the body */ }
    if (!msg) msg = bodyText.replace(/\s+/g, ' ').trim().slice(0, 200) || statusText || 'no message';
    const what = `HTTP ${status}${type ? ', ' + type : ''}`;
    if (status === 429 || status === 503) {
      const head = status === 429 ? 'The server is busy' : 'The server cannot answer now';
      const hint = retryAfter ? ` Try again in ${retryAfter} s.` : ' Try again in a moment.';
      return `${head} (${what}): ${msg.replace(/\.?$/, '.')}${hint}`;
    }
    return `The server answered with an error (${what}): ${msg}`;
  }

  function fmtMs(ms) { return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`; }

  function showStats(turn, st, ended) {
    const parts = [];
    const u = st.usage;
    if (u) {
      const r = u.completion_tokens_details && u.completion_tokens_details.reasoning_tokens;
      parts.push(`${u.completion_tokens} token${u.completion_tokens === 1 ? '' : 's'}` +
                 (r ? ` (${r} thinking)` : ''));
    } else if (st.chunks) {
      parts.push(`${st.chunks} chunk${st.chunks === 1 ? '' : 's'} received`);
    }
    if (st.tFirst !== null) parts.push(`first token ${fmtMs(st.tFirst - st.t0)}`);
    // tokens after the first over the time after it (as $qwen_tokens_per_second);
    // not shown when the stream came in one piece (a buffering proxy)
    if (u && u.completion_tokens > 1 && st.tFirst !== null && ended - st.tFirst >= 20) {
      const tps = (u.completion_tokens - 1) / ((ended - st.tFirst) / 1000);
      parts.push(`${tps.toFixed(1)} tokens/s`);
    }
    if (u) {
      const cached = u.prompt_tokens_details && u.prompt_tokens_details.cached_tokens;
      parts.push(`prompt ${u.prompt_tokens}${cached ? ` (${cached} cached)` : ''}`);
    }
    if (st.finish === 'length') parts.push('cut at max tokens');
    else if (st.finish && st.finish !== 'stop') parts.push(st.finish);
    if (st.stopped) parts.push(`stopped after ${fmtMs(ended - st.t0)}`);
    turn.stats.textContent = parts.join(' · ');
  }

  function handleEvent(turn, st, data) {
    if (data === '[DONE]') { st.done = true; return; }
    let obj;
    try { obj = JSON.parse(data); } catch (e) {
      throw new Error('The stream held something that is not JSON: ' + data.slice(0, 120));
    }
    if (obj.error) {
      const m = typeof obj.error === 'string' ? obj.error : obj.error.message;
      st.streamError = `The server ended the answer with an error: ${m || 'no message'}`;
      return;
    }
    const ch = obj.choices && obj.choices[0];
    if (ch) {
      const d = ch.delta || {};
      const r = d.reasoning_content !== undefined && d.reasoning_content !== null
        ? d.reasoning_content : d.reasoning;
      const now = performance.now();
      if (typeof r === 'string' && r) {
        if (st.tFirst === null) st.tFirst = now;
        turn.thinking += r;
        st.chunks++;
        setState(turn, 'thinking');
      }
      if (typeof d.content === 'string' && d.content) {
        if (st.tFirst === null) st.tFirst = now;
        if (st.tAnswer === null) st.tAnswer = now;
        turn.answer += d.content;
        st.chunks++;
        setState(turn, 'answering');
      }
      if (ch.finish_reason) st.finish = ch.finish_reason;
      schedule(turn);
    }
    if (obj.usage) { st.usage = obj.usage; st.tEnd = performance.now(); }
  }

  async function readStream(turn, st, res) {
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let m;
      while ((m = /\r?\n\r?\n/.exec(buf)) !== null) {
        const block = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).replace(/^ /, '')).join('\n');
        if (data) handleEvent(turn, st, data);
      }
    }
  }

  async function submit(text) {
    const json = ui.jsonMode.checked;
    const conv = conversation;
    const turn = addTurn(text, json);
    const user = { role: 'user', content: text };
    const st = { t0: performance.now(), tFirst: null, tAnswer: null, tEnd: null, chunks: 0,
                 finish: null, usage: null, done: false, stopped: false, streamError: null };
    turn.st = st;
    let body;
    try {
      body = readSettings();
    } catch (e) {
      showError(turn, e.message, true);
      turn.wait.hidden = true;
      return;
    }
    const messages = [];
    const system = ui.system.value.trim();
    if (system) messages.push({ role: 'system', content: system });
    body.messages = messages.concat(history, [user]);

    const controller = new AbortController();
    running = { controller, turn, st };
    setRunning(true);
    const url = ui.endpoint.value.trim() || '/v1/chat/completions';
    let failure = null;
    let retry = false;
    try {
      let res;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
          body: JSON.stringify(body),
          signal: controller.signal,
          credentials: 'omit',
          cache: 'no-store',
        });
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        retry = true;
        throw new Error(`Cannot reach the server at ${new URL(url, location.href).href} ` +
                        `(${e.message}). Is nginx running?`);
      }
      if (!res.ok) {
        const t = await res.text().catch(() => '');
        retry = res.status === 429 || res.status === 503 || res.status >= 500;
        throw new Error(errorMessage(res.status, res.statusText, res.headers, t));
      }
      try {
        await readStream(turn, st, res);
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        retry = true;
        if (e instanceof TypeError) throw new Error(`The connection was lost during the answer (${e.message}).`);
        throw e;
      }
      if (st.streamError) failure = st.streamError;
      else if (!st.done && !st.finish) { failure = 'The stream ended before the answer was complete.'; retry = true; }
    } catch (e) {
      if (e.name === 'AbortError') st.stopped = true;
      else failure = e.message;
    }
    const ended = st.tEnd || performance.now();
    running = null;
    setRunning(false);

    let note = '';
    if (json && turn.answer) {
      try {
        turn.pretty = JSON.stringify(JSON.parse(turn.answer), null, 2);
      } catch (e) {
        note = 'not complete JSON';
      }
    }
    paint(turn);
    turn.wait.hidden = true;
    if (turn.thinking && !turn.answer) turn.sum.textContent = 'Thinking (no answer)';
    showStats(turn, st, ended);
    if (note) turn.stats.textContent += ' · ' + note;
    if (failure) {
      showError(turn, failure, retry);
    } else {
      setState(turn, st.stopped ? 'stopped' : 'done');
    }
    // Keep the exchange for the next request when there is an answer to
    // keep (a stopped answer is kept as far as it got).
    if (conv !== conversation) return;
    if (turn.answer) {
      history.push(user, { role: 'assistant', content: turn.answer });
    } else {
      turn.art.classList.add('dropped');
      turn.art.title = 'Not part of the conversation sent with the next message';
    }
  }

  function setRunning(on) {
    ui.send.disabled = on;
    ui.stop.disabled = !on;
    document.body.classList.toggle('running', on);
  }

  // ------------------------------------------------------------ wiring

  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = ui.input.value.trim();
    if (!text || running) return;
    ui.input.value = '';
    submit(text);
  });
  ui.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      ui.composer.requestSubmit();
    }
  });
  ui.stop.addEventListener('click', () => {
    if (running) running.controller.abort();
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && running) running.controller.abort();
  });
  ui.clear.addEventListener('click', () => {
    if (running) running.controller.abort();
    conversation++;
    history.length = 0;
    for (const t of ui.log.querySelectorAll('.turn')) t.remove();
    ui.empty.hidden = false;
    ui.input.focus();
  });
  ui.jsonMode.addEventListener('change', () => { ui.schemaRow.hidden = !ui.jsonMode.checked; });
  ui.schemaRow.hidden = !ui.jsonMode.checked;

  // for the browser tests and the curious: the conversation as sent
  window.qwenChat = { history: () => history.map((m) => ({ ...m })), renderMarkdown };
})();
