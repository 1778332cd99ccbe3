package QwenNginx;

# t/lib/QwenNginx.pm - a small harness for the nginx module's tests, core
# Perl only: write nginx.conf from a template into a fresh directory, start
# a real nginx (daemon off, its own prefix) on a free loopback port, send
# raw HTTP/1.1 requests and read responses as they arrive (SSE events one by
# one, with their arrival times), reload, stop, and check the error log for
# crashed workers.
#
# Environment (set by `make test-nginx`): QWEN_NGINX_MODULE, QWEN_NGINX_BIN,
# QWEN_TEST_MODELS, QWEN_BIN, QWEN_TEST_TMP.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Select;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

our $ROOT = abs_path(dirname(__FILE__) . '/../..');

sub env_or {
    my ($name, $default) = @_;
    return defined $ENV{$name} && $ENV{$name} ne '' ? $ENV{$name} : $default;
}

our $MODULE = env_or('QWEN_NGINX_MODULE', "$ROOT/build/ngx_http_qwen_module.so");
our $NGINX  = env_or('QWEN_NGINX_BIN', '/usr/sbin/nginx');
our $MODELS = env_or('QWEN_TEST_MODELS', "$ROOT/build/models");
our $QWEN   = env_or('QWEN_BIN', "$ROOT/build/qwen");
our $TMP    = env_or('QWEN_TEST_TMP', "$ROOT/build/t");

# Skip the whole file (not fail) when the pieces are not built.
sub require_built {
    my @missing = grep { !-e $_ } ($MODULE, $NGINX, "$MODELS/tiny-f32.gguf");
    return unless @missing;
    require Test::More;
    Test::More::plan(skip_all => "not built: @missing (make module test-models)");
}

sub model { my $name = shift; return "$MODELS/$name"; }

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# new(http => '...', workers => N, main => '...', events => '...')
# The http block text may use %%PORT%%, %%MODELS%%, %%DIR%%.
sub new {
    my ($class, %o) = @_;

    make_path($TMP);
    my $self = bless {
        dir     => tempdir('nginx-XXXXXX', DIR => $TMP, CLEANUP => !$ENV{QWEN_KEEP}),
        port    => free_port(),
        workers => $o{workers} // 1,
        http    => $o{http} // '',
        main    => $o{main} // '',
        pid     => undef,
    }, $class;

    # workers run as nobody: they must reach the temp directories
    chmod 0755, $self->{dir};
    make_path("$self->{dir}/logs", "$self->{dir}/temp");
    $self->write_conf;
    return $self;
}

# serve(model => 'tiny-f32.gguf', ctx => 512, engine => '...', http => '...',
#       listen => '...', server => '...', workers => N, main => '...'):
# new + start on the configuration most tests need, one engine on a test
# model (a name in the test models folder, or a path) and one server on
# %%PORT%% whose contents default to the OpenAI API at /v1/; a test says
# only what differs: engine directives, other http lines, listen
# parameters, its locations.
sub serve { my $self = configure(@_); $self->start; return $self; }

# configure(...): the same without starting, for `nginx -t` checks.
sub configure {
    my ($class, %o) = @_;
    return $class->new(http => tiny_http(%o),
                       map { defined $o{$_} ? ($_ => $o{$_}) : () } qw(workers main));
}

sub tiny_http {
    my (%o) = @_;
    my $model = $o{model} // 'tiny-f32.gguf';
    $model = "%%MODELS%%/$model" unless $model =~ m{^/};
    my $listen = defined $o{listen} ? " $o{listen}" : '';
    return join("\n", "qwen_model $model;", 'qwen_ctx ' . ($o{ctx} // 512) . ';',
                $o{engine} // '', $o{http} // '', 'server {',
                "listen 127.0.0.1:%%PORT%%$listen;",
                $o{server} // 'location /v1/ { qwen_api openai; }', '}') . "\n";
}

sub dir  { $_[0]{dir} }
sub port { $_[0]{port} }
sub conf_file { "$_[0]{dir}/nginx.conf" }
sub error_log_file { "$_[0]{dir}/logs/error.log" }

sub expand {
    my ($self, $text) = @_;
    $text =~ s/%%PORT%%/$self->{port}/g;
    $text =~ s/%%MODELS%%/$MODELS/g;
    $text =~ s/%%DIR%%/$self->{dir}/g;
    return $text;
}

sub write_conf {
    my ($self, %o) = @_;
    $self->{http} = $o{http} if defined $o{http};
    $self->{workers} = $o{workers} if defined $o{workers};

    my $d = $self->{dir};
    my $conf = <<"CONF";
load_module $MODULE;
worker_processes $self->{workers};
daemon off;
master_process on;
error_log $d/logs/error.log info;
pid $d/logs/nginx.pid;
$self->{main}
events {
    worker_connections 256;
}
http {
    access_log off;
    client_body_temp_path $d/temp/body;
    proxy_temp_path $d/temp/proxy;
    fastcgi_temp_path $d/temp/fastcgi;
    uwsgi_temp_path $d/temp/uwsgi;
    scgi_temp_path $d/temp/scgi;
    default_type application/octet-stream;

CONF
    $conf .= $self->expand($self->{http}) . "\n}\n";

    open my $fh, '>', $self->conf_file or die "cannot write nginx.conf: $!";
    print $fh $conf;
    close $fh;
}

# `nginx -t`: returns (exit status, output).
sub test_conf {
    my $self = shift;
    my $out = `$NGINX -p $self->{dir}/ -c $self->{dir}/nginx.conf -t 2>&1`;
    return ($? >> 8, $out);
}

sub start {
    my ($self, %o) = @_;
    my $d = $self->{dir};

    unlink "$d/logs/nginx.pid";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/logs/stdout.log";
        open STDERR, '>>', "$d/logs/stderr.log";
        exec $NGINX, '-p', "$d/", '-c', "$d/nginx.conf";
        exit 127;
    }
    $self->{pid} = $pid;

    my $deadline = time + ($o{timeout} // 20);
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $self->{pid} = undef;
            die "nginx exited at start:\n" . $self->slurp("$d/logs/stderr.log")
                . $self->error_log;
        }
        my @workers = $self->worker_pids;
        if (-s "$d/logs/nginx.pid" && @workers >= $self->{workers}
            && $self->can_connect)
        {
            return $self;
        }
        sleep 0.02;
    }
    die "nginx did not start in time:\n" . $self->error_log;
}

sub can_connect {
    my $self = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

sub master_pid { $_[0]{pid} }

# Children of the master whose process title matches $want and not $skip.
sub children {
    my ($self, $want, $skip) = @_;
    return () unless $self->{pid};
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        close $fh;
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*\) \S+ (\d+)/ or next;
        next unless $ppid == $self->{pid};
        my $cmd = $self->slurp("/proc/$pid/cmdline") // '';
        push @pids, $pid if $cmd =~ $want && !($skip && $cmd =~ $skip);
    }
    # sort in scalar context is undefined: callers count with scalar()
    @pids = sort { $a <=> $b } @pids;
    return @pids;
}

# The running workers, and those of an old generation finishing their requests.
sub worker_pids { $_[0]->children(qr/worker process/, qr/shutting down/) }
sub old_worker_pids { $_[0]->children(qr/shutting down/) }

# HUP, then wait until workers with new pids run.
sub reload {
    my ($self, %o) = @_;
    my %old = map { $_ => 1 } $self->worker_pids;
    kill 'HUP', $self->{pid};
    return 1 if $o{nowait};
    my $deadline = time + ($o{timeout} // 20);
    while (time < $deadline) {
        my @new = grep { !$old{$_} } $self->worker_pids;
        return 1 if @new >= $self->{workers};
        sleep 0.05;
    }
    return 0;
}

sub stop {
    my ($self, %o) = @_;
    my $pid = $self->{pid} or return;
    kill($o{fast} ? 'TERM' : 'QUIT', $pid);
    my $deadline = time + ($o{timeout} // 20);
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $self->{pid} = undef;
            return 1;
        }
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
    $self->{pid} = undef;
    return 0;
}

sub DESTROY {
    my $self = shift;
    local $?;
    $self->stop(fast => 1, timeout => 5) if $self->{pid};
}

sub slurp {
    my ($self, $file) = @_;
    open my $fh, '<', $file or return undef;
    local $/;
    my $text = <$fh>;
    close $fh;
    return $text;
}

sub error_log { my $self = shift; return $self->slurp($self->error_log_file) // ''; }

# Lines that mean a worker died or something went badly wrong.
sub crashes {
    my $self = shift;
    return grep { /exited on signal|\[alert\]|\[emerg\]|\[crit\]/ }
           split /\n/, $self->error_log;
}

# ------------------------------------------------------------------ HTTP

sub connect_socket {
    my $self = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => 5)
        or die "cannot connect to 127.0.0.1:$self->{port}: $!";
    $s->autoflush(1);
    binmode $s;
    return $s;
}

sub build_request {
    my ($self, $method, $path, $body, $headers) = @_;
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $headers //= {};
    for my $k (sort keys %$headers) {
        $req .= "$k: $headers->{$k}\r\n";
    }
    if (defined $body) {
        $req .= "Content-Type: application/json\r\n" unless grep { lc eq 'content-type' } keys %$headers;
        $req .= "Content-Length: " . length($body) . "\r\n" unless grep { lc eq 'transfer-encoding' } keys %$headers;
    }
    return $req . "\r\n" . ($body // '');
}

# A whole request: returns { status, headers (lowercase keys), body, time }.
sub request {
    my ($self, $method, $path, $body, $headers, %o) = @_;
    my $t0 = time;
    my $s = $self->connect_socket;
    print $s $self->build_request($method, $path, $body, $headers);
    my $raw = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + ($o{timeout} // 60);
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $raw .= $buf;
    }
    close $s;
    my $res = parse_response($raw);
    $res->{time} = time - $t0;
    return $res;
}

sub parse_response {
    my $raw = shift;
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    my $res = { status => 0, headers => {}, body => '', raw => $raw };
    return $res unless defined $head;
    my @lines = split /\r\n/, $head;
    my $status_line = shift @lines // '';
    ($res->{status}) = $status_line =~ m{^HTTP/\d\.\d (\d+)};
    $res->{status} //= 0;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $res->{headers}{lc $k} = $v;
    }
    $rest //= '';
    if (($res->{headers}{'transfer-encoding'} // '') =~ /chunked/i) {
        my ($body, $done) = dechunk(\$rest);
        $res->{body} = $body;
        $res->{complete} = $done;
    } else {
        $res->{body} = $rest;
        $res->{complete} = 1;
    }
    return $res;
}

# Consume whole chunks from $$buf; returns (data, saw the last chunk).
sub dechunk {
    my $buf = shift;
    my $out = '';
    while ($$buf =~ /^([0-9a-fA-F]+)[^\r\n]*\r\n/) {
        my $size = hex $1;
        my $hl = length($&);
        if ($size == 0) {
            return ($out, 1) if $$buf =~ s/^0[^\r\n]*\r\n\r\n//;
            last;
        }
        last if length($$buf) < $hl + $size + 2;
        $out .= substr($$buf, $hl, $size);
        substr($$buf, 0, $hl + $size + 2, '');
    }
    return ($out, 0);
}

# ------------------------------------------------------------- streaming

# Start a request and return a stream reader (see QwenNginx::Stream).
sub stream {
    my ($self, $method, $path, $body, $headers) = @_;
    my $s = $self->connect_socket;
    print $s $self->build_request($method, $path, $body, $headers);
    return QwenNginx::Stream->new($s);
}

package QwenNginx::Stream;

use strict;
use warnings;
use IO::Select;
use Time::HiRes qw(time);

sub new {
    my ($class, $sock) = @_;
    return bless { sock => $sock, raw => '', head => undef, chunked => 0,
                   data => '', done => 0, eof => 0, events => [],
                   t0 => time, reads => 0, inflate => undef }, $class;
}

sub socket { $_[0]{sock} }
sub status { $_[0]{status} }
sub headers { $_[0]{headers} }
sub eof { $_[0]{eof} }
sub done { $_[0]{done} }
sub close { my $self = shift; close $self->{sock} if $self->{sock}; $self->{sock} = undef; }

# Decompress gzip'ed bodies as they arrive (Compress::Raw::Zlib is core);
# set up by parse() when the response says Content-Encoding: gzip.
sub gunzip {
    my $self = shift;
    require Compress::Raw::Zlib;
    ($self->{inflate}) = Compress::Raw::Zlib::Inflate->new(
        -WindowBits => Compress::Raw::Zlib::WANT_GZIP(), -ConsumeInput => 1,
        -LimitOutput => 0);
}

# Read what is available within $timeout seconds; returns bytes read.
sub pump {
    my ($self, $timeout) = @_;
    return 0 unless $self->{sock} && !$self->{eof};
    my $sel = IO::Select->new($self->{sock});
    return 0 unless $sel->can_read($timeout);
    my $n = sysread($self->{sock}, my $buf, 65536);
    if (!$n) {
        $self->{eof} = 1;
        $self->close;
        return 0;
    }
    $self->{reads}++;
    $self->{raw} .= $buf;
    $self->parse;
    # the response is complete: close, so nginx's lingering close ends
    $self->close if $self->{done};
    return $n;
}

sub parse {
    my $self = shift;
    if (!defined $self->{head}) {
        my $i = index($self->{raw}, "\r\n\r\n");
        return if $i < 0;
        $self->{head} = substr($self->{raw}, 0, $i);
        substr($self->{raw}, 0, $i + 4, '');
        my @lines = split /\r\n/, $self->{head};
        ($self->{status}) = (shift(@lines) // '') =~ m{^HTTP/\d\.\d (\d+)};
        $self->{headers} = {};
        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
            $self->{headers}{lc $k} = $v;
        }
        $self->{chunked} = ($self->{headers}{'transfer-encoding'} // '') =~ /chunked/i;
        $self->{t_head} = time;
        $self->gunzip if ($self->{headers}{'content-encoding'} // '') =~ /gzip/i;
    }
    my $bytes;
    if ($self->{chunked}) {
        my ($data, $done) = QwenNginx::dechunk(\$self->{raw});
        $bytes = $data;
        $self->{done} = 1 if $done;
    } else {
        $bytes = $self->{raw};
        $self->{raw} = '';
    }
    if ($self->{inflate} && length $bytes) {
        my $out = '';
        $self->{inflate}->inflate($bytes, $out);
        $bytes = $out;
    }
    $self->{data} .= $bytes;
    while ($self->{data} =~ s/^(.*?)\n\n//s) {
        my $ev = $1;
        my $data = join "\n", map { s/^data: ?//r } grep { /^data:/ } split /\n/, $ev;
        push @{$self->{events}}, { data => $data, time => time - $self->{t0} };
    }
}

# The next SSE event's data (undef on timeout or end of stream).
sub next_event {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 30);
    while (!@{$self->{events}}) {
        return undef if $self->{eof} || $self->{done} || time >= $deadline;
        $self->pump($deadline - time);
    }
    my $ev = shift @{$self->{events}};
    $self->{last_event_time} = $ev->{time};
    return $ev->{data};
}

sub last_event_time { $_[0]{last_event_time} }

# Wait for the response head only.
sub wait_head {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 30);
    while (!defined $self->{head}) {
        return 0 if $self->{eof} || time >= $deadline;
        $self->pump($deadline - time);
    }
    return 1;
}

# All remaining events until the end; returns the list of data strings.
sub all_events {
    my ($self, $timeout) = @_;
    my @all;
    while (defined(my $ev = $self->next_event($timeout))) {
        push @all, $ev;
    }
    return @all;
}

# The body bytes not consumed as events (non-SSE responses).
sub body {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 30);
    while (!$self->{eof} && !$self->{done} && time < $deadline) {
        $self->pump($deadline - time);
    }
    return $self->{data};
}

1;

package QwenNginx;

use JSON::PP ();

our $JSON = JSON::PP->new->utf8->canonical;

sub decode_json_or_undef {
    my $text = shift;
    my $v = eval { $JSON->decode($text) };
    return $v;
}

# POST a JSON body (a Perl structure) and decode the JSON answer.
sub post_json {
    my ($self, $path, $data, $headers, %o) = @_;
    my $res = $self->request('POST', $path, ref $data ? $JSON->encode($data) : $data,
                             $headers, %o);
    $res->{json} = decode_json_or_undef($res->{body});
    return $res;
}

sub get_json {
    my ($self, $path, %o) = @_;
    my $res = $self->request('GET', $path, undef, undef, %o);
    $res->{json} = decode_json_or_undef($res->{body});
    return $res;
}

# A stream of a JSON request.
sub stream_json {
    my ($self, $path, $data, $headers) = @_;
    return $self->stream('POST', $path, $JSON->encode($data), $headers);
}

1;
