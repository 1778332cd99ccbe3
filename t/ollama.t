# t/ollama.t - the Ollama API through nginx (`qwen_api ollama;`): GET / and
# HEAD /, /api/tags, /api/ps, /api/show, /api/version, chat and generate as
# NDJSON streams (the default) and as one body, options that can be seen
# (num_predict, seed, temperature 0), the "load the model" request, and
# format "json" and a schema (the answer parses, also when
# num_predict cut it), and every error: unknown model 404, images, a bad
# format and suffix 400, bad JSON 400,
# model management and embeddings 501, unknown paths 404, wrong methods 405.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

# No prefix cache: prompt_eval_count counts the tokens evaluated, and
# here it checks what the prompt was (t/prefix_cache.t tests the cache)
my $n = QwenNginx->serve(engine => 'qwen_prefix_cache off;',
                         server => 'location / { qwen_api ollama; }
                                    location /named/ { qwen_model_name mine; qwen_api ollama; }');

my $T = JSON::PP::true;
my $F = JSON::PP::false;
my $msgs = [{ role => 'user', content => 'Why is the sky blue?' }];

# Decode an NDJSON body into a list of objects (undef for a bad line).
sub ndjson { return map { QwenNginx::decode_json_or_undef($_) } grep { length } split /\n/, shift; }

# ------------------------------------------------------------------ root
my $r = $n->request('GET', '/');
is($r->{status}, 200, 'GET /');
is($r->{body}, 'Ollama is running', '... "Ollama is running"');
like($r->{headers}{'content-type'}, qr{^text/plain}, '... as text/plain');
$r = $n->request('HEAD', '/');
is($r->{status}, 200, 'HEAD / is 200');
is($r->{body}, '', '... without a body');
$r = $n->request('GET', '/named/');
is($r->{body}, 'Ollama is running', 'the location\'s own URI is its root');
$r = $n->request('POST', '/', '{}');
is($r->{status}, 405, 'POST / is 405');
is($r->{headers}{allow}, 'GET, HEAD', '... Allow: GET, HEAD');

# -------------------------------------------------------------- listings
$r = $n->get_json('/api/tags');
is($r->{status}, 200, 'GET /api/tags');
my $m = $r->{json}{models}[0];
is($m->{name}, 'qwen3:0.6b', '... the model as qwen3:0.6b');
is($m->{model}, 'qwen3:0.6b', '... model too');
like($m->{digest}, qr/^[0-9a-f]{64}$/, '... a sha256 digest');
ok($m->{size} > 0, '... its size');
like($m->{modified_at}, qr/^\d{4}-\d\d-\d\dT/, '... modified_at in RFC 3339');
is($m->{details}{family}, 'qwen3', '... details.family');
is($m->{details}{format}, 'gguf', '... details.format');
ok(length $m->{details}{quantization_level}, '... details.quantization_level');

$r = $n->get_json('/named/api/tags');
is($r->{json}{models}[0]{name}, 'mine:latest', 'qwen_model_name: listed with :latest');

$r = $n->get_json('/api/ps');
is($r->{status}, 200, 'GET /api/ps');
is($r->{json}{models}[0]{name}, 'qwen3:0.6b', '... the model is resident');
ok($r->{json}{models}[0]{size} > $m->{size}, '... its size counts the KV cache');
ok(exists $r->{json}{models}[0]{expires_at}, '... expires_at');

$r = $n->get_json('/api/version');
is($r->{status}, 200, 'GET /api/version');
like($r->{json}{version}, qr/^\d+\.\d+\.\d+$/, '... a version');

$r = $n->post_json('/api/show', { model => 'qwen3:0.6b' });
is($r->{status}, 200, 'POST /api/show');
is($r->{json}{details}{family}, 'qwen3', '... details');
ok(ref $r->{json}{model_info} eq 'HASH', '... model_info');
like($r->{json}{template}, qr/im_start/, '... the template');
$r = $n->post_json('/api/show', { name => 'qwen3' });
is($r->{status}, 200, '... "name" works too');
$r = $n->post_json('/api/show', { model => 'llama3' });
is($r->{status}, 404, '/api/show of an unknown model is 404');
like($r->{json}{error}, qr/not found/, '... {"error":"... not found"}');
$r = $n->post_json('/api/show', '{"model":');
is($r->{status}, 400, '/api/show with broken JSON is 400');
$r = $n->request('GET', '/api/show');
is($r->{status}, 405, 'GET /api/show is 405');

# ------------------------------------------------------- chat, streamed
$r = $n->post_json('/api/chat', { model => 'qwen3:0.6b', messages => $msgs,
                                 options => { num_predict => 5, temperature => 0 } });
is($r->{status}, 200, 'POST /api/chat streams by default');
is($r->{headers}{'content-type'}, 'application/x-ndjson', '... as application/x-ndjson');
is($r->{headers}{'transfer-encoding'}, 'chunked', '... chunked');
my @lines = ndjson($r->{body});
# a line per engine poll: the 5 tokens' text in 1 to 5 lines, as they
# arrived (a busy worker finds them all at once), then the last
ok(@lines >= 2, 'one JSON object per line (' . @lines . ' lines)');
is(scalar(grep { !defined } @lines), 0, '... every line is JSON');
my $last = $lines[-1];
ok($last->{done}, 'the last line has done:true');
ok(!grep({ $_->{done} } @lines[0 .. $#lines - 1]), '... and only the last');
is($last->{done_reason}, 'length', '... done_reason length');
is($last->{eval_count}, 5, '... eval_count = options.num_predict');
ok($last->{prompt_eval_count} > 0, '... prompt_eval_count');
for my $k (qw(total_duration load_duration prompt_eval_duration eval_duration)) {
    ok(defined $last->{$k} && $last->{$k} =~ /^\d+$/, "... $k in nanoseconds");
}
ok($last->{total_duration} >= $last->{eval_duration}, '... total_duration >= eval_duration');
is($lines[0]{message}{role}, 'assistant', 'lines carry message.role assistant');
like($lines[0]{created_at}, qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/, '... and created_at');
is($lines[0]{model}, 'qwen3:0.6b', '... and the model');
my $streamed = join '', map { $_->{message}{content} // '' } @lines;

# the stream arrives line by line
my $s = $n->stream_json('/api/chat', { messages => $msgs, options => { num_predict => 40 } });
ok($s->wait_head(10), 'a streamed chat starts');
my $first = '';
$s->pump(10) until $s->{data} =~ /\n/ || $s->eof || $s->done;
like($s->{data}, qr/^\{.*"done":false\}\n/, '... the first line arrives alone, before the end');
$s->body(30);
ok($s->done, '... and the stream ends');

# ---------------------------------------------------- chat, one body
$r = $n->post_json('/api/chat', { model => 'qwen3', messages => $msgs, stream => $F,
                                 options => { num_predict => 5, temperature => 0 } });
is($r->{status}, 200, 'POST /api/chat with stream false');
is($r->{headers}{'content-type'}, 'application/json', '... is one JSON body');
is($r->{json}{message}{content}, $streamed, '... greedy: the same text as the stream');
ok($r->{json}{done}, '... done');
is($r->{json}{eval_count}, 5, '... eval_count');

# options
$r = $n->post_json('/api/chat', { messages => $msgs, stream => $F, options => { num_predict => 2 } });
is($r->{json}{eval_count}, 2, 'options.num_predict limits eval_count');
my @seeded = map {
    $n->post_json('/api/chat', { messages => $msgs, stream => $F,
        options => { num_predict => 8, temperature => 1.0, seed => 42 } })->{json}{message}{content}
} 1 .. 2;
is($seeded[0], $seeded[1], 'options.seed: the same seed, the same sample');
$r = $n->post_json('/api/chat', { messages => $msgs, stream => $F,
                                 options => { num_predict => 5, temperature => 0, top_k => 5,
                                              top_p => 0.9, min_p => 0.05, repeat_penalty => 1.1,
                                              repeat_last_n => 32, presence_penalty => 0.1,
                                              frequency_penalty => 0.1, num_ctx => 256,
                                              typical_p => 1.0, stop => ['zzz'] },
                                 keep_alive => '5m', think => $F });
is($r->{status}, 200, 'every option, keep_alive and think are accepted');
$r = $n->post_json('/api/chat', { messages => $msgs, stream => $F, think => $F,
                                 options => { num_predict => 1 } });
my $nothink = $r->{json}{prompt_eval_count};
$r = $n->post_json('/api/chat', { messages => $msgs, stream => $F, think => $T,
                                 options => { num_predict => 1 } });
ok($nothink > $r->{json}{prompt_eval_count}, 'think false adds the empty think block');
$r = $n->post_json('/api/chat', { messages => [{ role => 'system', content => 'Be brief.' }, @$msgs],
                                 stream => $F, options => { num_predict => 1 } });
is($r->{status}, 200, 'a system message');

# ------------------------------------------------- format: structured output
# Answers are character strings here (decoded with the response), so they
# are parsed without the utf8 layer.
my $JSON_CHARS = JSON::PP->new;
sub decode_chars { my $t = shift; return eval { $JSON_CHARS->decode($t) }; }

# A JSON text cut short (done_reason "length") must still be a valid prefix:
# completed (the string closed, a number or literal finished, a missing
# value filled, every bracket closed) it must parse as an object.
sub json_prefix_ok {
    my ($t) = @_;
    my (@stack, $in_str, $esc, $hex, $is_key);
    my ($expect, $pending) = ('value', '');
    for my $c (split //, $t) {
        if ($in_str) {
            if ($hex >= 0) { $hex = $hex == 3 ? -1 : $hex + 1; next; }
            if ($esc) { $esc = 0; $hex = 0 if $c eq 'u'; next; }
            if ($c eq '\\') { $esc = 1; next; }
            if ($c eq '"') { $in_str = 0; $expect = $is_key ? 'colon' : 'after'; }
            next;
        }
        if ($pending ne '') {
            if ($c =~ /[0-9a-z.+\-]/i) { $pending .= $c; next; }
            ($pending, $expect) = ('', 'after');
        }
        next if $c =~ /\s/;
        if ($c eq '{') { push @stack, '}'; $expect = 'key_or_end'; }
        elsif ($c eq '[') { push @stack, ']'; $expect = 'first'; }
        elsif ($c eq '}' || $c eq ']') { pop @stack; $expect = 'after'; }
        elsif ($c eq '"') { ($in_str, $esc, $hex, $is_key) = (1, 0, -1, $expect =~ /^key/); }
        elsif ($c eq ':') { $expect = 'value'; }
        elsif ($c eq ',') { $expect = $stack[-1] eq '}' ? 'key' : 'value'; }
        else { $pending = $c; }
    }
    my $tail = '';
    if ($in_str) {
        $tail .= 'n' if $esc;
        $tail .= '0' x (4 - $hex) if $hex >= 0;
        $tail .= '"';
        $expect = $is_key ? 'colon' : 'after';
    }
    if ($pending ne '') {
        for my $w (qw(true false null)) {
            $tail .= substr($w, length $pending) if index($w, $pending) == 0;
        }
        $tail .= '0' if $pending =~ /[-.eE+]$/;
        $expect = 'after';
    }
    $tail .= ':null' if $expect eq 'colon';
    $tail .= 'null' if $expect eq 'value';
    $tail .= '"k":null' if $expect eq 'key';
    $tail .= join '', reverse @stack;
    return ref decode_chars($t . $tail) eq 'HASH';
}

# The answer of a request with a format: JSON when it stopped, a valid
# prefix when cut.
sub check_json_answer {
    my ($text, $reason, $what) = @_;
    # num_predict leaves room for "{}": a length stop closed the JSON in time
    like($reason // '', qr/^(stop|length)$/, "$what: done_reason $reason");
    ok(ref decode_chars($text) eq 'HASH', "$what: the answer parses") or diag $text;
}

ok(json_prefix_ok('{"a": [1, tr'), 'the prefix checker takes a prefix');
ok(json_prefix_ok('{"a'), '... inside a key');
ok(json_prefix_ok('{"a": 1, '), '... after a comma');
ok(!json_prefix_ok('{"a" 1'), '... and refuses a broken one');
for my $seed (1 .. 3) {
    $r = $n->post_json('/api/chat', { messages => $msgs, format => 'json', think => $F,
                                     options => { num_predict => 200, seed => $seed } });
    is($r->{status}, 200, "format json, streamed (seed $seed)");
    my @l = ndjson($r->{body});
    is(scalar(grep { !defined } @l), 0, '... every line is JSON');
    check_json_answer(join('', map { $_->{message}{content} // '' } @l), $l[-1]{done_reason},
                      "... seed $seed");
    $r = $n->post_json('/api/generate', { prompt => 'List three colors', format => 'json',
                                         think => $F, stream => $F,
                                         options => { num_predict => 200, seed => $seed } });
    is($r->{status}, 200, "format json, generate, one body (seed $seed)");
    check_json_answer($r->{json}{response}, $r->{json}{done_reason}, "... seed $seed");
}
my $schema = { type => 'object', properties => { name => { type => 'string' },
               color => { enum => ['red', 'green'] }, n => { type => 'integer' } },
               required => ['name', 'color', 'n'] };
$r = $n->post_json('/api/chat', { messages => $msgs, format => $schema, think => $F, stream => $F,
                                 options => { num_predict => 200, temperature => 0 } });
is($r->{status}, 200, 'format with a schema');
check_json_answer($r->{json}{message}{content}, $r->{json}{done_reason}, '... schema');
# (the test client sends keys sorted: color, n, name)
like($r->{json}{message}{content}, qr/^\s*\{\s*"color"\s*:\s*"(red|green)"/,
     '... properties in schema order, an enum value first');
$r = $n->post_json('/api/chat', { messages => $msgs, format => 'json', stream => $F,
                                 options => { num_predict => 20 } });
is($r->{status}, 200, 'format json with thinking on: JSON after </think>');

# the "load the model" request
$r = $n->post_json('/api/chat', { model => 'qwen3:0.6b' });
is($r->{status}, 200, 'chat without messages loads the model');
is($r->{json}{done_reason}, 'load', '... done_reason load');
$r = $n->post_json('/api/generate', { model => 'qwen3:0.6b', keep_alive => 0 });
is($r->{json}{done_reason}, 'unload', 'generate with keep_alive 0: unload');

# ------------------------------------------------------------- generate
$r = $n->post_json('/api/generate', { model => 'qwen3:0.6b', prompt => 'Once upon a time',
                                     options => { num_predict => 4, temperature => 0 } });
is($r->{status}, 200, 'POST /api/generate streams by default');
@lines = ndjson($r->{body});
ok(@lines >= 2, '... NDJSON lines');
ok($lines[-1]{done}, '... the last has done:true');
is($lines[-1]{eval_count}, 4, '... eval_count');
ok(ref $lines[-1]{context} eq 'ARRAY', '... and context');
my $gen = join '', map { $_->{response} // '' } @lines;
$r = $n->post_json('/api/generate', { prompt => 'Once upon a time', stream => $F,
                                     options => { num_predict => 4, temperature => 0 } });
is($r->{json}{response}, $gen, 'stream false: one body, the same greedy text');
$r = $n->post_json('/api/generate', { prompt => 'Hello', system => 'Be brief.', stream => $F,
                                     options => { num_predict => 1 } });
is($r->{status}, 200, 'generate with system');
$r = $n->post_json('/api/generate', { prompt => '<|im_start|>user\nHi<|im_end|>\n', raw => $T,
                                     stream => $F, options => { num_predict => 1 } });
is($r->{status}, 200, 'generate with raw');
is($r->{json}{prompt_eval_count}, 6, '... the prompt verbatim (6 tokens)');

# ---------------------------------------------------------------- errors
my @bad = (
    ['/api/chat', { model => 'llama3', messages => $msgs }, 404, qr/model 'llama3' not found/, 'an unknown model'],
    ['/api/generate', { model => 'llama3', prompt => 'x' }, 404, qr/not found/, 'generate, unknown model'],
    ['/api/generate', { prompt => 'x', images => ['aGVsbG8='] }, 400, qr/images/, 'images'],
    ['/api/chat', { messages => [{ role => 'user', content => 'x', images => ['aGVsbG8='] }] }, 400, qr/images/, 'images in a message'],
    ['/api/chat', { messages => $msgs, format => 'xml' }, 400, qr/format/, 'format xml'],
    ['/api/generate', { prompt => 'x', format => { type => 'array' } }, 400, qr/format.*object/, 'a schema whose top is no object'],
    ['/api/generate', { prompt => 'x', format => { type => 'object', properties => { a => { '$ref' => '#/x' } } } }, 400, qr/\$ref/, 'a schema with $ref'],
    ['/api/generate', { prompt => 'x', suffix => 'y' }, 400, qr/suffix/, 'suffix'],
    ['/api/chat', { messages => 'x' }, 400, qr/messages/, 'messages not an array'],
    ['/api/chat', { messages => $msgs, options => { num_predict => 'x' } }, 400, qr/num_predict/, 'a wrong option type'],
    ['/api/chat', '{"messages":', 400, qr/./, 'broken JSON'],
);
for my $b (@bad) {
    my ($path, $body, $status, $re, $what) = @$b;
    $r = $n->post_json($path, $body);
    is($r->{status}, $status, "$what: $status");
    ok(ref $r->{json} eq 'HASH' && !ref $r->{json}{error} && ($r->{json}{error} // '') =~ $re,
       "... {\"error\": \"...\"}") or diag $r->{body};
}

for my $p (qw(pull push create copy delete)) {
    $r = $n->post_json("/api/$p", { model => 'llama3' });
    is($r->{status}, 501, "/api/$p: 501");
    like($r->{json}{error}, qr/not supported.*nginx\.conf/, '... the model is set in nginx.conf');
}
$r = $n->request('DELETE', '/api/delete', '{"model":"qwen3"}');
is($r->{status}, 501, 'DELETE /api/delete: 501');
$r = $n->request('HEAD', '/api/blobs/sha256:abc');
is($r->{status}, 501, 'HEAD /api/blobs/...: 501');
$r = $n->post_json('/api/embed', { input => 'x' });
is($r->{status}, 501, '/api/embed: 501');
like($r->{json}{error}, qr/embeddings/, '... says why');

$r = $n->get_json('/api/nothing');
is($r->{status}, 404, 'an unknown path: 404');
ok(defined $r->{json}{error}, '... as Ollama JSON');
$r = $n->get_json('/api/chat');
is($r->{status}, 405, 'GET /api/chat: 405');
is($r->{headers}{allow}, 'POST', '... Allow: POST');
like($r->{json}{error}, qr/not allowed/, '... as Ollama JSON');

# nginx's own errors in Ollama's format
$r = $n->request('POST', '/api/chat', 'x' x (1024 * 1024 + 10));
is($r->{status}, 413, 'a body past client_max_body_size: 413');
ok(defined $r->{json} || defined QwenNginx::decode_json_or_undef($r->{body}), '... JSON');
like($r->{body}, qr/^\{"error":"/, '... in Ollama\'s {"error": "..."} form');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
