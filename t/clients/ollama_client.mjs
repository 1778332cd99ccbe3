// t/clients/ollama_client.mjs - the official `ollama` npm client, unchanged,
// against the module's Ollama API (QWEN_PORT): list, ps, show, version,
// chat and generate (one body and streamed), a tool definition, think off,
// and the errors a client sees (unknown model, pull).
import { load, report } from './load.mjs';

const { Ollama } = await load('ollama');
const ollama = new Ollama({ host: `http://127.0.0.1:${process.env.QWEN_PORT}` });
const model = 'qwen3:0.6b';
const r = {};
const messages = [{ role: 'user', content: 'Why is the sky blue?' }];

r.list = (await ollama.list()).models.map((m) => ({ name: m.name, details: m.details }));
r.ps = (await ollama.ps()).models.map((m) => m.name);
r.version = (await ollama.version()).version;
const show = await ollama.show({ model });
r.show = { family: show.details?.family, has_template: typeof show.template === 'string' };

const chat = await ollama.chat({ model, messages, stream: false,
                                 options: { num_predict: 5, temperature: 0 } });
r.chat = { role: chat.message.role, content: chat.message.content, done: chat.done,
           done_reason: chat.done_reason, eval_count: chat.eval_count,
           prompt_eval_count: chat.prompt_eval_count, total_duration: chat.total_duration };

const stream = await ollama.chat({ model, messages, stream: true,
                                   options: { num_predict: 6, temperature: 0 } });
r.chat_stream = { parts: 0, content: '', last: null };
for await (const part of stream) {
    r.chat_stream.parts++;
    r.chat_stream.content += part.message.content;
    if (part.done) r.chat_stream.last = { done_reason: part.done_reason, eval_count: part.eval_count };
}

const gen = await ollama.generate({ model, prompt: 'Once upon a time', stream: false,
                                    options: { num_predict: 4, temperature: 0 } });
r.generate = { response: gen.response, done: gen.done, done_reason: gen.done_reason,
               eval_count: gen.eval_count };

const gstream = await ollama.generate({ model, prompt: 'Once upon a time', stream: true,
                                        options: { num_predict: 4, temperature: 0 } });
r.generate_stream = { parts: 0, response: '', done: false };
for await (const part of gstream) {
    r.generate_stream.parts++;
    r.generate_stream.response += part.response;
    if (part.done) r.generate_stream.done = true;
}

const tools = [{ type: 'function', function: {
    name: 'get_weather', description: 'Get the current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } },
                  required: ['city'] } } }];
const withTools = await ollama.chat({ model, messages, tools, stream: false, think: false,
                                      options: { num_predict: 3 } });
const plain = await ollama.chat({ model, messages, stream: false, think: false,
                                  options: { num_predict: 1 } });
r.tools = { done: withTools.done, prompt_eval_count: withTools.prompt_eval_count,
            prompt_eval_count_without: plain.prompt_eval_count };

try {
    await ollama.chat({ model: 'llama3', messages, stream: false });
    r.unknown_model = { status: 200 };
} catch (e) {
    r.unknown_model = { status: e.status_code, error: e.error, name: e.name };
}
try {
    await ollama.pull({ model: 'llama3' });
    r.pull = { status: 200 };
} catch (e) {
    r.pull = { status: e.status_code, error: e.error };
}

report(r);
