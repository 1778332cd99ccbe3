# t/openai.t - the OpenAI endpoints through nginx: /v1/models, non-streamed
# completions and chat completions with usage, stop strings, thinking on and
# off, and greedy token-id completions whose tokens and log-probabilities
# match `build/qwen logits` on the same model.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

my $model = QwenNginx::model('tiny-f32.gguf');
my $n = QwenNginx->serve(server => <<'EOF2');
    location /v1/ { qwen_api openai; }
    location /nothink/v1/ { qwen_enable_thinking off; qwen_api openai; }
    location /named/v1/ { qwen_model_name mine; qwen_api openai; }
EOF2

# ---------------------------------------------------------------- models
my $r = $n->get_json('/v1/models');
is($r->{status}, 200, 'GET /v1/models');
is($r->{headers}{'content-type'}, 'application/json', '... is JSON');
is($r->{json}{object}, 'list', '... a list');
is($r->{json}{data}[0]{id}, 'qwen3', '... of the served model');

$r = $n->get_json('/named/v1/models');
is($r->{json}{data}[0]{id}, 'mine', 'qwen_model_name names the model');

$r = $n->get_json('/v1/models/qwen3');
is($r->{status}, 200, 'GET /v1/models/qwen3');
is($r->{json}{id}, 'qwen3', '... describes it');

$r = $n->get_json('/v1/models/gpt-4');
is($r->{status}, 404, 'GET /v1/models/gpt-4 is 404');
is($r->{json}{error}{type}, 'not_found_error', '... not_found_error');

# ------------------------------------------------------------ completions
my @prompt = (9707, 11, 1879, 374, 264);
$r = $n->post_json('/v1/completions',
    { prompt => \@prompt, max_tokens => 6, temperature => 0 });
is($r->{status}, 200, 'POST /v1/completions with token ids');
is($r->{json}{object}, 'text_completion', '... a text_completion');
like($r->{json}{id}, qr/^cmpl-/, '... with a cmpl- id');
is($r->{json}{choices}[0]{finish_reason}, 'length', '... ends by length');
is_deeply($r->{json}{usage}, { prompt_tokens => 5, completion_tokens => 6, total_tokens => 11,
                                 prompt_tokens_details => { cached_tokens => 0 } },
          '... usage counts prompt and completion tokens');
my $greedy = $r->{json}{choices}[0]{text};
ok(length $greedy, '... and has text');

$r = $n->post_json('/v1/completions',
    { prompt => \@prompt, max_tokens => 6, temperature => 0 });
is($r->{json}{choices}[0]{text}, $greedy, 'greedy decoding is repeatable');

$r = $n->post_json('/v1/completions', { prompt => 'Hello, world', max_tokens => 3 });
is($r->{status}, 200, 'a text prompt');
ok($r->{json}{usage}{prompt_tokens} > 0, '... is tokenized');
is($r->{json}{usage}{completion_tokens}, 3, '... max_tokens is honoured');

$r = $n->post_json('/v1/completions', { model => 'qwen3', prompt => [1, 2], max_tokens => 1 });
is($r->{status}, 200, 'model "qwen3" is accepted');

# ------------------------------------------------- logprobs vs qwen logits
SKIP: {
    skip "$QwenNginx::QWEN not built", 8 unless -x $QwenNginx::QWEN;
    my $steps = 8;
    my @ref = map { QwenNginx::decode_json_or_undef($_) }
              grep { /^\{/ }
              split /\n/, `$QwenNginx::QWEN logits -m $model --ids @{[join ',', @prompt]} -n $steps --top 5 2>/dev/null`;
    is(scalar @ref, $steps, "qwen logits gives $steps steps");

    $r = $n->post_json('/v1/completions',
        { prompt => \@prompt, max_tokens => $steps, temperature => 0, logprobs => 5 });
    is($r->{status}, 200, 'greedy completion with logprobs');
    my $lp = $r->{json}{choices}[0]{logprobs};
    is(scalar @{$lp->{token_logprobs}}, $steps, '... one logprob per token');

    my ($same_p, $same_top, $same_tok, $checked_tok) = (0, 0, 0, 0);
    for my $i (0 .. $steps - 1) {
        my $ref = $ref[$i] or next;
        my $want = log($ref->{top}[0]{p});
        $same_p++ if abs($lp->{token_logprobs}[$i] - $want) < 1e-3;
        my @got = sort { $b <=> $a } values %{$lp->{top_logprobs}[$i]};
        my @exp = map { log($_->{p}) } @{$ref->{top}};
        my $ok = @got == @exp || keys %{$lp->{top_logprobs}[$i]} < @exp;
        for my $k (0 .. $#got) {
            $ok = 0 unless abs($got[$k] - $exp[$k]) < 1e-3;
        }
        $same_top++ if $ok;
        my $text = `$QwenNginx::QWEN detokenize -m $model --ids $ref->{id} 2>/dev/null`;
        chomp $text;
        if (length $text && $text !~ /\x{fffd}|\xef\xbf\xbd/) {
            $checked_tok++;
            my $tok = $lp->{tokens}[$i];
            utf8::encode($tok);
            $same_tok++ if $tok eq $text || "\"$tok\"" eq $text;
        }
    }
    is($same_p, $steps, 'chosen-token logprobs match qwen logits');
    is($same_top, $steps, 'top-5 logprobs match qwen logits');
    ok($checked_tok > 0, 'some tokens are whole characters');
    is($same_tok, $checked_tok, 'the tokens are the ones qwen logits chose');
    is($r->{json}{usage}{completion_tokens}, $steps, '... usage agrees');
}

# ------------------------------------------------------------ stop strings
$r = $n->post_json('/v1/completions',
    { prompt => \@prompt, max_tokens => 12, temperature => 0, logprobs => 1 });
my $full = $r->{json}{choices}[0]{text};
my @toks = @{$r->{json}{choices}[0]{logprobs}{tokens}};
my ($stop) = grep { length $_ >= 2 && $_ =~ /^[\x20-\x7e]+$/ && index($full, $_) > 0 } @toks[3 .. $#toks];
SKIP: {
    skip 'no printable token to stop on in the greedy text', 3 unless defined $stop;
    $r = $n->post_json('/v1/completions',
        { prompt => \@prompt, max_tokens => 12, temperature => 0, stop => [$stop] });
    is($r->{status}, 200, "a stop string (\"$stop\")");
    is($r->{json}{choices}[0]{text}, substr($full, 0, index($full, $stop)),
       '... cuts the text before it');
    is($r->{json}{choices}[0]{finish_reason}, 'stop', '... finish_reason stop');
}

# A stop string that spans two tokens (the end of one, the start of the
# next) cuts the text before it, streamed or not: nothing of it leaks out.
my ($split, $k);
for my $i (2 .. $#toks - 1) {
    my ($a, $b) = ($toks[$i], $toks[$i + 1]);
    next unless $a =~ /^[\x20-\x7e]{2,}$/ && $b =~ /^[\x20-\x7e]{2,}$/;
    my $cand = substr($a, -2) . substr($b, 0, 2);
    next if index($full, $cand) < length(join '', @toks[0 .. $i - 1]);
    ($split, $k) = ($cand, $i);
    last;
}
SKIP: {
    skip 'no two printable tokens in a row in the greedy text', 4 unless defined $split;
    my $want = substr($full, 0, index($full, $split));
    $r = $n->post_json('/v1/completions',
        { prompt => \@prompt, max_tokens => 12, temperature => 0, stop => $split });
    is($r->{json}{choices}[0]{text}, $want, "a stop string across two tokens (\"$split\") cuts before it");
    is($r->{json}{choices}[0]{finish_reason}, 'stop', '... finish_reason stop');
    my $st = $n->stream_json('/v1/completions',
        { prompt => \@prompt, max_tokens => 12, temperature => 0, stop => [$split], stream => JSON::PP::true });
    my @ev = $st->all_events(30);
    my $text = join '', map { my $j = QwenNginx::decode_json_or_undef($_); $j ? ($j->{choices}[0]{text} // '') : '' } @ev;
    is($text, $want, '... streamed too: no piece of it leaks');
    like($ev[-2] // '', qr/"finish_reason":"stop"/, '... finish_reason stop in the stream');
}

# ------------------------------------------------------------------- chat
my $msgs = [{ role => 'user', content => 'Hi there' }];
$r = $n->post_json('/v1/chat/completions', { messages => $msgs, max_tokens => 4 });
is($r->{status}, 200, 'POST /v1/chat/completions');
is($r->{json}{object}, 'chat.completion', '... a chat.completion');
like($r->{json}{id}, qr/^chatcmpl-/, '... with a chatcmpl- id');
is($r->{json}{choices}[0]{message}{role}, 'assistant', '... from the assistant');
is($r->{json}{usage}{completion_tokens}, 4, '... usage counts the tokens');
is($r->{json}{usage}{total_tokens},
   $r->{json}{usage}{prompt_tokens} + 4, '... and the total');
my $think_on = $r->{json}{usage}{prompt_tokens};

$r = $n->post_json('/v1/chat/completions',
    { messages => $msgs, max_tokens => 1, chat_template_kwargs => { enable_thinking => JSON::PP::false } });
is($r->{status}, 200, 'enable_thinking false via chat_template_kwargs');
my $think_off = $r->{json}{usage}{prompt_tokens};
ok($think_off > $think_on, '... adds the empty think block to the prompt')
    or diag "prompt tokens: thinking $think_on, not thinking $think_off";

$r = $n->post_json('/nothink/v1/chat/completions', { messages => $msgs, max_tokens => 1 });
is($r->{json}{usage}{prompt_tokens}, $think_off, 'qwen_enable_thinking off is the default there');

$r = $n->post_json('/v1/chat/completions',
    { model => 'qwen3', messages => $msgs, max_completion_tokens => 2, temperature => 0,
      top_p => 0.9, top_k => 10, min_p => 0.01, presence_penalty => 0.5,
      frequency_penalty => 0.5, repetition_penalty => 1.1, seed => 42 });
is($r->{status}, 200, 'every sampling parameter is accepted');
is($r->{json}{usage}{completion_tokens}, 2, 'max_completion_tokens is honoured');

my @seeded = map {
    $n->post_json('/v1/chat/completions',
        { messages => $msgs, max_tokens => 6, temperature => 1.0, seed => 7 })->{json}{choices}[0]{message}{content}
} 1 .. 2;
is($seeded[0], $seeded[1], 'the same seed gives the same sample');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
