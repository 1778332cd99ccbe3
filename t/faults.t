# t/faults.t - faults a server meets in weeks of traffic: a worker killed
# with SIGKILL in the middle of a stream (the master starts another, the
# other worker's stream finishes, /metrics still answers, the weights stay
# one copy in memory); slow clients trickling their body byte by byte or
# sending headers slowly (they hold only their own connection: /health and
# generations answer at once, and the slow request is served when its body
# is complete); huge max_tokens and prompts at the context limit; a flood
# of refused requests does not grow the worker's memory.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;

QwenNginx::require_built();

sub model_pss {
    my ($pid, $path) = @_;
    my ($pss, $cur) = (0, 0);
    open my $fh, '<', "/proc/$pid/smaps" or return 0;
    while (<$fh>) {
        if (/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/) {
            $cur = $1 eq $path;
            next;
        }
        $pss += $1 if $cur && /^Pss:\s+(\d+) kB/;
    }
    return $pss;
}

sub rss_kb {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/status" or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+) kB/; }
    return 0;
}

my $model = QwenNginx::model('tiny-f32.gguf');
my $N = 300;
my $long = { prompt => [9707, 11], max_tokens => $N, ignore_eos => JSON::PP::true,
             temperature => 0, stream => JSON::PP::true,
             stream_options => { include_usage => JSON::PP::true } };

# ------------------------------------------ SIGKILL of a worker mid-stream
my $n = QwenNginx->new(workers => 2, http => <<"EOF2");
    qwen_model $model;
    qwen_ctx 1024;
    qwen_threads 1;
    qwen_slots 2;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location /v1/ { add_header X-Worker \$pid always; qwen_api openai; }
        location = /metrics { qwen_metrics; }
        location = /health { qwen_health; }
    }
EOF2
$n->start;

# one stream on each worker (reuseport spreads connections by their port)
my (%by_worker, @extra);
for (1 .. 40) {
    my $s = $n->stream_json('/v1/completions', $long);
    $s->wait_head(10);
    my $w = $s->headers->{'x-worker'} // 0;
    if ($w && !$by_worker{$w}) { $by_worker{$w} = $s; } else { $s->close; }
    last if keys %by_worker == 2;
}
is(scalar keys %by_worker, 2, 'a stream runs on each of the 2 workers');
my ($victim, $survivor) = sort keys %by_worker;
my ($sa, $sb) = @by_worker{$victim, $survivor};
ok(defined $sa->next_event(10) && defined $sb->next_event(10), 'both streams have tokens');

ok(kill('KILL', $victim), "worker $victim killed with SIGKILL mid-stream");
my @ea = $sa->all_events(10);
ok(!grep({ $_ eq '[DONE]' } @ea), "... its client's stream ends without [DONE]");
my $deadline = time + 10;
my @now;
while (time < $deadline) {
    @now = $n->worker_pids;
    last if @now == 2 && !grep { $_ == $victim } @now;
    sleep 0.05;
}
is(scalar(grep { $_ != $victim } @now), 2, 'the master started a new worker');

my $t0 = time;
my $h = $n->get_json('/health');
is($h->{status}, 200, '/health answers during the other stream');
my $m = $n->request('GET', '/metrics');
is($m->{status}, 200, '/metrics is readable after the crash');
like($m->{body}, qr/^qwen_num_requests_running\b/m, '... with the gauges');

my @eb = $sb->all_events(120);
is($eb[-1], '[DONE]', "the other worker's stream finishes");
my ($usage) = grep { /"usage":\{/ } @eb;
like($usage // '', qr/"completion_tokens":$N\b/, "... with all its $N tokens");

# every worker, the new one too, runs the model; the weights are one copy
my %served;
for (1 .. 60) {
    my $r = $n->post_json('/v1/completions', { prompt => [1, 2, 3], max_tokens => 2 });
    $served{$r->{headers}{'x-worker'} // 0}++ if $r->{status} == 200;
    last if keys %served >= 2;
}
is(scalar keys %served, 2, 'both workers (the new one too) answer generations');
my $size_kb = int((-s $model) / 1024);
my $pss = 0;
$pss += model_pss($_, $model) for $n->master_pid, $n->worker_pids;
diag("model file $size_kb kB; its PSS summed over master and workers: $pss kB");
ok($pss > 0 && $pss < $size_kb * 1.1, 'the weights are still one copy in memory');
my @bad = grep { !/exited on signal 9/ } $n->crashes;
is_deeply(\@bad, [], 'no other crash or alert');
like($n->error_log, qr/worker process $victim exited on signal 9/, 'the kill is logged');
$n->stop;

# ------------------------------------------------------ slow clients
$n = QwenNginx->new(http => <<"EOF2");
    qwen_model $model;
    qwen_ctx 512;
    qwen_threads 1;
    qwen_slots 2;
    qwen_queue 16;
    server {
        listen 127.0.0.1:%%PORT%%;
        client_body_timeout 20s;
        client_header_timeout 20s;
        location /v1/ { qwen_api openai; }
        location = /health { qwen_health; }
    }
EOF2
$n->start;

my $body = $QwenNginx::JSON->encode({ prompt => [9707, 11, 1879], max_tokens => 4,
                                      temperature => 0 });
my @trickle;
for (1 .. 10) {
    my $s = $n->connect_socket;
    my $req = $n->build_request('POST', '/v1/completions', $body);
    my ($head, $b) = split /\r\n\r\n/, $req, 2;
    print $s "$head\r\n\r\n";
    push @trickle, { sock => $s, rest => $b };
}
my @slow_head;
for (1 .. 10) {
    my $s = $n->connect_socket;
    print $s "GET /health HTTP/1.1\r\nHo";
    push @slow_head, $s;
}
my ($worst_health, $worst_gen) = (0, 0);
my $gen_ok = 1;
$t0 = time;
# one byte per client every 20 ms, with /health and a generation in between
while (grep { length $_->{rest} } @trickle) {
    for my $c (@trickle) {
        next unless length $c->{rest};
        print { $c->{sock} } substr($c->{rest}, 0, 1, '');
    }
    if (int((time - $t0) * 10) % 5 == 0) {
        my $t = time;
        my $r = $n->request('GET', '/health');
        $worst_health = time - $t if time - $t > $worst_health;
        $t = time;
        $r = $n->post_json('/v1/completions', { prompt => [1, 2], max_tokens => 2 });
        $gen_ok &&= $r->{status} == 200;
        $worst_gen = time - $t if time - $t > $worst_gen;
    }
    sleep 0.02;
}
my $trickle_time = time - $t0;
ok($trickle_time > 1, sprintf('10 bodies trickled byte by byte for %.1f s', $trickle_time));
ok($worst_health < 0.5, sprintf('... /health answered within %.0f ms meanwhile',
                                $worst_health * 1000));
ok($gen_ok && $worst_gen < 2, sprintf('... generations answered 200 within %.0f ms',
                                      $worst_gen * 1000));
my $served = 0;
for my $c (@trickle) {
    my $raw = '';
    my $sel = IO::Select->new($c->{sock});
    my $end = time + 30;
    while (time < $end && $sel->can_read($end - time)) {
        my $k = sysread($c->{sock}, my $buf, 65536) or last;
        $raw .= $buf;
    }
    my $res = QwenNginx::parse_response($raw);
    $served++ if $res->{status} == 200 && $res->{body} =~ /"completion_tokens":4\b/;
}
is($served, 10, 'every trickled request is served once its body is complete');
for my $s (@slow_head) { print $s "st: x\r\n\r\n"; }
my $slow_ok = 0;
for my $s (@slow_head) {
    my $raw = '';
    my $sel = IO::Select->new($s);
    my $end = time + 10;
    while (time < $end && $sel->can_read($end - time)) {
        my $k = sysread($s, my $buf, 65536) or last;
        $raw .= $buf;
        last if $raw =~ /\r\n\r\n.*\}/s;
    }
    $slow_ok++ if $raw =~ m{^HTTP/1\.1 200};
    close $s;
}
is($slow_ok, 10, 'requests whose headers came slowly are answered too');

# a slow reader: a long stream read a few bytes at a time
my $slow = $n->stream_json('/v1/completions', { %$long, max_tokens => 200 });
$t0 = time;
my $r = $n->post_json('/v1/completions', { prompt => [1, 2], max_tokens => 8 });
is($r->{status}, 200, 'a request next to a stream nobody reads is served');
ok(time - $t0 < 5, sprintf('... in %.0f ms', (time - $t0) * 1000));
my @ev = $slow->all_events(120);
is($ev[-1], '[DONE]', 'the slowly read stream completes');

# ---------------------------------- huge max_tokens, the context limit
# (as OpenAI and vLLM: prompt + max_tokens must fit the context; without
# max_tokens the answer may run to the end of the context)
$r = $n->post_json('/v1/completions', { prompt => [1, 2, 3], max_tokens => 2**31 - 1 });
is($r->{status}, 400, 'max_tokens 2^31-1 is refused with 400');
is($r->{json}{error}{code}, 'context_length_exceeded', '... context_length_exceeded');
like($r->{json}{error}{message}, qr/maximum context length is 512 tokens.*2147483650 tokens/,
     '... naming the context and the tokens asked for');
$r = $n->post_json('/v1/completions', { prompt => [1, 2, 3], temperature => 0,
                                        ignore_eos => JSON::PP::true });
is($r->{status}, 200, 'without max_tokens the answer may run to the context');
is($r->{json}{choices}[0]{finish_reason}, 'length', '... and ends there with "length"');
is($r->{json}{usage}{completion_tokens}, 512 - 3, '... after context - prompt tokens');
$r = $n->post_json('/v1/completions', { prompt => [(1000) x 511], temperature => 0,
                                        ignore_eos => JSON::PP::true });
is($r->{status}, 200, 'a prompt one token short of the context is served');
is($r->{json}{usage}{completion_tokens}, 1, '... with the one token that fits');
$r = $n->post_json('/v1/completions', { prompt => [(1000) x 511], max_tokens => 2 });
is($r->{status}, 400, '... and refused when max_tokens asks for more');
$r = $n->post_json('/v1/completions', { prompt => [(1000) x 512], max_tokens => 1 });
is($r->{status}, 400, 'a prompt of the whole context is refused with 400');
like($r->{body}, qr/context/, '... saying it does not fit the context');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;

# ------------------------------------------ refusals do not grow memory
$n = QwenNginx->new(http => <<"EOF2");
    qwen_model $model;
    qwen_threads 1;
    qwen_ctx 2048;
    qwen_slots 1;
    qwen_queue 1;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ { qwen_api openai; }
    }
EOF2
$n->start;
my ($w) = $n->worker_pids;
my @hold = map { $n->stream_json('/v1/completions', { %$long, max_tokens => 2000 }) } 1 .. 2;
$_->wait_head(10) for @hold;
# the first refusals touch pages shared with the master (the tokenizer's
# tables): RSS moves once; then 600 more must not move it
my $refused = 0;
for (1 .. 300) {
    my $x = $n->post_json('/v1/completions', { prompt => [(7) x 200], max_tokens => 100 });
    $refused++ if $x->{status} == 429;
}
my $rss0 = rss_kb($w);
for (1 .. 600) {
    my $x = $n->post_json('/v1/completions', { prompt => [(7) x 200], max_tokens => 100 });
    $refused++ if $x->{status} == 429;
}
my $rss1 = rss_kb($w);
is($refused, 900, '900 requests past the slot and the queue are refused with 429');
diag("worker RSS after 300 refusals $rss0 kB, after 600 more $rss1 kB");
SKIP: {
    # AddressSanitizer keeps freed memory in quarantine: RSS grows by design
    skip 'the ASan module quarantines freed memory', 1 if $ENV{QWEN_ASAN_LOG_DIR};
    ok($rss1 - $rss0 < 2048, sprintf('... the last 600 grew the worker by %d kB (< 2 MB)',
                                     $rss1 - $rss0));
}
$_->close for @hold;
is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
