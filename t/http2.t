# t/http2.t - HTTP/2: streaming with curl (events arrive as generated), and
# a client's RST_STREAM cancels the sequence and frees its slot while the
# connection itself stays usable.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);

QwenNginx::require_built();
plan skip_all => 'curl is not installed' unless -x '/usr/bin/curl';

my $n = QwenNginx->serve(ctx => 4096, engine => 'qwen_threads 1; qwen_slots 1; qwen_queue 1;',
                         listen => 'http2');
my $url = 'http://127.0.0.1:' . $n->port;
my $J = $QwenNginx::JSON;

# ------------------------------------------------------ streaming with curl
my $body = $J->encode({ prompt => [9707, 11, 1879], max_tokens => 100, temperature => 0,
                        ignore_eos => JSON::PP::true, stream => JSON::PP::true });
my $t0 = time;
open my $curl, '-|', 'curl', '-sS', '-N', '--http2-prior-knowledge', '-D', $n->dir . '/h2.head',
    '-H', 'Content-Type: application/json', '--data-binary', $body, "$url/v1/completions"
    or die "curl: $!";
my @events;
while (my $line = <$curl>) {
    chomp $line;
    push @events, { data => $1, time => time - $t0 } if $line =~ /^data: (.*)$/;
}
close $curl;
my $head = $n->slurp($n->dir . '/h2.head') // '';
like($head, qr{^HTTP/2 200}, 'curl streams over HTTP/2');
like($head, qr{content-type: text/event-stream}i, '... as text/event-stream');
is($events[-1]{data}, '[DONE]', '... ending with [DONE]');
ok(@events > 50, '... one event per token (' . scalar(@events) . ')');
my $span = $events[-1]{time} - $events[0]{time};
ok($span > 0.3 * $events[-1]{time}, sprintf('... arriving as generated (first %.0f ms, last %.0f ms)',
                                           $events[0]{time} * 1000, $events[-1]{time} * 1000));

my $plain = `curl -sS --http2-prior-knowledge -H 'Content-Type: application/json' --data-binary '{"prompt":[1,2],"max_tokens":3}' $url/v1/completions`;
my $pj = QwenNginx::decode_json_or_undef($plain);
is($pj && $pj->{usage}{completion_tokens}, 3, 'a non-streamed answer over HTTP/2');

# ------------------------------------------------ RST_STREAM cancels the sequence
sub frame {
    my ($type, $flags, $sid, $payload) = @_;
    $payload //= '';
    my $len = length $payload;
    return pack('CnC C N', $len >> 16, $len & 0xffff, $type, $flags, $sid) . $payload;
}

sub hstr { my $s = shift; return chr(length $s) . $s; }

sub headers_block {
    my ($path, $len) = @_;
    return "\x83" . "\x86"                                # :method POST, :scheme http
         . "\x04" . hstr($path) . "\x01" . hstr('localhost')   # :path, :authority
         . "\x00" . hstr('content-type') . hstr('application/json')
         . "\x00" . hstr('content-length') . hstr($len);
}

sub read_frame {
    my ($sock, $timeout) = @_;
    my $sel = IO::Select->new($sock);
    my $buf = '';
    my $deadline = time + $timeout;
    while (length $buf < 9) {
        return undef unless $sel->can_read($deadline - time);
        sysread($sock, $buf, 9 - length $buf, length $buf) or return undef;
    }
    my ($l1, $l2, $type, $flags, $sid) = unpack('CnC C N', $buf);
    my $len = ($l1 << 16) | $l2;
    my $payload = '';
    while (length $payload < $len) {
        return undef unless $sel->can_read($deadline - time);
        sysread($sock, $payload, $len - length $payload, length $payload) or return undef;
    }
    return { type => $type, flags => $flags, sid => $sid & 0x7fffffff, payload => $payload };
}

my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $n->port, Proto => 'tcp')
    or die;
binmode $sock;
my $long = $J->encode({ prompt => [9707, 11], max_tokens => 4000, ignore_eos => JSON::PP::true,
                        stream => JSON::PP::true });
syswrite $sock, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . frame(4, 0, 0)
    . frame(1, 4, 1, headers_block('/v1/completions', length $long))
    . frame(0, 1, 1, $long);

my ($got_data, $rst_sent) = (0, 0);
while (my $f = read_frame($sock, 10)) {
    syswrite $sock, frame(4, 1, 0) if $f->{type} == 4 && !($f->{flags} & 1);
    if ($f->{type} == 0 && $f->{sid} == 1 && $f->{payload} =~ /data: \{/) {
        $got_data++;
        last if $got_data >= 3;
    }
}
ok($got_data >= 3, 'a raw HTTP/2 client receives the stream');
syswrite $sock, frame(3, 0, 1, pack('N', 8));   # RST_STREAM, CANCEL
$rst_sent = time;

# the engine's only slot is free at once: a new request is served
my $t = time;
my $next = `curl -sS --http2-prior-knowledge -H 'Content-Type: application/json' --data-binary '{"prompt":[1,2,3],"max_tokens":1}' $url/v1/completions`;
my $dt = time - $t;
like($next, qr/"completion_tokens":1/, 'after RST_STREAM the next request is served');
ok($dt < 0.5, sprintf('... at once (%.0f ms; the reset stream had ~4000 tokens to go)', $dt * 1000));
like($n->error_log, qr/client canceled stream 1/, 'nginx saw the stream reset');

# the connection is still usable: a second stream on it
my $small = $J->encode({ prompt => [1, 2], max_tokens => 2 });
syswrite $sock, frame(1, 4, 3, headers_block('/v1/completions', length $small))
    . frame(0, 1, 3, $small);
my $answer = '';
my $ended = 0;
while (my $f = read_frame($sock, 10)) {
    next unless $f->{sid} == 3;
    $answer .= $f->{payload} if $f->{type} == 0;
    if ($f->{flags} & 1) { $ended = 1; last; }
}
ok($ended, 'the same connection serves another stream');
like($answer, qr/"completion_tokens":2/, '... to its end');
close $sock;

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
