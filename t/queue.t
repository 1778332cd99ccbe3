# t/queue.t - slots, the bounded queue and the event loop: with every slot
# busy a request waits in the queue, past the queue it gets 429 (or 503 by
# configuration) at once with a JSON error that says when to retry, nginx
# keeps answering other requests in milliseconds, and sequences in several
# slots are decoded together, step by step.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use Time::HiRes qw(time sleep);

QwenNginx::require_built();

my $long = { prompt => [9707, 11, 1879], max_tokens => 300, temperature => 0,
             ignore_eos => JSON::PP::true, stream => JSON::PP::true };
my $short = { prompt => [1, 2, 3], max_tokens => 3, stream => JSON::PP::true };

# ---------------------------------------------- one slot, queue of one
my $n = QwenNginx->serve(engine => 'qwen_threads 1; qwen_slots 1; qwen_queue 1; qwen_retry_after 2s;',
                         server => <<'EOF2');
    location /v1/ { qwen_api openai; }
    location /busy/v1/ { qwen_queue_full_status 503; qwen_api openai; }
    location = /health { return 200 '{"status":"ok"}'; }
EOF2

my $a = $n->stream_json('/v1/completions', $long);
ok(defined $a->next_event(10), 'A runs in the only slot');

my $b = $n->stream_json('/v1/completions', $short);
ok($b->wait_head(5), 'B is accepted');
is($b->status, 200, '... with 200 (it waits in the queue)');
ok(!defined $b->next_event(0.3), '... and gets no tokens while A holds the slot');

my $t = time;
my $h = $n->request('GET', '/health');
my $dt = time - $t;
is($h->{status}, 200, '/health answers while the slot is busy');
ok($dt < 0.5, sprintf('... in %.0f ms', $dt * 1000));
$t = time;
my $m = $n->get_json('/v1/models');
is($m->{status}, 200, '/v1/models answers too');

$t = time;
my $c = $n->post_json('/v1/completions', { prompt => [1, 2], max_tokens => 2 });
$dt = time - $t;
is($c->{status}, 429, 'C, past the queue, gets 429');
ok($dt < 0.5, sprintf('... at once (%.0f ms)', $dt * 1000));
is($c->{json}{error}{type}, 'overloaded_error', '... overloaded_error');
like($c->{json}{error}{message}, qr/retry after 2 s/, '... the message says when to retry');
is($c->{headers}{'retry-after'}, '2', '... Retry-After: 2');
like($c->{body}, qr/retry/i, '... the body carries the hint (proxies drop headers)');

my $d = $n->post_json('/busy/v1/completions', { prompt => [1, 2], max_tokens => 2 });
is($d->{status}, 503, 'qwen_queue_full_status 503 answers 503');
is($d->{json}{error}{type}, 'overloaded_error', '... overloaded_error');

my @a = $a->all_events(60);
is($a[-1], '[DONE]', 'A finishes');
my $a_end = time;
my @b = $b->all_events(30);
is($b[-1], '[DONE]', 'then B, from the queue, is served');
my $nb = grep { /"text"/ } @b;
ok($nb >= 2, "... with its tokens ($nb chunks)");

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;

# ---------------------------------------------- two slots decode together
$n = QwenNginx->serve(engine => 'qwen_threads 1; qwen_slots 2; qwen_queue 0;');

my $mid = { %$long, max_tokens => 120 };
my @s = map { $n->stream_json('/v1/completions', $mid) } 1 .. 2;
ok($_->wait_head(10), 'two streams start') for @s;
my $third = $n->post_json('/v1/completions', { prompt => [1], max_tokens => 1 });
is($third->{status}, 429, 'a third with queue 0 gets 429');

# read both, interleaved (a minute from here: $t was set before A's run)
my @times = ([], []);
my @open = (1, 1);
my $t_two = time;
while ($open[0] || $open[1]) {
    for my $i (0, 1) {
        next unless $open[$i];
        my $ev = $s[$i]->next_event(0.01);
        next unless defined $ev;
        if ($ev eq '[DONE]') { $open[$i] = 0; next; }
        push @{$times[$i]}, time if $ev =~ /"finish_reason":null/;
    }
    last if time - $t_two > 60;
}
# one chunk per token, fewer where a character spans tokens
ok(@{$times[0]} > 100, 'stream 1 got its tokens (' . @{$times[0]} . ' chunks)');
ok(@{$times[1]} > 100, 'stream 2 got its tokens (' . @{$times[1]} . ' chunks)');
ok($times[1][0] < $times[0][-1] && $times[0][0] < $times[1][-1],
   'the two sequences are generated together, not one after the other');
my $overlap = grep { $_ < $times[0][-1] } @{$times[1]};
ok($overlap > 50, "... step by step ($overlap of stream 2's tokens came before stream 1 ended)");

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
