# t/prefix_cache.t - the prefix cache through nginx: a request that starts
# like an earlier one reports the cached prompt tokens (OpenAI usage
# prompt_tokens_details.cached_tokens, Ollama's prompt_eval_count counting
# only evaluated tokens, $qwen_cached_tokens, the /metrics counters) and
# answers exactly as an engine without the cache does; qwen_prefix_cache's
# values are checked at nginx -t.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

# One model with the cache, the same weights (the HF directory) without:
# two engines, whose greedy answers must agree.
my $n = QwenNginx->serve(engine => 'qwen_prefix_cache 8m;',
    http => q{log_format qwen '$request_uri p=$qwen_prompt_tokens cached=$qwen_cached_tokens';},
    server => <<'EOF2');
    access_log %%DIR%%/logs/qwen.log qwen;
    location /v1/ { qwen_api openai; }
    location / { qwen_api ollama; }
    location = /metrics { qwen_metrics; }
    location /nocache/v1/ { qwen_model %%MODELS%%/tiny-f32-hf; qwen_prefix_cache off; qwen_api openai; }
EOF2

my @shared = map { 1000 + 37 * $_ } 0 .. 79;               # 80 tokens
my @a = (@shared, map { 5000 + $_ } 0 .. 19);               # 100
my @b = (@shared, map { 7000 + $_ } 0 .. 19);               # 100

sub complete {
    my ($path, $ids) = @_;
    my $r = $n->post_json($path, { prompt => $ids, max_tokens => 8, temperature => 0 });
    is($r->{status}, 200, "POST $path (" . scalar(@$ids) . ' prompt tokens)');
    return $r->{json};
}

my $first = complete('/v1/completions', \@a);
is($first->{usage}{prompt_tokens_details}{cached_tokens}, 0, 'a new prompt: nothing cached');

my $again = complete('/v1/completions', \@a);
is($again->{usage}{prompt_tokens_details}{cached_tokens}, 96,
   'the same prompt again: 3 blocks of 32 tokens cached');
is($again->{usage}{prompt_tokens}, 100, '... prompt_tokens still counts the whole prompt');
is($again->{choices}[0]{text}, $first->{choices}[0]{text}, '... the same answer');

my $b = complete('/v1/completions', \@b);
is($b->{usage}{prompt_tokens_details}{cached_tokens}, 80,
   'a prompt sharing 80 tokens: 2 whole blocks cached and 16 positions of the third copied');
my $b_ref = complete('/nocache/v1/completions', \@b);
is($b_ref->{usage}{prompt_tokens_details}{cached_tokens}, 0, 'qwen_prefix_cache off: none');
is($b->{choices}[0]{text}, $b_ref->{choices}[0]{text},
   '... and the answer over the cache is the one without it');

# streamed: the usage chunk says it too
my $s = $n->stream_json('/v1/completions', { prompt => \@b, max_tokens => 4, temperature => 0,
                                             stream => JSON::PP::true,
                                             stream_options => { include_usage => JSON::PP::true } });
my @usage = grep { defined $_ && $_->{usage} }
            map { QwenNginx::decode_json_or_undef($_) } $s->all_events(30);
$s->close;
is($usage[-1]{usage}{prompt_tokens_details}{cached_tokens}, 96, 'streamed usage: cached_tokens');

# Ollama: prompt_eval_count counts only the evaluated tokens
my $text = join(' ', map { "word$_" } 1 .. 60) . ' and then';
my $o1 = $n->post_json('/api/generate', { model => 'qwen3', prompt => $text, raw => JSON::PP::true,
                                          stream => JSON::PP::false,
                                          options => { num_predict => 3, temperature => 0 } });
my $o2 = $n->post_json('/api/generate', { model => 'qwen3', prompt => $text, raw => JSON::PP::true,
                                          stream => JSON::PP::false,
                                          options => { num_predict => 3, temperature => 0 } });
ok($o1->{json}{prompt_eval_count} > 64, "ollama: $o1->{json}{prompt_eval_count} prompt tokens evaluated");
my $cached = $o1->{json}{prompt_eval_count} - $o2->{json}{prompt_eval_count};
ok($cached >= 64 && $o2->{json}{prompt_eval_count} >= 1,
   "... the same prompt again: $cached fewer, the last token still evaluated");
is($o2->{json}{response}, $o1->{json}{response}, '... the same answer');

# the counters and the access log
my $m = $n->request('GET', '/metrics')->{body};
my ($hits) = $m =~ /^qwen_prefix_cache_hits_total (\d+)$/m;
my ($queries) = $m =~ /^qwen_prefix_cache_queries_total (\d+)$/m;
is($hits, 0 + 96 + 80 + 0 + 96 + $cached, "qwen_prefix_cache_hits_total $hits");
ok($queries >= 500 && $queries > $hits, "qwen_prefix_cache_queries_total $queries");

my $log = $n->slurp($n->dir . '/logs/qwen.log') // '';
like($log, qr{^/v1/completions p=100 cached=96$}m, '$qwen_cached_tokens in the access log');
like($log, qr{^/v1/completions p=100 cached=0$}m, '... 0 for a new prompt');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;

# ------------------------------------------------------------ nginx -t
for my $c (['qwen_prefix_cache lots;', qr/invalid value "lots" in "qwen_prefix_cache": expected "off" or a size/],
           ['qwen_prefix_cache 2048g;', qr/invalid value "2048g" in "qwen_prefix_cache"/],
           ['qwen_prefix_cache 12000g;', qr/invalid value "12000g"/],
           ['qwen_prefix_cache off; qwen_prefix_cache 1m;', qr/"qwen_prefix_cache" directive is duplicate/]) {
    my $t = QwenNginx->new(http => "qwen_model %%MODELS%%/tiny-f32.gguf;\n$c->[0]\n"
                                 . "server { listen 127.0.0.1:%%PORT%%; location / { qwen_api openai; } }");
    my ($rc, $out) = $t->test_conf;
    isnt($rc, 0, "nginx -t fails: $c->[0]");
    like($out, $c->[1], '... saying why') or diag $out;
}
{
    my $t = QwenNginx->new(http => <<'EOF2');
    qwen_model %%MODELS%%/tiny-f32.gguf;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /a/ { qwen_prefix_cache 1m; qwen_api openai; }
        location /b/ { qwen_prefix_cache 2m; qwen_api openai; }
    }
EOF2
    my ($rc, $out) = $t->test_conf;
    isnt($rc, 0, 'two locations of one model with different prefix caches fail');
    like($out, qr/different engine settings.*prefix cache 1048576\/2097152 bytes/, '... naming both')
        or diag $out;
}

done_testing;
