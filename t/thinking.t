# t/thinking.t - the thinking budget and the repetition guard through nginx,
# on both APIs: past its budget the thinking is closed with Qwen's sentence
# and the answer follows (per request, and qwen_thinking_budget as the
# location's default); a forced repetition is stopped with finish_reason /
# done_reason "length" and a warning in the error log (qwen_repetition_guard
# N and off); bad values are 400s naming the field. The random-weight model
# is steered with logit_bias (OpenAI) and negative presence/frequency
# penalties over a prompt full of one token (Ollama), greedy.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

my $n = QwenNginx->serve(server => <<'EOF2');
    location /v1/ { qwen_api openai; }
    location /api/ { qwen_api ollama; }
    location /budget2/v1/ { qwen_thinking_budget 2; qwen_api openai; }
    location /noguard/v1/ { qwen_repetition_guard off; qwen_api openai; }
    location /guard100/v1/ { qwen_repetition_guard 100; qwen_api openai; }
    location = /tokenize { qwen_tokenize; }
EOF2

my $T = JSON::PP::true;
my $F = JSON::PP::false;
my $THINK = 151667;     # <think>
my $SENTENCE = 'Considering the limited time by the user, I have to give the solution '
             . 'based on the thinking directly now.';
my $msgs = [{ role => 'user', content => 'How many primes are below 100?' }];

sub ndjson { return map { QwenNginx::decode_json_or_undef($_) } grep { length } split /\n/, shift; }

# the closing text's tokens (the engine generates them one by one)
my $r = $n->post_json('/tokenize', { prompt => "\n\n$SENTENCE\n</think>\n\n" });
is($r->{status}, 200, 'the closing text tokenizes');
my $nc = $r->{json}{count};
ok($nc > 20, "... into $nc tokens");

# ------------------------------------------------- OpenAI: thinking budget
# +100 on <think>: the first opens the thinking, the next ones are its text
# ("<think>" each), the budget closes it, and the answer is more of them.
my %think_bias = (logit_bias => { $THINK => 100 }, temperature => 0);
my $max = 1 + 3 + $nc + 4;
$r = $n->post_json('/v1/chat/completions',
    { messages => $msgs, max_tokens => $max, thinking_budget => 3, %think_bias });
is($r->{status}, 200, 'chat with thinking_budget 3');
my $msg = $r->{json}{choices}[0]{message};
is($msg->{reasoning_content}, '<think>' x 3 . "\n\n$SENTENCE",
   '... three tokens of thinking, then the closing sentence as reasoning');
is($msg->{content}, '<think>' x 4, '... then the answer');
is($r->{json}{usage}{completion_tokens}, $max, '... the closing tokens count as generated');
is($r->{json}{choices}[0]{finish_reason}, 'length', '... max_tokens bounds the whole');

my $st = $n->stream_json('/v1/chat/completions',
    { messages => $msgs, max_tokens => $max, stream => $T,
      chat_template_kwargs => { thinking_budget => 3 }, %think_bias });
my @ev = grep { $_ } map { QwenNginx::decode_json_or_undef($_) } $st->all_events(60);
my ($reasoning, $content) = ('', '');
for my $e (@ev) {
    my $d = $e->{choices}[0]{delta} or next;
    $reasoning .= $d->{reasoning_content} // '';
    $content .= $d->{content} // '';
}
is($reasoning, '<think>' x 3 . "\n\n$SENTENCE",
   'streamed, chat_template_kwargs.thinking_budget: the same reasoning');
is($content, '<think>' x 4, '... and answer');

# budget 0: closed at once
$r = $n->post_json('/v1/chat/completions',
    { messages => $msgs, max_tokens => 1 + $nc + 2, thinking_budget => 0, %think_bias });
is($r->{json}{choices}[0]{message}{reasoning_content}, $SENTENCE, 'thinking_budget 0 closes at once');
is($r->{json}{choices}[0]{message}{content}, '<think>' x 2, '... the answer follows');

# max_tokens inside the closing text: cut there
$r = $n->post_json('/v1/chat/completions',
    { messages => $msgs, max_tokens => 1 + 3 + 5, thinking_budget => 3, %think_bias });
is($r->{json}{usage}{completion_tokens}, 9, 'max_tokens within the closing tokens');
like($r->{json}{choices}[0]{message}{reasoning_content}, qr/^(<think>){3}\n\nConsidering/,
     '... reasoning cut in the sentence');
is($r->{json}{choices}[0]{message}{content}, '', '... no answer');

# the location's default, and a request's -1
$r = $n->post_json('/budget2/v1/chat/completions',
    { messages => $msgs, max_tokens => 1 + 2 + $nc + 1, %think_bias });
is($r->{json}{choices}[0]{message}{reasoning_content}, '<think>' x 2 . "\n\n$SENTENCE",
   'qwen_thinking_budget 2 is the default');
$r = $n->post_json('/budget2/v1/chat/completions',
    { messages => $msgs, max_tokens => 12, thinking_budget => -1, %think_bias });
is($r->{json}{choices}[0]{message}{reasoning_content}, '<think>' x 11,
   '... thinking_budget -1 turns it off');
# thinking off: nothing to close
$r = $n->post_json('/budget2/v1/chat/completions',
    { messages => $msgs, max_tokens => 6, %think_bias,
      chat_template_kwargs => { enable_thinking => $F } });
is($r->{json}{choices}[0]{message}{content}, '<think>' x 6, '... no effect with thinking off');

# structured output after the forced </think>
$r = $n->post_json('/v1/chat/completions',
    { messages => $msgs, max_tokens => 1 + 2 + $nc + 40, thinking_budget => 2, temperature => 0,
      logit_bias => { $THINK => 100 }, response_format => { type => 'json_object' } });
is($r->{status}, 200, 'thinking_budget with response_format json_object');
like($r->{json}{choices}[0]{message}{reasoning_content}, qr/directly now\.$/,
     '... the thinking is closed');
like($r->{json}{choices}[0]{message}{content}, qr/^\s*\{/, '... the answer is JSON')
    or diag $r->{body};

# ------------------------------------------------- Ollama: thinking budget
# 64 <think> in the user's message and presence/frequency penalties of -2
# over the whole history lift <think> by ~130 nats: it is what comes.
my $thinks = [{ role => 'user', content => '<think>' x 64 }];
my %think_opts = (temperature => 0, repeat_last_n => -1, presence_penalty => -2,
                  frequency_penalty => -2);
$r = $n->post_json('/api/chat',
    { messages => $thinks, stream => $F, think => $T,
      options => { %think_opts, thinking_budget => 2, num_predict => 1 + 2 + $nc + 3 } });
is($r->{status}, 200, 'Ollama chat with options.thinking_budget 2');
is($r->{json}{message}{thinking}, '<think>' x 2 . "\n\n$SENTENCE",
   '... two tokens of thinking, then the closing sentence');
is($r->{json}{message}{content}, '<think>' x 3, '... then the answer');
is($r->{json}{eval_count}, 1 + 2 + $nc + 3, '... eval_count counts the closing tokens');

$r = $n->post_json('/api/generate',
    { prompt => '<think>' x 64, thinking_budget => 0,
      options => { %think_opts, num_predict => 1 + $nc + 2 } });
my @lines = ndjson($r->{body});
my $thinking = join '', map { $_->{thinking} // '' } @lines;
my $response = join '', map { $_->{response} // '' } @lines;
is($thinking, $SENTENCE, 'Ollama generate streamed, top-level thinking_budget 0');
is($response, '<think>' x 2, '... the answer follows');
is($lines[-1]{done_reason}, 'length', '... done_reason length');

# --------------------------------------------------------------- errors
$r = $n->post_json('/v1/chat/completions', { messages => $msgs, thinking_budget => 'lots' });
is($r->{status}, 400, 'thinking_budget "lots" is 400');
is($r->{json}{error}{param}, 'thinking_budget', '... naming the field');
$r = $n->post_json('/v1/chat/completions',
    { messages => $msgs, chat_template_kwargs => { thinking_budget => -5 } });
is($r->{status}, 400, 'chat_template_kwargs.thinking_budget -5 is 400');
is($r->{json}{error}{param}, 'chat_template_kwargs.thinking_budget', '... naming the field');
$r = $n->post_json('/api/chat', { messages => $msgs, options => { thinking_budget => 1.5 } });
is($r->{status}, 400, 'options.thinking_budget 1.5 is 400');
like($r->{json}{error}, qr/'options\.thinking_budget' must be an integer/, '... saying so');

# ----------------------------------------------------- repetition guard
# one token forever: stopped after 64 (the floor) with the default guard 8
my $log_before = () = $n->error_log =~ /stopped for repetition/g;
$r = $n->post_json('/v1/completions',
    { prompt => 'Once upon a time', max_tokens => 200, temperature => 0,
      logit_bias => { 4242 => 100 } });
is($r->{status}, 200, 'a forced repetition');
is($r->{json}{choices}[0]{finish_reason}, 'length', '... ends with finish_reason length');
is($r->{json}{usage}{completion_tokens}, 64, '... after 64 tokens of one token');
my $log = '';
for (1 .. 50) {
    $log = $n->error_log;
    last if (() = $log =~ /stopped for repetition/g) > $log_before;
    select undef, undef, undef, 0.05;
}
like($log, qr/\[warn\].*qwen: generation stopped for repetition after 64 tokens: its last tokens repeat a span of 1 token \(qwen_repetition_guard 8\); the answer ends with finish_reason "length"/,
     '... and a warning in the error log');

$r = $n->post_json('/guard100/v1/completions',
    { prompt => 'Once upon a time', max_tokens => 200, temperature => 0,
      logit_bias => { 4242 => 100 } });
is($r->{json}{usage}{completion_tokens}, 100, 'qwen_repetition_guard 100: after 100');
$r = $n->post_json('/noguard/v1/completions',
    { prompt => 'Once upon a time', max_tokens => 200, temperature => 0,
      logit_bias => { 4242 => 100 } });
is($r->{json}{usage}{completion_tokens}, 200, 'qwen_repetition_guard off: max_tokens ends it');

# streamed, chat
$st = $n->stream_json('/v1/chat/completions',
    { messages => $msgs, max_tokens => 300, temperature => 0, stream => $T,
      logit_bias => { 4242 => 100 }, stream_options => { include_usage => $T } });
@ev = grep { $_ } map { QwenNginx::decode_json_or_undef($_) } $st->all_events(60);
my ($fin) = grep { defined } map { $_->{choices}[0]{finish_reason} } @ev;
is($fin, 'length', 'a streamed repetition: finish_reason length');
is($ev[-1]{usage}{completion_tokens}, 64, '... after 64 tokens');

# Ollama: the same lift on one token makes it repeat
$r = $n->post_json('/api/chat',
    { messages => $thinks, stream => $F, think => $F,
      options => { %think_opts, num_predict => 300 } });
is($r->{status}, 200, 'Ollama: a forced repetition');
is($r->{json}{done_reason}, 'length', '... done_reason length');
is($r->{json}{eval_count}, 64, '... after 64 tokens');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;

# ------------------------------------------------ nginx -t of the directives
for my $case (['qwen_thinking_budget -1;', qr/invalid value "-1" in "qwen_thinking_budget": expected "off" or a number from 0 to 1073741824/],
              ['qwen_thinking_budget some;', qr/invalid value "some" in "qwen_thinking_budget"/],
              ['qwen_repetition_guard 1;', qr/invalid value "1" in "qwen_repetition_guard": expected "off" or a number from 2 to 1048576/],
              ['qwen_repetition_guard on;', qr/invalid value "on" in "qwen_repetition_guard"/])
{
    my ($directive, $msg) = @$case;
    my $t = QwenNginx->new(http => "qwen_model %%MODELS%%/tiny-f32.gguf; $directive\n"
        . "server { listen 127.0.0.1:%%PORT%%; location /v1/ { qwen_api openai; } }\n");
    my ($rc, $out) = $t->test_conf;
    isnt($rc, 0, "$directive fails nginx -t");
    like($out, $msg, '... naming the directive and the value');
}
my $t = QwenNginx->new(http => "qwen_model %%MODELS%%/tiny-f32.gguf; qwen_thinking_budget 0;\n"
    . "qwen_repetition_guard 2; server { listen 127.0.0.1:%%PORT%%; location /v1/ {\n"
    . "qwen_thinking_budget off; qwen_repetition_guard off; qwen_api openai; } }\n");
my ($rc, $out) = $t->test_conf;
is($rc, 0, 'the directives in http and location, off too') or diag $out;

done_testing;
