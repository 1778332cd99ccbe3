// t/clients/openai_client.mjs - the official `openai` npm client, unchanged,
// against the module's OpenAI API (QWEN_PORT): model list, chat (one body
// and streamed with usage), completions (one body and streamed), a tool
// definition passed through, and a 404 for an unknown model.
import { load, report } from './load.mjs';

const { default: OpenAI } = await load('openai');
const client = new OpenAI({ baseURL: `http://127.0.0.1:${process.env.QWEN_PORT}/v1`,
                            apiKey: 'x', maxRetries: 0, timeout: 60000 });
const r = {};
const messages = [{ role: 'user', content: 'Hello, who are you?' }];

const models = await client.models.list();
r.models = models.data.map((m) => m.id);

const chat = await client.chat.completions.create({
    model: 'qwen3', messages, max_tokens: 5, temperature: 0 });
r.chat = { object: chat.object, role: chat.choices[0].message.role,
           content: chat.choices[0].message.content,
           finish_reason: chat.choices[0].finish_reason, usage: chat.usage };

const stream = await client.chat.completions.create({
    model: 'qwen3', messages, max_tokens: 6, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
r.chat_stream = { chunks: 0, content: '', ids: new Set(), finish_reason: null, usage: null };
for await (const chunk of stream) {
    r.chat_stream.chunks++;
    r.chat_stream.ids.add(chunk.id);
    if (chunk.usage) r.chat_stream.usage = chunk.usage;
    for (const c of chunk.choices) {
        r.chat_stream.content += c.delta?.content ?? '';
        if (c.finish_reason) r.chat_stream.finish_reason = c.finish_reason;
    }
}
r.chat_stream.ids = r.chat_stream.ids.size;

const cmpl = await client.completions.create({
    model: 'qwen3', prompt: 'Once upon a time', max_tokens: 4, temperature: 0 });
r.completion = { object: cmpl.object, text: cmpl.choices[0].text,
                 finish_reason: cmpl.choices[0].finish_reason, usage: cmpl.usage };

const cstream = await client.completions.create({
    model: 'qwen3', prompt: 'Once upon a time', max_tokens: 4, temperature: 0, stream: true });
r.completion_stream = { chunks: 0, text: '' };
for await (const chunk of cstream) {
    r.completion_stream.chunks++;
    r.completion_stream.text += chunk.choices[0]?.text ?? '';
}

const tools = [{ type: 'function', function: {
    name: 'get_weather', description: 'Get the current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } },
                  required: ['city'] } } }];
const plain = await client.chat.completions.create({ model: 'qwen3', messages, max_tokens: 1 });
const withTools = await client.chat.completions.create({
    model: 'qwen3', messages, tools, tool_choice: 'auto', max_tokens: 3 });
r.tools = { status: 'ok', finish_reason: withTools.choices[0].finish_reason,
            prompt_tokens: withTools.usage.prompt_tokens,
            prompt_tokens_without: plain.usage.prompt_tokens };

try {
    await client.chat.completions.create({ model: 'gpt-4', messages, max_tokens: 1 });
    r.unknown_model = { status: 200 };
} catch (e) {
    r.unknown_model = { status: e.status, not_found: e instanceof OpenAI.NotFoundError,
                        type: e.type ?? e.error?.type, message: e.message };
}

report(r);
