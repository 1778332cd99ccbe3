# t/ops.t - the operations endpoints and the $qwen_ variables: /health (ok,
# saturated with 200 or 503 by configuration), /metrics in Prometheus text
# format (checked line by line) whose counters move by exactly what the
# requests did and which sums every worker, /tokenize and /detokenize with
# their errors, $qwen_ variables in an access log, and the directives'
# configuration errors.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use Time::HiRes qw(time sleep);

QwenNginx::require_built();

my $T = JSON::PP::true;
my $msgs = [{ role => 'user', content => 'Hello there' }];

# ------------------------------------------------ a Prometheus text check
# Returns (errors, samples): samples maps 'name{labels}' to the value.
sub prometheus {
    my $text = shift;
    my (@err, %type, %samples, %seen_family);
    push @err, 'does not end with a newline' unless $text =~ /\n\z/;
    my $name_re = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
    my $value_re = qr/(?:[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|[-+]Inf|NaN)/;
    my $ln = 0;
    for my $line (split /\n/, $text) {
        $ln++;
        next if $line eq '';
        if ($line =~ /^# (HELP|TYPE) ($name_re) ?(.*)$/) {
            my ($kind, $name, $rest) = ($1, $2, $3);
            if ($kind eq 'TYPE') {
                push @err, "line $ln: bad type '$rest'" unless $rest =~ /^(counter|gauge|histogram|summary|untyped)$/;
                push @err, "line $ln: second TYPE for $name" if $type{$name};
                push @err, "line $ln: TYPE after samples of $name" if $seen_family{$name};
                $type{$name} = $rest;
            }
            next;
        }
        next if $line =~ /^#/;
        if ($line !~ /^($name_re)(\{(.*)\})? ($value_re)(?: -?\d+)?$/) {
            push @err, "line $ln: not a sample: $line";
            next;
        }
        my ($name, $labels, $value) = ($1, $3 // '', $4);
        my @pairs;
        my $l = $labels;
        while (length $l) {
            if ($l =~ s/^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)//) {
                push @pairs, "$1=$2";
            } else {
                push @err, "line $ln: bad labels {$labels}";
                last;
            }
        }
        (my $family = $name) =~ s/_(bucket|sum|count)$// if !$type{$name};
        $family //= $name;
        $family = $name if $type{$name};
        push @err, "line $ln: $name has no TYPE" unless $type{$family};
        if (($type{$family} // '') eq 'histogram' && $name =~ /_bucket$/) {
            push @err, "line $ln: bucket without le" unless grep { /^le=/ } @pairs;
        }
        $seen_family{$family} = 1;
        my $key = $name . (@pairs ? '{' . join(',', @pairs) . '}' : '');
        push @err, "line $ln: duplicate series $key" if exists $samples{$key};
        $samples{$key} = $value;
    }
    # histograms: cumulative buckets, +Inf bucket = _count
    for my $h (grep { $type{$_} eq 'histogram' } keys %type) {
        my @bounds;
        for my $k (keys %samples) {
            next unless $k =~ /^\Q$h\E_bucket\{(.*)\}$/;
            my ($le) = $1 =~ /(?:^|,)le=([^,]*)/;
            push @bounds, [$le // '', $samples{$k}];
        }
        my $num = sub { $_[0] eq '+Inf' ? 9e99 : $_[0] };
        @bounds = sort { $num->($a->[0]) <=> $num->($b->[0]) } @bounds;
        push @err, "$h: no buckets" unless @bounds;
        for my $i (1 .. $#bounds) {
            push @err, "$h: buckets not cumulative at le=$bounds[$i][0]"
                if $bounds[$i][1] < $bounds[$i - 1][1];
        }
        push @err, "$h: no +Inf bucket" unless @bounds && $bounds[-1][0] eq '+Inf';
        push @err, "$h: +Inf bucket != _count"
            unless @bounds && defined $samples{"${h}_count"} && $bounds[-1][1] == $samples{"${h}_count"};
        push @err, "$h: no _sum" unless defined $samples{"${h}_sum"};
    }
    return (\@err, \%samples);
}

# -------------------------------------------------------- two workers
my $n = QwenNginx->serve(workers => 2, engine => 'qwen_threads 1;', listen => 'reuseport',
    http => q{log_format qwen '$request_uri $status p=$qwen_prompt_tokens c=$qwen_completion_tokens '
                              'ttft=$qwen_ttft tps=$qwen_tokens_per_second f=$qwen_finish_reason '
                              'q=$qwen_queue_time';},
    server => <<'EOF2');
    access_log %%DIR%%/logs/qwen.log qwen;
    location /v1/ { qwen_api openai; }
    location / { qwen_api ollama; }
    location = /health { qwen_health; }
    location = /metrics { qwen_metrics; }
    location = /tokenize { qwen_tokenize; }
    location = /detokenize { qwen_detokenize; }
    location = /static { return 200 'static'; }
EOF2

sub scrape {
    my $r = $n->request('GET', '/metrics');
    my ($err, $s) = prometheus($r->{body});
    return ($r, $err, $s);
}

my ($r, $err, $m0) = scrape();
is($r->{status}, 200, 'GET /metrics');
is($r->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
   '... Prometheus text format 0.0.4');
is_deeply($err, [], '... valid exposition syntax (HELP/TYPE, samples, histograms)');
for my $f (qw(qwen_num_requests_running qwen_num_requests_waiting qwen_kv_cache_usage_ratio
              qwen_prompt_tokens_total qwen_generation_tokens_total
              qwen_time_to_first_token_seconds_count qwen_inter_token_latency_seconds_count
              qwen_e2e_request_latency_seconds_count qwen_request_queue_time_seconds_count)) {
    ok(exists $m0->{$f}, "... has $f");
}
ok(exists $m0->{'qwen_request_success_total{finished_reason=length}'}, '... finished requests by reason');
is($m0->{qwen_generation_tokens_total}, 0, '... all zero at the start');
$r = $n->request('HEAD', '/metrics');
is($r->{status}, 200, 'HEAD /metrics');

# three requests of 4 tokens, one stop string, over both workers
my $prompt_total = 0;
for (1 .. 3) {
    $r = $n->post_json('/v1/completions', { prompt => 'Hello world', max_tokens => 4 });
    $prompt_total += $r->{json}{usage}{prompt_tokens};
}
$r = $n->post_json('/api/generate', { prompt => 'Hi', stream => JSON::PP::false,
                                     options => { num_predict => 3 } });
$prompt_total += $r->{json}{prompt_eval_count};
my ($r2, $err2, $m1);
my %seen;
for (1 .. 6) {
    ($r2, $err2, $m1) = scrape();
    $seen{$m1->{qwen_generation_tokens_total}}++;
}
is_deeply($err2, [], 'after requests: still valid');
is_deeply([keys %seen], [15], 'every scrape, on either worker, counts all 15 generated tokens')
    or diag explain \%seen;
is($m1->{qwen_prompt_tokens_total}, $prompt_total, "... and all $prompt_total prompt tokens");
is($m1->{'qwen_request_success_total{finished_reason=length}'}, 4, '... 4 finished by length');
is($m1->{qwen_time_to_first_token_seconds_count}, 4, '... 4 TTFT observations');
is($m1->{qwen_e2e_request_latency_seconds_count}, 4, '... 4 end-to-end');
is($m1->{qwen_request_queue_time_seconds_count}, 4, '... 4 queue times');
is($m1->{qwen_inter_token_latency_seconds_count}, 11, '... 11 inter-token gaps (3+3+3+2)');
ok($m1->{qwen_e2e_request_latency_seconds_sum} > 0, '... latency sums move');
my @pids = $n->error_log =~ /\[info\] (\d+)#\d+: .*qwen: done/g;
my %workers = map { $_ => 1 } @pids;
diag 'requests served by ' . scalar(keys %workers) . ' worker(s)';

# gauges: a running stream, seen from any worker
my $s = $n->stream_json('/v1/completions', { prompt => [1, 2, 3], max_tokens => 500,
                                            ignore_eos => $T, stream => $T });
ok(defined $s->next_event(10), 'a long stream runs');
my ($busy_ok, $kv_ok) = (1, 1);
for (1 .. 4) {
    my (undef, undef, $m) = scrape();
    $busy_ok = 0 unless $m->{qwen_num_requests_running} + $m->{qwen_num_requests_waiting} == 1;
    $kv_ok = 0 unless $m->{qwen_kv_cache_usage_ratio} > 0 || $m->{qwen_num_requests_waiting} == 1;
}
ok($busy_ok, 'every scrape shows the one request running (or just queued)');
ok($kv_ok, '... and KV cache in use');

$s->close;
sleep 1.3;    # the gauges are refreshed every second
my (undef, undef, $m2) = scrape();
is($m2->{qwen_num_requests_running}, 0, 'after the client left: nothing running');
is($m2->{'qwen_request_success_total{finished_reason=cancelled}'}, 1, '... counted as cancelled');

# a reload keeps the zone: counters go on, the new workers report gauges
ok($n->reload, 'nginx -s reload');
my (undef, $err3, $m3) = scrape();
is_deeply($err3, [], 'after the reload: valid');
is($m3->{qwen_generation_tokens_total}, $m2->{qwen_generation_tokens_total},
   '... the counters survived the reload');
$r = $n->post_json('/v1/completions', { prompt => 'Hello world', max_tokens => 2 });
(undef, undef, $m3) = scrape();
is($m3->{qwen_generation_tokens_total}, $m2->{qwen_generation_tokens_total} + 2,
   '... and move on');

# ---------------------------------------------------------------- health
$r = $n->get_json('/health');
is($r->{status}, 200, 'GET /health: 200');
is($r->{json}{status}, 'ok', '... "ok"');
is($r->{json}{slots}, 4, '... with the slots');
$r = $n->request('POST', '/health', '{}');
is($r->{status}, 405, 'POST /health: 405');
like($r->{body}, qr/"error":\{"message"/, '... as a JSON error');

# ----------------------------------------------------- tokenize round trip
my $text = "Hello, world! Qwen3 says \x{4f60}\x{597d} \x{1f600}.";
my $bytes = $text;
utf8::encode($bytes);
$r = $n->post_json('/tokenize', '{"prompt":' . JSON::PP->new->ascii->encode([$text]) =~ s/^\[|\]$//gr . ',"return_token_strs":true}');
is($r->{status}, 200, 'POST /tokenize');
my $ids = $r->{json}{tokens};
ok(ref $ids eq 'ARRAY' && @$ids > 5, '... token ids (' . scalar(@{$ids // []}) . ')');
is($r->{json}{count}, scalar @$ids, '... count');
is($r->{json}{max_model_len}, 512, '... max_model_len = qwen_ctx');
is(scalar @{$r->{json}{token_strs}}, scalar @$ids, '... token_strs');
$r = $n->post_json('/detokenize', { tokens => $ids });
is($r->{status}, 200, 'POST /detokenize');
is($r->{json}{prompt}, $text, '... gives the text back');

$r = $n->post_json('/tokenize', { messages => $msgs });
my $chat_count = $r->{json}{count};
$r = $n->post_json('/v1/chat/completions', { messages => $msgs, max_tokens => 1 });
is($chat_count, $r->{json}{usage}{prompt_tokens}, '/tokenize of messages counts the chat prompt');

for my $b (['/tokenize', '{"prompt":', 400, 'broken JSON'],
           ['/tokenize', '{"text":"x"}', 400, 'no prompt'],
           ['/tokenize', '{"prompt":"x","model":"gpt-4"}', 404, 'an unknown model'],
           ['/detokenize', '{"tokens":[1,99999999]}', 400, 'an id outside the vocabulary'],
           ['/detokenize', '{"tokens":"x"}', 400, 'tokens not an array']) {
    $r = $n->post_json($b->[0], $b->[1]);
    is($r->{status}, $b->[2], "$b->[0], $b->[3]: $b->[2]");
    ok(ref(($r->{json} // {})->{error}) eq 'HASH', '... OpenAI-style JSON error');
}
$r = $n->get_json('/tokenize');
is($r->{status}, 405, 'GET /tokenize: 405');

# ----------------------------------------------------- $qwen_ variables
$r = $n->post_json('/v1/chat/completions', { messages => $msgs, max_tokens => 7 });
my $u = $r->{json}{usage};
$r = $n->post_json('/v1/completions', { prompt => [9707, 11, 1879, 374, 264], max_tokens => 12,
                                       temperature => 0 });
my $full = $r->{json}{choices}[0]{text};
my ($stop) = $full =~ /^.{2,}?(\S{2,})/s;
my $stopped;
if (defined $stop) {
    $stopped = $n->post_json('/v1/completions', { prompt => [9707, 11, 1879, 374, 264],
        max_tokens => 12, temperature => 0, stop => [$stop] })->{json};
}
$n->request('GET', '/static');
$n->stop;

my $log = $n->slurp($n->dir . '/logs/qwen.log');
like($log, qr{^/v1/chat/completions 200 p=$u->{prompt_tokens} c=7 ttft=\d+\.\d{3} tps=\d+\.\d f=length q=\d+\.\d{3}$}m,
     'access log: $qwen_ variables of a chat completion match its usage');
SKIP: {
    skip 'no stop string in the greedy text', 1 unless $stopped && $stopped->{choices}[0]{finish_reason} eq 'stop';
    my $c = $stopped->{usage}{completion_tokens};
    like($log, qr{^/v1/completions 200 p=5 c=$c ttft=\S+ tps=\S+ f=stop }m,
         "... a stop string: f=stop, c=$c as in usage");
}
like($log, qr{^/api/generate 200 p=\d+ c=3 ttft=\S+ tps=\S+ f=length }m, '... an Ollama generate');
like($log, qr{^/v1/completions 200 p=3 c=\d+ ttft=\S+ tps=\S+ f=cancelled }m, '... the stream the client left: cancelled');
like($log, qr{^/static 200 p=- c=- ttft=- tps=- f=- q=-$}m, '... empty outside qwen requests');
like($log, qr{^/tokenize 200 p=- c=- }m, '... and for /tokenize');
is_deeply([$n->crashes], [], 'no worker crashed, no alerts');

# -------------------------------------------------- saturated, 503
$n = QwenNginx->serve(engine => 'qwen_threads 1; qwen_slots 1; qwen_queue 0;', server => <<'EOF2');
    location /v1/ { qwen_api openai; }
    location = /health { qwen_health; }
    location = /health503 { qwen_health saturated=503; }
    location = /metrics { qwen_metrics; }
EOF2
$s = $n->stream_json('/v1/completions', { prompt => [1, 2, 3], max_tokens => 500,
                                         ignore_eos => $T, stream => $T });
ok(defined $s->next_event(10), 'the only slot is busy, the queue is 0');
my $t = time;
$r = $n->get_json('/health');
ok(time - $t < 0.5, '/health answers at once');
is($r->{status}, 200, '/health: 200 by default when saturated');
is($r->{json}{status}, 'saturated', '... "saturated"');
$r = $n->get_json('/health503');
is($r->{status}, 503, 'qwen_health saturated=503: 503');
is($r->{json}{status}, 'saturated', '... "saturated"');
$r = $n->post_json('/v1/completions', { prompt => [1], max_tokens => 1 });
is($r->{status}, 429, '... indeed a request is refused');
$s->close;
is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;

# -------------------------------------------------- configuration errors
for my $c (['location /h { qwen_health maybe; }', qr/invalid parameter "maybe" in "qwen_health"/],
           ['location /h { qwen_api openai; qwen_health; }', qr/"qwen_health" cannot be combined/],
           ['location /h { qwen_tokenize x; }', qr/invalid number of arguments/],
           ['location /h { qwen_api nope; }', qr/unknown API "nope".*"ollama".*"sagemaker"/]) {
    $n = QwenNginx->new(http => "qwen_model %%MODELS%%/tiny-f32.gguf;\n"
                              . "server { listen 127.0.0.1:%%PORT%%; $c->[0] }");
    my ($rc, $out) = $n->test_conf;
    isnt($rc, 0, "nginx -t fails: $c->[0]");
    like($out, $c->[1], '... saying why') or diag $out;
}
$n = QwenNginx->new(http => 'server { listen 127.0.0.1:%%PORT%%; location /h { qwen_health; } }');
my ($rc, $out) = $n->test_conf;
like($out, qr/"qwen_health" in location "\/h" has no model/, 'qwen_health needs a model');
$n = QwenNginx->new(http => 'server { listen 127.0.0.1:%%PORT%%; location /m { qwen_metrics; } }');
($rc, $out) = $n->test_conf;
is($rc, 0, 'qwen_metrics does not') or diag $out;

done_testing;
