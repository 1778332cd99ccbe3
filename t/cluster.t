# t/cluster.t - several hosts: the shipped conf/cluster/edge.conf (stock
# nginx: TLS with HTTP/2, API keys, limit_req, least_conn over the hosts
# with keepalive and retries) in front of three model hosts started from
# conf/cluster/model-host.conf, each its own nginx on its own loopback
# address, with a test CA and a certificate made here by openssl. Checked
# through the edge with curl over HTTP/2: a stream arrives token by token;
# a host killed mid-run loses only the streams it was serving and new
# requests go to the others; a host whose queue is full answers 429 and the
# edge retries elsewhere (and when all are full the client gets a JSON
# 429/503 with Retry-After); a bad key gets a JSON 401 in the API's format;
# limit_req answers a JSON 429; the tenant reaches the hosts' token quotas.
# Tiny model, one worker and one thread a host: ~30 s. qwen_ctx stays 4096 so the
# streams that hold a host's slots (4000 tokens) outlast its checks on a fast CPU.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

QwenNginx::require_built();
plan skip_all => 'curl is not installed' unless -x '/usr/bin/curl';
plan skip_all => 'openssl is not installed' unless -x '/usr/bin/openssl';
plan skip_all => 'curl has no HTTP/2' unless `curl --version` =~ /\bHTTP2\b/;

my $ROOT = $QwenNginx::ROOT;
my $model = QwenNginx::model('tiny-f32.gguf');
my $J = $QwenNginx::JSON;
my $T = JSON::PP::true;

# Replace a line of a shipped file, checking the file has it.
sub swap {
    my ($text, $from, $to, $what) = @_;
    my $n = ($$text =~ s/$from/$to/g);
    ok($n, "the shipped file has $what") or diag "no match for $from";
}

sub write_file {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh;
}

# ------------------------------------------------------------ model hosts
my @hosts;
for my $i (1 .. 3) {
    my $h = QwenNginx->new(addr => "127.0.0.1$i");
    my ($d, $a, $p) = ($h->dir, $h->addr, $h->port);
    my $conf = $h->slurp("$ROOT/conf/cluster/model-host.conf");
    if ($i == 1) {
        swap(\$conf, qr{load_module modules/ngx_http_qwen_module\.so;}, "load_module $QwenNginx::MODULE;", 'load_module');
        swap(\$conf, qr{error_log /var/log/nginx/error\.log notice;}, "error_log $d/logs/error.log info;", 'error_log');
        swap(\$conf, qr{pid /run/nginx\.pid;}, "pid $d/logs/nginx.pid;", 'pid');
        swap(\$conf, qr{access_log /var/log/nginx/access\.log qwen;}, "access_log $d/logs/access.log qwen;", 'access_log');
        swap(\$conf, qr{/var/lib/nginx/}, "$d/temp/", 'temp paths');
        swap(\$conf, qr{qwen_model /var/lib/qwen/Qwen3-0\.6B;}, "qwen_model $model;", 'qwen_model');
        swap(\$conf, qr{qwen_threads auto;}, 'qwen_threads 1;', 'qwen_threads');
        swap(\$conf, qr{qwen_slots 4;}, 'qwen_slots 2;', 'qwen_slots');
        swap(\$conf, qr{qwen_queue 4;}, 'qwen_queue 0;', 'qwen_queue');
        swap(\$conf, qr{listen 8080;}, "listen $a:$p;", 'listen');
    } else {
        $conf =~ s{load_module modules/ngx_http_qwen_module\.so;}{load_module $QwenNginx::MODULE;};
        $conf =~ s{error_log /var/log/nginx/error\.log notice;}{error_log $d/logs/error.log info;};
        $conf =~ s{pid /run/nginx\.pid;}{pid $d/logs/nginx.pid;};
        $conf =~ s{access_log /var/log/nginx/access\.log qwen;}{access_log $d/logs/access.log qwen;};
        $conf =~ s{/var/lib/nginx/}{$d/temp/}g;
        $conf =~ s{qwen_model /var/lib/qwen/Qwen3-0\.6B;}{qwen_model $model;};
        $conf =~ s{qwen_threads auto;}{qwen_threads 1;};
        $conf =~ s{qwen_slots 4;}{qwen_slots 2;};
        $conf =~ s{qwen_queue 4;}{qwen_queue 0;};
        $conf =~ s{listen 8080;}{listen $a:$p;};
    }
    write_file($h->conf_file, "daemon off;\n$conf");
    my ($rc, $out) = $h->test_conf;
    is($rc, 0, "model host $i: nginx -t accepts model-host.conf") or diag $out;
    $h->start;
    push @hosts, $h;
}
my @haddr = map { $_->addr . ':' . $_->port } @hosts;

# ------------------------------------------------------------------- edge
my $e = QwenNginx->new();
my ($ed, $ep) = ($e->dir, $e->port);
mkdir "$ed/tls";
my $ssl = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        . "-keyout $ed/tls/ca.key -out $ed/tls/ca.crt -days 2 -subj '/CN=qwen test CA' 2>&1 && "
        . "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        . "-keyout $ed/tls/edge.key -out $ed/tls/edge.csr -subj '/CN=edge.test' 2>&1 && "
        . "printf 'subjectAltName=DNS:edge.test,IP:127.0.0.1\\n' > $ed/tls/ext && "
        . "openssl x509 -req -in $ed/tls/edge.csr -CA $ed/tls/ca.crt -CAkey $ed/tls/ca.key "
        . "-CAcreateserial -out $ed/tls/edge.crt -days 2 -extfile $ed/tls/ext 2>&1";
my $sslout = `$ssl`;
is($?, 0, 'openssl makes a test CA and the edge\'s certificate') or diag $sslout;

my %keys = (alice => 'sk-test-alice-' . ('a' x 32), bob => 'sk-test-bob-' . ('b' x 32),
            carol => 'sk-test-carol-' . ('c' x 32));
write_file("$ed/api-keys.map", join '', map { "\"Bearer $keys{$_}\" $_;\n" } sort keys %keys);
write_file("$ed/cluster-hosts.conf",
           join '', map { "server $_ max_fails=3 fail_timeout=10s;\n" } @haddr);
write_file("$ed/qwen-proxy.conf", $e->slurp("$ROOT/conf/cluster/qwen-proxy.conf"));

my $conf = $e->slurp("$ROOT/conf/cluster/edge.conf");
swap(\$conf, qr{worker_processes auto;}, 'worker_processes 1;', 'worker_processes');
swap(\$conf, qr{error_log /var/log/nginx/edge-error\.log notice;}, "error_log $ed/logs/error.log info;", 'the edge\'s error_log');
swap(\$conf, qr{pid /run/nginx-edge\.pid;}, "pid $ed/logs/nginx.pid;", 'the edge\'s pid');
swap(\$conf, qr{access_log /var/log/nginx/edge-access\.log edge;}, "access_log $ed/logs/access.log edge;", 'the edge\'s access_log');
swap(\$conf, qr{/var/lib/nginx/}, "$ed/temp/", 'the edge\'s temp paths');
swap(\$conf, qr{listen 443 ssl http2;}, "listen 127.0.0.1:$ep ssl http2;", 'listen 443 ssl http2');
write_file($e->conf_file, "daemon off;\n$conf");
my ($rc, $out) = $e->test_conf;
is($rc, 0, 'the edge: nginx -t accepts edge.conf (stock nginx, no qwen module)') or diag $out;
$e->start;

my $url = "https://edge.test:$ep";
my @curl = ('curl', '-sS', '--http2', '--cacert', "$ed/tls/ca.crt",
            '--resolve', "edge.test:$ep:127.0.0.1");
my $seq = 0;

# A request through the edge: { status, version, headers, body, json }.
sub edge {
    my ($method, $path, $body, %h) = @_;
    my $hf = "$ed/head." . $seq++;
    my @a = (@curl, '-X', $method, '-D', $hf);
    push @a, '-H', "$_: $h{$_}" for sort keys %h;
    push @a, '-H', 'Content-Type: application/json', '--data-binary',
        (ref $body ? $J->encode($body) : $body) if defined $body;
    open my $fh, '-|', @a, "$url$path" or die "curl: $!";
    local $/;
    my $text = <$fh> // '';
    close $fh;
    my $head = $e->slurp($hf) // '';
    my %hd;
    for (split /\r?\n/, $head) { $hd{lc $1} = $2 if /^([^:]+):\s*(.*)$/; }
    my ($ver, $st) = $head =~ m{^HTTP/(\S+) (\d+)};
    return { status => $st // 0, version => $ver // '', headers => \%hd, body => $text,
             json => QwenNginx::decode_json_or_undef($text) };
}

sub auth { my $who = shift; return ('Authorization' => "Bearer $keys{$who}"); }

sub edge_log { return split /\n/, ($e->slurp("$ed/logs/access.log") // ''); }

# the edge's access log line of a request (by its X-Request-Id)
sub edge_line {
    my $id = shift;
    my $deadline = time + 10;
    while (1) {
        my ($l) = grep { /\bid=\Q$id\E / } edge_log();
        return $l if defined $l || time > $deadline;
        sleep 0.05;
    }
}

# ---------------------------------------------------------------- API keys
my $r = edge('POST', '/v1/chat/completions', { messages => [{ role => 'user', content => 'hi' }] });
is($r->{status}, 401, 'no key: 401');
is($r->{json} && $r->{json}{error}{code}, 'invalid_api_key', '... OpenAI\'s error, code invalid_api_key');
is($r->{json} && $r->{json}{error}{type}, 'invalid_request_error', '... type invalid_request_error');
like($r->{headers}{'content-type'} // '', qr{^application/json}, '... as application/json');
like($r->{headers}{'www-authenticate'} // '', qr/^Bearer/, '... WWW-Authenticate: Bearer');
is($r->{version}, '2', '... over HTTP/2');
$r = edge('GET', '/v1/models', undef, 'Authorization' => 'Bearer sk-not-a-key');
is($r->{status}, 401, 'a wrong key: 401');
is($r->{json} && $r->{json}{error}{code}, 'invalid_api_key', '... invalid_api_key');
$r = edge('GET', '/api/tags', undef, 'Authorization' => 'Bearer sk-not-a-key');
is($r->{status}, 401, 'a wrong key on the Ollama API: 401');
ok($r->{json} && !ref $r->{json}{error} && $r->{json}{error} =~ /unauthorized/,
   '... Ollama\'s {"error": "..."}') or diag $r->{body};
$r = edge('GET', '/api/tags', undef, auth('alice'));
is($r->{status}, 200, 'a good key: /api/tags through the edge');
is($r->{json} && $r->{json}{models}[0]{name}, 'qwen3:0.6b', '... from a model host');
$r = edge('GET', '/elsewhere', undef, auth('alice'));
is($r->{status}, 404, 'other paths: a JSON 404');
ok($r->{json} && $r->{json}{error}{message}, '... with a message');

# ------------------------------------------------ a stream over TLS + HTTP/2
my $body = $J->encode({ prompt => [9707, 11, 1879], max_tokens => 200, temperature => 0,
                        ignore_eos => $T, stream => $T });
my $t0 = time;
open my $cu, '-|', @curl, '-N', '-D', "$ed/stream.head", '-H', 'Content-Type: application/json',
    '-H', "Authorization: Bearer $keys{alice}", '-H', 'X-Qwen-Tenant: mallory',
    '--data-binary', $body, "$url/v1/completions" or die "curl: $!";
my @events;
while (my $line = <$cu>) {
    chomp $line;
    push @events, { data => $1, time => time - $t0 } if $line =~ /^data: (.*)$/;
}
close $cu;
my $head = $e->slurp("$ed/stream.head") // '';
like($head, qr{^HTTP/2 200}, 'a stream through the edge: HTTP/2 200 over TLS');
like($head, qr{content-type: text/event-stream}i, '... text/event-stream');
is(@events && $events[-1]{data}, '[DONE]', '... ending with [DONE]');
ok(@events > 100, '... one event per token (' . scalar(@events) . ')');
my $span = @events ? $events[-1]{time} - $events[0]{time} : 0;
ok(@events && $span > 0.3 * $events[-1]{time},
   sprintf('... arriving as generated, not buffered (first %.0f ms, last %.0f ms)',
           ($events[0]{time} // 0) * 1000, ($events[-1]{time} // 0) * 1000));
like($head, qr{x-ratelimit-limit-tokens: 20000}i, '... with the host\'s token quota headers');
my @hostlog = map { split /\n/, ($_->slurp($_->dir . '/logs/access.log') // '') } @hosts;
ok((grep { /tenant=alice .*completion=200/ } @hostlog), '... the host saw tenant alice (X-Qwen-Tenant from the edge)');
ok(!(grep { /tenant=mallory/ } @hostlog), '... not the client\'s own X-Qwen-Tenant');

# ------------------------------------------------------ a host killed mid-run
my $long = $J->encode({ prompt => [9707, 11, 1879], max_tokens => 300, temperature => 0,
                        ignore_eos => $T, stream => $T,
                        stream_options => { include_usage => $T } });
my %kid;
for my $i (1 .. 6) {
    my $o = "$ed/s$i.out";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $o; open STDERR, '>', "$o.err";
        exec @curl, '-N', '-H', 'Content-Type: application/json', '-H', "X-Request-Id: s$i",
            '-H', "Authorization: Bearer $keys{bob}", '--data-binary', $long, "$url/v1/completions";
        exit 127;
    }
    $kid{$i} = $pid;
}
my $deadline = time + 20;
my @started;
while (time < $deadline) {
    @started = grep { ($e->slurp("$ed/s$_.out") // '') =~ /^data: / } 1 .. 6;
    last if @started == 6;
    sleep 0.05;
}
is(scalar @started, 6, 'six streams through the edge have begun');
my $h1 = $QwenNginx::JSON->decode(
    $hosts[0]->request('GET', '/health')->{body} || '{}');
ok(($h1->{running} // 0) >= 1, "host 1 serves $h1->{running} of them (least_conn spreads them)");

# the host dies: SIGKILL to its master, then to its worker (the other order
# let a loaded master see the worker die first and start a new one, which
# outlived it and kept serving: seen under load, "worker process exited on
# signal 9" then "start worker process" in the host's log)
my @victims = $hosts[0]->worker_pids;
kill 'KILL', $hosts[0]->master_pid;
waitpid($hosts[0]->master_pid, 0);
kill 'KILL', @victims;
$hosts[0]{pid} = undef;

my %exit;
$deadline = time + 60;
while (keys %exit < 6 && time < $deadline) {
    for my $i (1 .. 6) {
        next if exists $exit{$i};
        $exit{$i} = $? >> 8 if waitpid($kid{$i}, WNOHANG) == $kid{$i};
    }
    sleep 0.05;
}
is(scalar keys %exit, 6, 'every stream has ended');
my ($cut, $done) = (0, 0);
for my $i (1 .. 6) {
    my $line = edge_line("s$i") // '';
    my ($up) = $line =~ /upstream=(\S+)/;
    my $text = $e->slurp("$ed/s$i.out") // '';
    my $tokens = () = $text =~ /^data: \{/mg;
    if (($up // '') eq $haddr[0]) {
        $cut++;
        ok($text !~ /\[DONE\]/ && ($exit{$i} // 0) != 0,
           "stream s$i, on the killed host, is cut (after $tokens tokens; curl exit $exit{$i})");
    } else {
        $done++;
        ok($text =~ /data: \[DONE\]/ && $text =~ /"completion_tokens":300\b/ && ($exit{$i} // 1) == 0,
           "stream s$i, on " . ($up // '?') . ", ends whole (300 tokens in $tokens events)");
    }
}
ok($cut >= 1, "$cut stream(s) lost with the host, $done served to their end by the others");

my @after;
for my $i (1 .. 4) {
    $r = edge('POST', '/v1/completions', { prompt => [9707, 11], max_tokens => 4 },
              auth('bob'), 'X-Request-Id' => "n$i");
    push @after, $r->{status};
}
is_deeply(\@after, [200, 200, 200, 200], 'new requests are answered with the host gone');
my @ups = map { (edge_line("n$_") // '') =~ /upstream=(.*?) upstream_status/ ? $1 : '' } 1 .. 4;
my @last = map { (split /, /)[-1] // '' } @ups;
ok(!(grep { $_ eq $haddr[0] || $_ eq '' } @last), "... by the other hosts (@ups)");

# ------------------------------------------------- a host whose queue is full
# host 2's two slots taken by clients of its own (the edge does not see them)
my @busy = map { $hosts[1]->stream_json('/v1/completions',
    { prompt => [9707, 11], max_tokens => 4000, ignore_eos => $T, stream => $T }) } 1 .. 2;
ok(defined $_->next_event(10), 'host 2: a slot taken directly') for @busy;
my $full = $hosts[1]->post_json('/v1/completions', { prompt => [1, 2], max_tokens => 2 });
is($full->{status}, 429, '... host 2 itself answers 429 now (queue full)');
my @st;
for my $i (1 .. 4) {
    $r = edge('POST', '/v1/completions', { prompt => [9707, 11], max_tokens => 4 },
              auth('bob'), 'X-Request-Id' => "q$i");
    push @st, $r->{status};
}
is_deeply(\@st, [200, 200, 200, 200], 'through the edge every request is answered');
my @retried = grep { /\Q$haddr[1]\E/ && /upstream_status=(?:\d+, )*429, 200 upstream_time/ }
              map { edge_line("q$_") // '' } 1 .. 4;
ok(@retried >= 1, scalar(@retried) . ' of them refused by host 2 (429) and retried on another host')
    or diag join "\n", map { edge_line("q$_") // '' } 1 .. 4;

# every live host full: the client gets a JSON error with a retry hint
my @busy3 = map { $hosts[2]->stream_json('/v1/completions',
    { prompt => [9707, 11], max_tokens => 4000, ignore_eos => $T, stream => $T }) } 1 .. 2;
ok(defined $_->next_event(10), 'host 3: a slot taken directly') for @busy3;
$r = edge('POST', '/v1/completions', { prompt => [9707, 11], max_tokens => 4 }, auth('bob'));
ok($r->{status} == 429 || $r->{status} == 503, "every host full: $r->{status}");
is($r->{json} && $r->{json}{error}{type}, 'overloaded_error', '... a JSON overloaded_error')
    or diag $r->{body};
like($r->{headers}{'retry-after'} // '', qr/^\d+$/, '... with Retry-After');
$_->close for @busy, @busy3;

# ---------------------------------------------------------------- limit_req
# $n requests at once from one key on one HTTP/2 connection: ({ status,
# retry, type, body }, ...)
my $burst = 0;
sub burst {
    my ($path, $n, $who) = @_;
    my $b = $burst++;
    open my $fh, '-|', @curl, '-w', "%{http_code} [%header{retry-after}] %{content_type}\n",
        '-H', "Authorization: Bearer $keys{$who}",
        map({ ('-o', "$ed/burst$b.$_.body", "$url$path") } 1 .. $n)
        or die "curl: $!";
    my @w = map { chomp; $_ } <$fh>;
    close $fh;
    return map { my ($st, $ra, $ct) = ($w[$_ - 1] // '') =~ /^(\d+) \[(.*?)\] ?(.*)$/;
                 { status => $st // 0, retry => $ra, type => $ct,
                   body => $e->slurp("$ed/burst$b.$_.body") // '' } } 1 .. $n;
}

my @res = burst('/v1/models', 40, 'carol');
my $ok = grep { $_->{status} eq '200' } @res;
my @limited = grep { $_->{status} eq '429' } @res;
ok($ok >= 20 && @limited >= 1 && $ok + @limited == 40,
   "40 requests at once from one key: $ok served, " . scalar(@limited) . ' refused by limit_req');
my $lj = @limited ? QwenNginx::decode_json_or_undef($limited[0]{body}) : undef;
is($lj && $lj->{error}{code}, 'rate_limit_exceeded', '... with OpenAI\'s JSON, rate_limit_exceeded')
    or diag(@limited ? $limited[0]{body} : 'no 429');
is(@limited ? $limited[0]{retry} : '', '1', '... Retry-After: 1');
like(@limited ? $limited[0]{type} : '', qr{^application/json}, '... as application/json');
@res = burst('/api/tags', 40, 'carol');
@limited = grep { $_->{status} eq '429' } @res;
$lj = @limited ? QwenNginx::decode_json_or_undef($limited[0]{body}) : undef;
ok(@limited >= 1, 'the same on the Ollama API: ' . scalar(@limited) . ' of 40 refused');
ok($lj && !ref $lj->{error} && $lj->{error} =~ /too many requests/,
   '... as Ollama\'s {"error": "..."}') or diag(@limited ? $limited[0]{body} : 'no 429');
$r = edge('GET', '/v1/models', undef, auth('alice'));
is($r->{status}, 200, 'another key is not limited');

my @bad = grep { !/exited on signal|\[alert\]|\[emerg\]|\[crit\]/ ? 0 : 1 }
          map { split /\n/, $_->error_log } $e, @hosts[1, 2];
is_deeply(\@bad, [], 'no crash or alert on the edge and the living hosts');
$_->stop for grep { $_->master_pid } $e, @hosts;
done_testing;
