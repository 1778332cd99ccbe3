# t/stream.t - streamed responses (SSE): events arrive while the answer is
# being generated, not at its end; every chunk is well formed, shares one id,
# the last carries finish_reason, usage comes with include_usage, [DONE]
# closes; the streamed text equals the non-streamed one.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

my $n = QwenNginx->serve;

my $N = 100;
my $req = { prompt => [9707, 11, 1879, 374, 264], max_tokens => $N, temperature => 0,
            ignore_eos => JSON::PP::true, stream => JSON::PP::true,
            stream_options => { include_usage => JSON::PP::true } };

my $s = $n->stream_json('/v1/completions', $req);
ok($s->wait_head(10), 'the stream starts');
is($s->status, 200, '... 200');
is($s->headers->{'content-type'}, 'text/event-stream', '... text/event-stream');
is($s->headers->{'cache-control'}, 'no-cache', '... Cache-Control: no-cache');
is($s->headers->{'x-accel-buffering'}, 'no', '... X-Accel-Buffering: no');
like($s->headers->{'transfer-encoding'} // '', qr/chunked/, '... chunked');

my @events;
while (defined(my $ev = $s->next_event(30))) {
    push @events, { data => $ev, time => $s->last_event_time };
    last if $ev eq '[DONE]';
}
ok($s->done || $s->pump(5) == 0, 'the response ends after [DONE]');
$s->close;

is($events[-1]{data}, '[DONE]', 'the last event is [DONE]');
my $first = $events[0]{time};
my $end = $events[-1]{time};
diag(sprintf "first event %.0f ms, [DONE] %.0f ms, %d events in %d reads",
     $first * 1000, $end * 1000, scalar @events, $s->{reads});
# buffered output would arrive in one burst at the end: first ~ [DONE]
ok($end - $first > 0.3 * $end, 'events arrive while the answer is generated, not all at the end');
ok($s->{reads} >= 10, 'in many separate reads');

my @json = map { QwenNginx::decode_json_or_undef($_->{data}) } @events[0 .. $#events - 1];
is(scalar(grep { !defined } @json), 0, 'every other event is JSON');
my %ids = map { $_->{id} => 1 } grep { defined } @json;
is(scalar keys %ids, 1, 'every chunk has the same id');
my %created = map { $_->{created} => 1 } grep { defined } @json;
is(scalar keys %created, 1, '... and the same created');

my @choice = grep { @{$_->{choices}} } @json;
my @usage = grep { !@{$_->{choices}} } @json;
ok(@choice >= $N / 2, 'one chunk per token or group of tokens (' . scalar(@choice) . ')');
is($choice[-1]{choices}[0]{finish_reason}, 'length', 'the last choice chunk says length');
is(scalar(grep { defined $_->{choices}[0]{finish_reason} } @choice), 1, '... only it has a finish_reason');
is(scalar @usage, 1, 'one usage chunk');
is_deeply($usage[0]{usage}, { prompt_tokens => 5, completion_tokens => $N, total_tokens => $N + 5,
                                prompt_tokens_details => { cached_tokens => 0 } },
          '... with the right numbers');
is($json[-1], $usage[0], '... after the last choice chunk');

my $text = join '', map { $_->{choices}[0]{text} } @choice;
delete $req->{stream};
delete $req->{stream_options};
my $r = $n->post_json('/v1/completions', $req);
is($text, $r->{json}{choices}[0]{text}, 'the streamed text is the non-streamed text');

# without include_usage: no usage chunk
$s = $n->stream_json('/v1/completions', { prompt => [1, 2, 3], max_tokens => 3, stream => JSON::PP::true });
my @ev = $s->all_events(30);
is($ev[-1], '[DONE]', 'a short stream ends with [DONE]');
is(scalar(grep { /"usage"/ } @ev), 0, '... and has no usage without include_usage');

# chat stream
$s = $n->stream_json('/v1/chat/completions',
    { messages => [{ role => 'user', content => 'Hello' }], max_tokens => 5,
      stream => JSON::PP::true, stream_options => { include_usage => JSON::PP::true } });
@ev = $s->all_events(30);
is($ev[-1], '[DONE]', 'a chat stream ends with [DONE]');
my @cj = map { QwenNginx::decode_json_or_undef($_) } @ev[0 .. $#ev - 1];
is($cj[0]{object}, 'chat.completion.chunk', '... of chat.completion.chunk');
is($cj[0]{choices}[0]{delta}{role}, 'assistant', '... the first delta has the role');
my ($fin) = grep { @{$_->{choices}} && $_->{choices}[0]{finish_reason} } @cj;
ok($fin, '... one chunk finishes');
is($cj[-1]{usage}{completion_tokens}, 5, '... usage counts 5 tokens');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
