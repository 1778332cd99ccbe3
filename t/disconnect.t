# t/disconnect.t - a client that goes away cancels its sequence, during
# decode and during prefill, and its slot is free within one engine step: a
# request waiting behind it is served at once. Backpressure from a client
# that does not read pauses only its own sequence.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use Time::HiRes qw(time sleep);

sub ngx_max { $_[0] > $_[1] ? $_[0] : $_[1] }

QwenNginx::require_built();

my $n = QwenNginx->serve(ctx => 4096, engine => 'qwen_threads 1; qwen_slots 1; qwen_queue 1; qwen_batch 1;',
                         server => 'location /v1/ { qwen_api openai; }
                                    location /slow/v1/ { qwen_timeout 300ms; qwen_api openai; }');

my $quick = { prompt => [1, 2, 3], max_tokens => 1 };

# ------------------------------------------------------- during decode
# 4000 tokens would take seconds; the client leaves after two.
my $a = $n->stream_json('/v1/completions',
    { prompt => [9707, 11], max_tokens => 4000, ignore_eos => JSON::PP::true,
      stream => JSON::PP::true });
my $t0 = time;
ok(defined $a->next_event(10) && defined $a->next_event(10), 'a long stream runs');
my @ev;
push @ev, $a->next_event(10) for 1 .. 10;
my $per_token = (time - $t0) / 12;
$a->close;

my $t = time;
my $b = $n->post_json('/v1/completions', $quick);
my $dt = time - $t;
is($b->{status}, 200, 'the next request is served');
ok($dt < 0.5 && $dt < 3900 * $per_token / 4,
   sprintf('... at once (%.0f ms; the cancelled stream had %.0f s left)',
           $dt * 1000, 3900 * $per_token));

# ------------------------------------------------------ during prefill
# a 2000-token prompt fed one token per step (qwen_batch 1)
my $long = { prompt => [map { 1000 + $_ } 1 .. 2000], max_tokens => 1 };
$t = time;
my $full = $n->post_json('/v1/completions', $long);
my $prefill = time - $t;
is($full->{status}, 200, sprintf('a 2000-token prefill takes %.0f ms', $prefill * 1000));

SKIP: {
    skip 'prefill too fast here to interrupt reliably', 2 if $prefill < 0.2;
    my $s = $n->stream_json('/v1/completions', $long);
    sleep $prefill / 5;
    $s->close;
    sleep 0.01;
    $t = time;
    $b = $n->post_json('/v1/completions', $quick);
    $dt = time - $t;
    is($b->{status}, 200, 'after a client left during prefill the next request is served');
    ok($dt < $prefill / 3, sprintf('... at once (%.0f ms, the prefill takes %.0f ms)',
                                   $dt * 1000, $prefill * 1000));
}
like($n->error_log, qr/client prematurely closed connection/, 'the close was seen by nginx');

# ------------------------------------------------------------ qwen_timeout
my $endless = { prompt => [9707], max_tokens => 4000, ignore_eos => JSON::PP::true };
$t = time;
my $to = $n->post_json('/slow/v1/completions', $endless);
$dt = time - $t;
is($to->{status}, 503, 'qwen_timeout: a request that runs too long gets 503');
like($to->{json}{error}{message} // '', qr/timed out/, '... saying it timed out');
ok($dt > 0.25 && $dt < 2, sprintf('... after the timeout (%.0f ms)', $dt * 1000));
my $ts = $n->stream_json('/slow/v1/completions', { %$endless, stream => JSON::PP::true });
my @tev = $ts->all_events(10);
like($tev[-1] // '', qr/"error"/, 'a stream that runs too long ends with an error event');
$t = time;
$b = $n->post_json('/v1/completions', $quick);
ok($b->{status} == 200 && time - $t < 0.5, '... and its slot is free at once');
like($n->error_log, qr/qwen: request timed out after 300 ms/, 'the timeout is logged');

# ----------------------------------------------------------- backpressure
# A client that stops reading: its socket fills, its sequence pauses, and
# the other slot keeps generating.
my $bp = QwenNginx->serve(ctx => 4096, engine => 'qwen_slots 2;', listen => 'sndbuf=4k');
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $bp->port,
                                 Proto => 'tcp') or die;
setsockopt($sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 4096);
my $body = $QwenNginx::JSON->encode({ prompt => [9707], max_tokens => 300, stream => JSON::PP::true,
                                      ignore_eos => JSON::PP::true, logprobs => 5 });
print $sock "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    . "Content-Length: " . length($body) . "\r\n\r\n$body";
sleep 0.3;
$t = time;
my $other = $bp->post_json('/v1/completions', { prompt => [1, 2], max_tokens => 20 });
$dt = time - $t;
is($other->{status}, 200, 'another client is served while one does not read');
ok($dt < 1, sprintf('... without waiting (%.0f ms)', $dt * 1000));
my ($ms) = $bp->error_log =~ /qwen: done: 2 prompt tokens, 20 generated, .* total ([\d.]+) ms/;
my $tok_ms = ($ms // 100) / 20;
# unpaused, 300 tokens would be done long before the reader comes back
sleep ngx_max(1.0, 300 * $tok_ms * 2 / 1000);
my $stalled = QwenNginx::Stream->new($sock);
my $t_resume = time;
my @bev = $stalled->all_events(30);
my $span = time - $t_resume;
is($bev[-1], '[DONE]', 'the stalled stream completes once read');
ok($span > 100 * $tok_ms / 1000,
   sprintf('... its tokens were generated after the reader came back (%.0f ms, %.1f ms a token):'
           . ' the sequence was paused', $span * 1000, $tok_ms));
close $sock;
sleep 0.2;
is_deeply([$bp->crashes], [], 'no worker crashed, no alerts (backpressure)');
$bp->stop;

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
