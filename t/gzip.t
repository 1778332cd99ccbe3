# t/gzip.t - with `gzip on` for event streams, every event still leaves at
# once (each frame is flushed through the gzip filter), and non-streamed
# JSON answers are compressed as usual.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

my $n = QwenNginx->serve(engine => 'qwen_threads 1;',
                         http => 'gzip on; gzip_min_length 0; gzip_types text/event-stream application/json;');

my $N = 100;
my $s = $n->stream_json('/v1/completions',
    { prompt => [9707, 11, 1879], max_tokens => $N, temperature => 0,
      ignore_eos => JSON::PP::true, stream => JSON::PP::true },
    { 'Accept-Encoding' => 'gzip' });
ok($s->wait_head(10), 'the stream starts');
is($s->headers->{'content-encoding'}, 'gzip', '... gzip-compressed');
my @ev;
while (defined(my $e = $s->next_event(30))) {
    push @ev, { data => $e, time => $s->last_event_time };
    last if $e eq '[DONE]';
}
is($ev[-1]{data}, '[DONE]', 'the decompressed stream ends with [DONE]');
my @chunks = grep { $_->{data} =~ /"text"/ } @ev;
ok(@chunks > $N / 2, 'with its events (' . scalar(@chunks) . ')');
is(scalar(grep { !QwenNginx::decode_json_or_undef($_->{data}) } @ev[0 .. $#ev - 1]), 0,
   '... each one whole JSON');
my $span = $ev[-1]{time} - $ev[0]{time};
ok($span > 0.3 * $ev[-1]{time},
   sprintf('events are not held back by gzip (first %.0f ms, [DONE] %.0f ms, %d reads)',
           $ev[0]{time} * 1000, $ev[-1]{time} * 1000, $s->{reads}));
ok($s->{reads} >= 10, '... they arrive in many reads');

# non-streamed: a compressed JSON body
my $r = $n->request('POST', '/v1/completions',
    $QwenNginx::JSON->encode({ prompt => [1, 2], max_tokens => 3 }), { 'Accept-Encoding' => 'gzip' });
is($r->{headers}{'content-encoding'}, 'gzip', 'a JSON answer is gzip-compressed');
require IO::Uncompress::Gunzip;
my $plain;
IO::Uncompress::Gunzip::gunzip(\$r->{body}, \$plain);
my $j = QwenNginx::decode_json_or_undef($plain // '');
is($j && $j->{usage}{completion_tokens}, 3, '... and decompresses to the answer');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
