# t/quota.t - token quotas (`qwen_limit_tokens`): a generation reserves its
# prompt tokens plus its max_tokens (the rest of the context without one)
# before it is admitted, is refused with 429, Retry-After and a JSON error in
# the API's format when its key's budget cannot cover that, and gets back
# what it did not generate when it ends (normally, at an end-of-generation
# token, cancelled by the client, refused by a full queue). OpenAI's
# x-ratelimit-*-tokens headers on every answer, the $qwen_limit_tokens_*
# variables in the access log, keys from any variable (SageMaker's custom
# attributes), two keys independent, an empty key not limited, budgets kept
# across a reload, and the directive's errors at nginx -t.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use Time::HiRes qw(time sleep);

QwenNginx::require_built();

my $T = JSON::PP::true;

# ---------------------------------------------------------- nginx -t errors
my %bad = (
    'qwen_limit_tokens key=$http_x_key rate=100/m;'
        => qr/qwen_limit_tokens needs "zone=NAME:SIZE"/,
    'qwen_limit_tokens zone=a:1m rate=100/m;'
        => qr/qwen_limit_tokens needs "key=\$variable"/,
    'qwen_limit_tokens zone=a:1m key=$http_x_key;'
        => qr/qwen_limit_tokens needs "rate=N\/m"/,
    'qwen_limit_tokens zone=a key=$http_x_key rate=100/m;'
        => qr/"zone=a": the zone needs a name and a size/,
    'qwen_limit_tokens zone=a:lots key=$http_x_key rate=100/m;'
        => qr/invalid zone size "lots"/,
    'qwen_limit_tokens zone=a:4k key=$http_x_key rate=100/m;'
        => qr/zone "a" is too small: at least \d+k/,
    'qwen_limit_tokens zone=a:1m key=$http_x_key rate=100/w;'
        => qr/invalid rate "rate=100\/w": use tokens per second, minute, hour or day/,
    'qwen_limit_tokens zone=a:1m key=$http_x_key rate=-5/m;'
        => qr/invalid rate "rate=-5\/m"/,
    'qwen_limit_tokens zone=a:1m key=$http_x_key rate=100/m burst=0;'
        => qr/invalid burst "burst=0"/,
    'qwen_limit_tokens zone=a:1m key= rate=100/m;'
        => qr/the key is empty/,
    'qwen_limit_tokens zone=a:1m key=$http_x_key rate=100/m delay=3;'
        => qr/invalid parameter "delay=3"/,
    "qwen_limit_tokens zone=a:1m key=\$http_x_key rate=100/m;\n"
        . '        qwen_limit_tokens zone=b:1m key=$http_x_key rate=100/m;'
        => qr/"qwen_limit_tokens" directive is duplicate/,
);
my $c = QwenNginx->new();
for my $d (sort keys %bad) {
    $c->write_conf(http => <<"EOF2");
    qwen_model %%MODELS%%/tiny-f32.gguf;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ { qwen_api openai; $d }
    }
EOF2
    my ($rc, $out) = $c->test_conf;
    isnt($rc, 0, "nginx -t fails: " . ($d =~ s{\n\s*}{ }gr));
    like($out, $bad{$d}, '... saying why') or diag $out;
}
$c->write_conf(http => <<'EOF2');
    qwen_model %%MODELS%%/tiny-f32.gguf;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /a/ { qwen_limit_tokens zone=z:1m key=$http_x_key rate=100/m; qwen_api openai; }
        location /b/ { qwen_limit_tokens zone=z:1m key=$http_x_key rate=200/m; qwen_api openai; }
    }
EOF2
my ($rc, $out) = $c->test_conf;
like($out, qr/zone "z" is already used with key=\$http_x_key rate=100\/m burst=100: .*same key, rate and burst/,
     'one zone with two rates fails nginx -t');
$c->write_conf(http => <<'EOF2');
    qwen_model %%MODELS%%/tiny-f32.gguf;
    qwen_limit_tokens zone=z:1m key=$http_x_key rate=100/m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /a/ { qwen_api openai; }
        location /b/ { qwen_limit_tokens zone=z:1m key=$http_x_key rate=100/m; qwen_api ollama; }
        location /c/ { qwen_limit_tokens off; qwen_api openai; }
    }
EOF2
($rc, $out) = $c->test_conf;
is($rc, 0, 'inherited, the same zone shared, and "off" pass nginx -t') or diag $out;
undef $c;

# ------------------------------------------------------------------ server
# 1000/d leaks 0.012 tokens a second: within this test the numbers are exact
my $n = QwenNginx->new(http => <<'EOF2');
    qwen_model %%MODELS%%/tiny-f32.gguf;
    qwen_ctx 256;
    qwen_threads 1;
    qwen_slots 1;
    qwen_queue 0;
    qwen_prefix_cache off;
    log_format quota '$http_x_key $status $qwen_limit_tokens_status '
                     'reserved=$qwen_limit_tokens_reserved '
                     'used=$qwen_limit_tokens_used '
                     'refunded=$qwen_limit_tokens_refunded '
                     'remaining=$qwen_limit_tokens_remaining '
                     'limit=$qwen_limit_tokens_limit';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/logs/quota.log quota;
        qwen_limit_tokens zone=tokens:1m key=$http_x_key rate=1000/d;
        location /v1/ { qwen_api openai; }
        location /api/ { qwen_api ollama; }
        location /small/ {
            qwen_limit_tokens zone=small:64k key=$http_x_key rate=1000/d burst=200;
            location /small/v1/ { qwen_api openai; }
            location /small/api/ { qwen_api ollama; }
        }
        location /slow/v1/ {
            qwen_limit_tokens zone=slow:64k key=$http_x_key rate=60/m burst=100;
            qwen_api openai;
        }
        location /fast/v1/ {
            qwen_limit_tokens zone=fast:64k key=$http_x_key rate=60/s burst=50;
            qwen_api openai;
        }
        location / {
            qwen_limit_tokens zone=sm:64k key=$http_x_amzn_sagemaker_custom_attributes rate=1000/d;
            qwen_api sagemaker;
        }
        location = /health { qwen_health; }
    }
EOF2
$n->start;

my $log = $n->dir . '/logs/quota.log';
sub log_lines { my $t = $n->slurp($log) // ''; return split /\n/, $t; }

sub hdr { my ($r, $k) = @_; return $r->{headers}{"x-ratelimit-$k-tokens"}; }

# a cancelled generation frees its slot within an engine step: wait for it
# (one slot, no queue: the next request would be refused as queue full)
sub wait_idle {
    my $deadline = time + 10;
    while (time < $deadline) {
        my $h = $n->get_json('/health');
        return 1 if $h->{json} && !$h->{json}{running} && !$h->{json}{waiting};
        sleep 0.05;
    }
    return 0;
}

# 1. a stream reserves prompt + max_tokens at once, and uses them all
my $A = { 'X-Key' => 'key-a' };
my $s = $n->stream_json('/v1/completions',
    { prompt => [9707, 11, 1879], max_tokens => 40, ignore_eos => $T, stream => $T,
      stream_options => { include_usage => $T } }, $A);
ok($s->wait_head(10), 'a stream starts');
is($s->status, 200, '... 200');
is($s->headers->{'x-ratelimit-limit-tokens'}, '1000', '... x-ratelimit-limit-tokens: 1000');
is($s->headers->{'x-ratelimit-remaining-tokens'}, '957',
   '... x-ratelimit-remaining-tokens: 957 (3 prompt + 40 max_tokens reserved)');
like($s->headers->{'x-ratelimit-reset-tokens'}, qr/^1h1m5\d(\.\d+)?s$/,
     "... x-ratelimit-reset-tokens: ${\($s->headers->{'x-ratelimit-reset-tokens'})} (43 tokens at 1000 a day: 1h1m55.2s)");
my @ev = $s->all_events(30);
is($ev[-1], '[DONE]', '... and ends');
my ($usage) = grep { /"usage":\{/ } @ev;
like($usage // '', qr/"completion_tokens":40\b/, '... with its 40 tokens');

# 2. a plain answer that ends early at an end-of-generation token is
#    refunded what it did not generate
my $r = $n->post_json('/v1/completions',
    { prompt => [9707, 11], max_tokens => 100, temperature => 0,
      logit_bias => { 151645 => 100 } }, $A);
is($r->{status}, 200, 'a request forced to end at once');
my $used = $r->{json}{usage}{prompt_tokens} + $r->{json}{usage}{completion_tokens};
is($r->{json}{choices}[0]{finish_reason}, 'stop', '... ends with "stop"');
ok($r->{json}{usage}{completion_tokens} < 5, "... after $r->{json}{usage}{completion_tokens} token(s)");
is(hdr($r, 'remaining'), 1000 - 43 - $used,
   "... its answer says ${\(1000 - 43 - $used)} remain: 102 reserved, $used used, the rest refunded");
# the line of the request that reserved this much
sub log_line {
    my $re = shift;
    my $deadline = time + 10;
    while (1) {
        my ($line) = grep { /$re/ } log_lines();
        return $line if defined $line || time > $deadline;
        sleep 0.05;
    }
}
my $line = log_line(qr/^key-a \S+ \S+ reserved=102 /) // '';
like($line, qr/^key-a 200 PASSED reserved=102 used=$used refunded=${\(102 - $used)} remaining=${\(957 - $used)} limit=1000$/,
     '... and the access log has the numbers');
my $charged = 43 + $used;

# 3. max_tokens unset: the rest of the context is reserved
$s = $n->stream_json('/v1/completions',
    { prompt => [9707, 11, 1879, 11], stream => $T, ignore_eos => $T }, $A);
ok($s->wait_head(10), 'a stream without max_tokens');
is($s->headers->{'x-ratelimit-remaining-tokens'}, 1000 - $charged - 256,
   '... reserves the whole context (qwen_ctx 256)');
# 4. a client gone mid-stream: only what was generated is charged
ok(defined $s->next_event(10) && defined $s->next_event(10), '... two events, then the client goes');
$s->close;
$line = log_line(qr/reserved=256 /) // '';
my ($cu, $cr) = $line =~ /reserved=256 used=(\d+) refunded=(\d+)/;
ok(defined $cu && $cu >= 4 + 2 && $cu < 256 && $cu + $cr == 256,
   "... charged ${\($cu // '?')} (prompt and tokens made), ${\($cr // '?')} refunded") or diag $line;
$charged += $cu // 0;
ok(wait_idle(), '... and its slot is free');
$r = $n->get_json('/v1/models');
ok(!defined hdr($r, 'remaining'), 'no key: no x-ratelimit headers');
$r = $n->request('GET', '/v1/models', undef, $A);
is($r->{status}, 200, 'GET /v1/models with the key');
is(hdr($r, 'remaining'), 1000 - $charged, "... says ${\(1000 - $charged)} remain (every answer has the headers)");

# 5. refused: the budget cannot cover prompt + max_tokens (a zone of 200)
my $A2 = { 'X-Key' => 'key-a2' };
$r = $n->post_json('/small/v1/completions', { prompt => [9707, 11], max_tokens => 150, ignore_eos => $T }, $A2);
is($r->{status}, 200, 'burst=200: 152 tokens pass');
is(hdr($r, 'remaining'), 48, '... 48 remain');
$r = $n->post_json('/small/v1/completions', { prompt => [9707, 11], max_tokens => 47 }, $A2);
is($r->{status}, 429, 'asking for 49 tokens with 48 left: 429');
is($r->{json}{error}{type}, 'tokens', '... OpenAI\'s type "tokens"');
is($r->{json}{error}{code}, 'rate_limit_exceeded', '... code rate_limit_exceeded');
like($r->{json}{error}{message}, qr/this key may use 48 tokens now, the request needs 49 \(2 prompt \+ 47 max_tokens\)/,
     '... the message gives the numbers');
like($r->{headers}{'retry-after'} // '', qr/^\d+$/, "... Retry-After: ${\($r->{headers}{'retry-after'} // '')}");
ok(($r->{headers}{'retry-after'} // 0) >= 75 && ($r->{headers}{'retry-after'} // 0) <= 87,
   '... the time one token takes to come back at 1000 a day (86.4 s, less what came back since)');
is($r->{json}{error}{retry_after}, $r->{headers}{'retry-after'}, '... and in the body');
is(hdr($r, 'remaining'), 48, '... nothing reserved');
$line = log_line(qr/^key-a2 429 /) // '';
like($line, qr/^key-a2 429 REJECTED reserved=- used=- refunded=- remaining=48 limit=200$/,
     '... logged REJECTED');
$r = $n->post_json('/small/v1/completions', { prompt => [9707, 11], max_tokens => 46, ignore_eos => $T }, $A2);
is($r->{status}, 200, 'asking for exactly 48: served');
is(hdr($r, 'remaining'), 0, '... 0 remain');

# 6. another key has its own budget; no key is not limited
my $B = { 'X-Key' => 'key-b' };
$r = $n->post_json('/v1/completions', { prompt => [9707, 11], max_tokens => 8, ignore_eos => $T }, $B);
is($r->{status}, 200, 'key B is served while key A is spent');
is(hdr($r, 'remaining'), 990, '... from its own 1000');
$r = $n->post_json('/v1/completions', { prompt => [9707, 11], max_tokens => 200, ignore_eos => $T });
is($r->{status}, 200, 'no key: not limited');
ok(!defined hdr($r, 'limit'), '... no x-ratelimit headers');
$r = $n->post_json('/v1/completions', { prompt => [9707, 11], max_tokens => 200, ignore_eos => $T },
                   { 'X-Key' => '' });
is($r->{status}, 200, 'an empty key: not limited either');

# 7. too large for the bucket ever: 429 without Retry-After
$r = $n->post_json('/v1/completions', { prompt => [9707, 11], max_tokens => 150 },
                   { 'X-Key' => 'key-c' });
is($r->{status}, 200, 'key C: 152 tokens pass in the 1000-token zone');
$r = $n->post_json('/slow/v1/completions', { prompt => [9707, 11], max_tokens => 150 },
                   { 'X-Key' => 'key-c' });
is($r->{status}, 429, '... but not where a key may use 100 at once (burst=100)');
like($r->{json}{error}{message}, qr/request too large.*needs 152 tokens.*more than the 100 a key may use at once/,
     '... "request too large", with the numbers');
ok(!defined $r->{headers}{'retry-after'}, '... and no Retry-After: waiting would not help');

# 8. Retry-After and reset at 1 token a second
$r = $n->post_json('/slow/v1/completions', { prompt => [9707, 11], max_tokens => 78, ignore_eos => $T },
                   { 'X-Key' => 'key-d' });
is($r->{status}, 200, 'burst=100 at 60/m: 80 tokens pass');
my ($rm, $rs) = (hdr($r, 'reset') // '') =~ /^1m(\d+(?:\.\d+)?)s$/ ? (1, $1) : (0, 0);
ok($rm && $rs > 0 && $rs <= 20, "... reset in at most 80 s (the 80 tokens at 1 a second): ${\(hdr($r, 'reset'))}");
$r = $n->post_json('/slow/v1/completions', { prompt => [9707, 11], max_tokens => 48 },
                   { 'X-Key' => 'key-d' });
is($r->{status}, 429, '50 more: 429');
ok(($r->{headers}{'retry-after'} // 0) >= 15 && $r->{headers}{'retry-after'} <= 30,
   "... Retry-After: $r->{headers}{'retry-after'} (30 tokens short at 1 a second, less what came back since)");

# the fast zone gives a token back every 17 ms: Retry-After is honest
# (a 47-token prompt and one token: one engine step, little refills meanwhile)
my $fast = { prompt => [(9707) x 47], max_tokens => 1, ignore_eos => $T };
$r = $n->post_json('/fast/v1/completions', $fast, { 'X-Key' => 'key-e' });
is($r->{status}, 200, 'burst=50 at 60/s: 48 tokens pass');
$r = $n->post_json('/fast/v1/completions', $fast, { 'X-Key' => 'key-e' });
is($r->{status}, 429, '... 48 more at once: 429');
is($r->{headers}{'retry-after'}, '1', '... Retry-After: 1');
sleep 1.05;
$r = $n->post_json('/fast/v1/completions', $fast, { 'X-Key' => 'key-e' });
is($r->{status}, 200, '... served after that second');

# 9. a request the engine refuses (queue full) gets everything back
my $F = { 'X-Key' => 'key-f' };
$s = $n->stream_json('/v1/completions',
    { prompt => [9707, 11], max_tokens => 200, ignore_eos => $T, stream => $T }, $F);
ok(defined $s->next_event(10), 'key F: a long stream holds the only slot');
$r = $n->post_json('/v1/completions', { prompt => [9707, 11], max_tokens => 100 }, $F);
is($r->{status}, 429, '... a second request finds the queue full (429)');
is($r->{json}{error}{type}, 'overloaded_error', '... overloaded_error, not the quota');
is(hdr($r, 'remaining'), 1000 - 202, '... and its 102 tokens are back at once');
$s->close;
log_line(qr/^key-f 200 PASSED reserved=202 /);
ok(wait_idle(), '... the slot is free again');

# 10. Ollama: a zone shared with an OpenAI location, Ollama's error format
my $G = { 'X-Key' => 'key-g' };
my $gen = { model => 'qwen3', prompt => 'Hello there', raw => $T, stream => JSON::PP::false,
            options => { num_predict => 6, temperature => 0 } };
$r = $n->post_json('/small/api/generate', $gen, $G);
is($r->{status}, 200, 'Ollama /api/generate with a key');
my $p = $r->{json}{prompt_eval_count} // 0;
my $og = $p + ($r->{json}{eval_count} // 0);
is(hdr($r, 'remaining'), 200 - $og,
   "... charged its prompt_eval_count + eval_count ($og)");
$r = $n->request('GET', '/small/v1/models', undef, $G);
is(hdr($r, 'remaining'), 200 - $og, '... from the budget the OpenAI location shares');
$gen->{options}{num_predict} = 200 - $og - $p + 1;
$r = $n->post_json('/small/api/generate', $gen, $G);
is($r->{status}, 429, "... one token more than the rest of the budget: 429");
like($r->{json}{error} // '', qr/rate limit reached for tokens: this key may use ${\(200 - $og)} tokens now/,
     '... Ollama\'s {"error": "..."}');
ok(!ref $r->{json}{error}, '... a string, as Ollama writes errors');
like($r->{headers}{'retry-after'} // '', qr/^\d+$/, '... with Retry-After');
$gen->{options}{num_predict}--;
$r = $n->post_json('/small/api/generate', $gen, $G);
is($r->{status}, 200, '... exactly the rest: served');

# 11. SageMaker: the key from the custom attributes header
my $H = { 'X-Amzn-SageMaker-Custom-Attributes' => 'tenant=h' };
$r = $n->post_json('/invocations', { prompt => [9707, 11], max_tokens => 3, ignore_eos => $T }, $H);
is($r->{status}, 200, 'SageMaker /invocations with custom attributes');
is(hdr($r, 'remaining'), 995, '... limited by $http_x_amzn_sagemaker_custom_attributes');

# 12. a reload keeps the budgets
$r = $n->request('GET', '/v1/models', undef, $A);
my $before = hdr($r, 'remaining');
ok($n->reload, 'reload');
$r = $n->request('GET', '/v1/models', undef, $A);
is(hdr($r, 'remaining'), $before, "... key A still has $before");
$r = $n->request('GET', '/v1/models', undef, $B);
is(hdr($r, 'remaining'), 990, '... key B still has 990');

# a reload that changes a zone's key is refused, the budgets stay
my $conf = $n->slurp($n->conf_file);
(my $other = $conf) =~ s/zone=tokens:1m key=\$http_x_key/zone=tokens:1m key=\$http_x_other/;
open my $fh, '>', $n->conf_file or die; print $fh $other; close $fh;
ok(!$n->reload(timeout => 1), 'a reload with another key for the zone starts no workers');
like($n->error_log, qr/qwen_limit_tokens zone "tokens" uses the key "\$http_x_other" while it used "\$http_x_key" before the reload/,
     '... and says why');
$r = $n->request('GET', '/v1/models', undef, $B);
is(hdr($r, 'remaining'), 990, '... key B still has 990');

my @bad = grep { !/zone "tokens" uses the key/ } $n->crashes;
is_deeply(\@bad, [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
