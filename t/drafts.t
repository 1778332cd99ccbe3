# t/drafts.t - n-gram drafts through nginx: greedy answers are the same with
# drafts and without (per request: "draft": "off"), the /metrics counters
# move, qwen_draft is checked at nginx -t and named in the engine's log line.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

my $n = QwenNginx->serve(engine => 'qwen_draft ngram;', server => 'location /v1/ { qwen_api openai; }
    location / { qwen_api ollama; } location = /metrics { qwen_metrics; }');

like($n->error_log, qr/qwen: engine for model .* drafts ngram/, 'the engine says it drafts');

# a random model's greedy answer rarely repeats itself: held to the 20
# tokens of a phrase the prompt repeats (+30 logit bias), it soon does
my @phrase = map { 3000 + 97 * $_ } 0 .. 19;
my @prompt = ((map { 500 + 13 * $_ } 0 .. 39), (@phrase) x 3);
my %bias = map { $_ => 30 } @phrase;
my %body = (prompt => \@prompt, max_tokens => 96, temperature => 0,
            ignore_eos => JSON::PP::true, logit_bias => \%bias);

my $with = $n->post_json('/v1/completions', { %body });
my $without = $n->post_json('/v1/completions', { %body, draft => 'off' });
is($with->{status}, 200, 'a greedy completion with drafts');
is($without->{status}, 200, '... and one with "draft": "off"');
is($with->{json}{choices}[0]{text}, $without->{json}{choices}[0]{text},
   '... the same text');
is($with->{json}{usage}{completion_tokens}, 96, '... and the same number of tokens');

my $o1 = $n->post_json('/api/generate', { model => 'qwen3', prompt => 'Once upon a time',
                                          stream => JSON::PP::false,
                                          options => { num_predict => 8, temperature => 0 } });
my $o2 = $n->post_json('/api/generate', { model => 'qwen3', prompt => 'Once upon a time',
                                          stream => JSON::PP::false,
                                          options => { num_predict => 8, temperature => 0,
                                                       draft => 'off' } });
is($o1->{json}{response}, $o2->{json}{response}, 'ollama: options.draft off, the same answer');

my $m = $n->request('GET', '/metrics')->{body};
my ($drafted) = $m =~ /^qwen_draft_tokens_total (\d+)$/m;
my ($taken) = $m =~ /^qwen_draft_accepted_tokens_total (\d+)$/m;
ok($drafted > 0, "qwen_draft_tokens_total $drafted");
ok(defined $taken && $taken <= $drafted, "qwen_draft_accepted_tokens_total $taken");

my $bad = $n->post_json('/v1/completions', { prompt => 'hi', draft => 'eagle' });
is($bad->{status}, 400, 'an unknown draft kind is a 400');
like($bad->{json}{error}{message}, qr/'draft' must be "ngram" or "off"/, '... saying what is allowed');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;

my $t = QwenNginx->new(http => "qwen_model %%MODELS%%/tiny-f32.gguf;\nqwen_draft eagle;\n"
                             . "server { listen 127.0.0.1:%%PORT%%; location / { qwen_api openai; } }");
my ($rc, $out) = $t->test_conf;
isnt($rc, 0, 'nginx -t fails: qwen_draft eagle');
like($out, qr/invalid value "eagle" in .*nginx.conf:2/, "... saying which value and where") or diag $out;

done_testing;
