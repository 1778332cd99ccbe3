# t/admission.t - admission across workers: connections do not spread
# evenly over nginx workers (all streams of one HTTP/2 connection land on
# one), so a request is refused only when the whole server is full: every
# live worker's slots and queue, summed in the metrics zone. The refusals
# are counted in /metrics (qwen_request_refused_total), and finished +
# refused adds up to what was sent.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();
my $h2load = (grep { -x } map { "$_/h2load" } split /:/, $ENV{PATH})[0];
plan skip_all => 'h2load is not installed (apt-get install nghttp2-client)' unless $h2load;
plan skip_all => 'curl is not installed' unless -x '/usr/bin/curl';

# 2 workers x (1 slot + a queue of 1): the server takes 4 requests at once
my $n = QwenNginx->serve(workers => 2, ctx => 1024, listen => 'http2',
                         engine => 'qwen_threads 1; qwen_slots 1; qwen_queue 1;',
                         server => <<'EOF2');
    location /v1/ { qwen_api openai; }
    location = /metrics { qwen_metrics; }
    location = /health { qwen_health saturated=503; }
EOF2

my $body = $n->dir . '/body.json';
open my $fh, '>', $body or die "$body: $!";
print $fh $QwenNginx::JSON->encode({ prompt => [9707, 11, 1879], max_tokens => 120,
                                     temperature => 0, ignore_eos => JSON::PP::true });
close $fh;

# n requests as n concurrent streams of one HTTP/2 connection (one worker)
sub h2 {
    my ($count) = @_;
    my $url = 'http://127.0.0.1:' . $n->port . '/v1/completions';
    my $out = `$h2load -n $count -c 1 -m $count -d $body -H 'Content-Type: application/json' $url 2>&1`;
    my ($ok, $c4) = $out =~ /status codes: (\d+) 2xx, \d+ 3xx, (\d+) 4xx/;
    diag($out) unless defined $ok;
    return ($ok // -1, $c4 // -1);
}

sub metric {
    my ($name) = @_;
    # the listener speaks HTTP/2 only (prior knowledge)
    my $body = `curl -sS --http2-prior-knowledge http://127.0.0.1:@{[$n->port]}/metrics`;
    return $body =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

my ($ok, $refused) = h2(4);
is($ok, 4, '4 streams on one worker, whose own slot and queue take 2: all 4 served');
is($refused, 0, '... none refused while the other worker has room');
unlike($n->error_log, qr/server full|queue full/, '... no refusal logged');

($ok, $refused) = h2(6);
is($ok, 4, '6 streams at once: the 4 the server holds are served');
is($refused, 2, '... the 2 past the whole server\'s capacity get 429');
like($n->error_log, qr/qwen: server full \(4 of 4 requests across workers\), answering 429/,
     '... with an error-log line giving the server-wide count');

is(metric('qwen_request_refused_total{reason="busy"}'), 2, '/metrics counts the 2 refusals');
my $finished = 0;
$finished += metric("qwen_request_success_total{finished_reason=\"$_\"}") // 0
    for qw(stop length cancelled error);
is($finished + metric('qwen_request_refused_total{reason="busy"}'), 10,
   '... finished + refused = the 10 sent');
is(metric('qwen_num_requests_running') + metric('qwen_num_requests_waiting'), 0,
   '... and nothing is held once they are done');

# /health: saturated while the whole server is full, though this worker's
# engine queue (sized for the server) has room
my $long = $n->dir . '/long.json';
open $fh, '>', $long or die "$long: $!";
print $fh $QwenNginx::JSON->encode({ prompt => [9707, 11, 1879], max_tokens => 400,
                                     temperature => 0, ignore_eos => JSON::PP::true });
close $fh;
my $url = 'http://127.0.0.1:' . $n->port;
my $bg = open(my $load, '-|', "$h2load -n 4 -c 1 -m 4 -d $long -H 'Content-Type: application/json' $url/v1/completions 2>&1");
my ($health, $tries) = ('', 0);
while ($tries++ < 50) {
    select(undef, undef, undef, 0.1);
    $health = `curl -sS --http2-prior-knowledge -w ' %{http_code}' $url/health`;
    last if $health =~ /saturated/;
}
like($health, qr/"status":"saturated".* 503$/, '/health answers saturated (503) while the server is full');
my $out = join('', <$load>);
close $load;
like($out, qr/status codes: 4 2xx/, '... and those 4 are served');
$health = `curl -sS --http2-prior-knowledge -w ' %{http_code}' $url/health`;
like($health, qr/"status":"ok".* 200$/, '... ok again once they are done');

# the held counts went back: the server takes 4 again
($ok, $refused) = h2(4);
is($ok, 4, 'afterwards 4 streams are served again (every admission was given back)');

is_deeply([$n->crashes], [], 'no worker crashed');
$n->stop;
done_testing();
