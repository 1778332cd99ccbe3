# t/drain.t - SageMaker's stop: docker/serve (the container's command)
# with the shipped conf/sagemaker.conf gets SIGTERM while two streams run.
# The module drains: /ping and new generations answer 503 (JSON, Retry-
# After), the short stream finishes with [DONE], the long one ends with an
# error event at qwen_drain_timeout, and nginx (so serve) exits 0. Also
# serve's choices before it starts: the model in SM_MODEL_DIR (a Hugging
# Face directory or one .gguf) and qwen_threads from the cgroup CPU quota.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use File::Path qw(make_path);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

QwenNginx::require_built();

my $n = QwenNginx->new;
my $dir = $n->dir;
my $port = $n->port;
my $serve = "$QwenNginx::ROOT/docker/serve";
my $gguf = QwenNginx::model('tiny-f32.gguf');
my $hf = QwenNginx::model('tiny-f32-hf');
my %env = (QWEN_CONF => "$QwenNginx::ROOT/conf/sagemaker.conf",
           QWEN_MODULE => $QwenNginx::MODULE, QWEN_NGINX => $QwenNginx::NGINX,
           QWEN_RUN_DIR => "$dir/run", QWEN_LISTEN => "127.0.0.1:$port",
           SAGEMAKER_BIND_TO_PORT => $port, QWEN_CGROUP_ROOT => "$dir/cgroup");

# serve --dry-run with %env and more: (exit status, output)
sub dry_run {
    my %more = @_;
    local %ENV = (%ENV, %env, %more);
    my $out = `$serve --dry-run 2>&1`;
    return ($? >> 8, $out);
}

sub put {
    my ($file, $text) = @_;
    make_path($file =~ s{/[^/]+$}{}r);
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh;
}

# ------------------------------------------------------------ the model
my $nproc = `nproc` + 0;
my ($rc, $out) = dry_run(SM_MODEL_DIR => $hf);
is($rc, 0, 'serve --dry-run with a Hugging Face directory') or diag $out;
like($out, qr/qwen_model "\Q$hf\E";/, '... serves the directory');
like($out, qr/qwen_threads $nproc;/, "... no cgroup quota: qwen_threads $nproc (nproc)");
like($out, qr/listen 127\.0\.0\.1:$port;/, '... listen address set');
like($out, qr{pid \Q$dir\E/run/nginx\.pid;}, '... pid and temp paths in QWEN_RUN_DIR');
unlike($out, qr{ /tmp/nginx}, '... nothing left in /tmp');

my $md = "$dir/model";
make_path($md);
symlink $gguf, "$md/qwen3-0.6b-q4_k_m.gguf" or die $!;
($rc, $out) = dry_run(SM_MODEL_DIR => $md);
like($out, qr/qwen_model "\Q$md\E\/qwen3-0\.6b-q4_k_m\.gguf";/, 'one .gguf in the model directory: served');
put("$md/sub/other.gguf", '');
($rc, $out) = dry_run(SM_MODEL_DIR => $md);
isnt($rc, 0, 'two .gguf files: refused');
like($out, qr/several \.gguf files.*QWEN_MODEL/, '... saying to set QWEN_MODEL');
($rc, $out) = dry_run(SM_MODEL_DIR => "$dir/none");
like($out, qr/no model: .*none does not exist/, 'no model directory: said so');

# ------------------------------------------------------- the CPU quota
put("$dir/cgroup/cpu.max", "50000 100000\n");
($rc, $out) = dry_run(QWEN_MODEL => $gguf);
like($out, qr/qwen_threads 1;/, 'cgroup v2 cpu.max 50000/100000: 1 thread');
put("$dir/cgroup/cpu.max", "max 100000\n");
($rc, $out) = dry_run(QWEN_MODEL => $gguf);
like($out, qr/qwen_threads $nproc;/, 'cpu.max "max": nproc');
put("$dir/cgroup/cpu.max", "800000 100000\n");
($rc, $out) = dry_run(QWEN_MODEL => $gguf);
like($out, qr/qwen_threads $nproc;/, 'a quota above the CPUs it may run on: nproc');
unlink "$dir/cgroup/cpu.max";
put("$dir/cgroup/cpu/cpu.cfs_quota_us", "100000\n");
put("$dir/cgroup/cpu/cpu.cfs_period_us", "100000\n");
($rc, $out) = dry_run(QWEN_MODEL => $gguf);
like($out, qr/qwen_threads 1;/, 'cgroup v1 cfs quota 100000/100000: 1 thread');
($rc, $out) = dry_run(QWEN_MODEL => $gguf, QWEN_THREADS => 'x');
like($out, qr/QWEN_THREADS must be a positive number/, 'a bad QWEN_THREADS: said so');

# ------------------------------------------------------------ the drain
# The long stream must still be running at the deadline on any machine:
# the small model decodes ~340 tokens/s on 2 fast cores (tiny: ~1800, which
# finished 3000 tokens inside a 3 s drain), so its 3000 tokens outlast 2 s
# by a margin of several times.
my $t_drain = 2;
my $slow = QwenNginx::model('small-f32.gguf');
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    %ENV = (%ENV, %env, QWEN_MODEL => $slow, QWEN_THREADS => 2,
            QWEN_DRAIN_TIMEOUT => "${t_drain}s");
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', "$dir/logs/stdout.log";
    open STDERR, '>', "$dir/logs/stderr.log";
    exec $serve;
    exit 127;
}
my $deadline = time + 20;
sleep 0.05 until $n->can_connect || time > $deadline;
ok($n->can_connect, 'serve started nginx');

my $r = $n->request('GET', '/ping');
is($r->{status}, 200, 'GET /ping: 200 before SIGTERM');

my $T = JSON::PP::true;
my $long = $n->stream_json('/invocations', { prompt => [9707, 11], max_tokens => 3000,
                                              ignore_eos => $T, stream => $T });
my $short = $n->stream_json('/invocations', { prompt => [9707, 11], max_tokens => 60,
                                               ignore_eos => $T, stream => $T });
ok(defined $long->next_event(10) && defined $short->next_event(10), 'two streams generate');

my $t_term = time;
kill 'TERM', $pid;
# the drain starts once the worker has read the signal: /ping says so
my $ping;
for (1 .. 100) {
    $ping = $n->request('GET', '/ping');
    last if $ping->{status} == 503;
    sleep 0.02;
}
is($ping->{status}, 503, 'after SIGTERM: /ping 503');
$r = $n->post_json('/invocations', { prompt => 'Hello', max_tokens => 2 });
is($r->{status}, 503, 'a new invocation: 503');
like($r->{json}{error}{message} // '', qr/shutting down/, '... JSON: the server is shutting down');
ok(($r->{headers}{'retry-after'} // 0) >= 1, '... with Retry-After');

my @s = $short->all_events(20);
is($s[-1], '[DONE]', 'the short stream ran to its end ([DONE])');
like($s[-2] // '', qr/"finish_reason":"length"/, '... finish_reason length (max_tokens)');

my @l = $long->all_events(20);
my $t_end = time - $t_term;
like($l[-1] // '', qr/"error":\{"message":"the server is shutting down/,
     'the long stream ends with an error event');
ok(!grep({ $_ eq '[DONE]' } @l), '... without [DONE]');
ok($t_end >= $t_drain - 0.5 && $t_end < $t_drain + 3,
   sprintf('... at qwen_drain_timeout (%.1f s after SIGTERM, %d s set)', $t_end, $t_drain));

my $status;
$deadline = time + 15;
while (time < $deadline) {
    if (waitpid($pid, WNOHANG) == $pid) { $status = $?; last; }
    sleep 0.05;
}
ok(defined $status, sprintf('serve exited %.1f s after SIGTERM', time - $t_term));
is($status, 0, '... with status 0');
ok(!$n->can_connect, '... and nothing listens any more');
if (!defined $status) { kill 'KILL', $pid; waitpid($pid, 0); }

my $log = $n->slurp("$dir/logs/stderr.log") // '';
like($log, qr/qwen: draining: new generations and \/ping are answered 503; 2 running/,
     'error log: the drain began with 2 running generations');
like($log, qr/generation stopped: the server is shutting down/, '... one stopped at the deadline');
like($log, qr/qwen: drained: no generation left/, '... the worker drained');
like($log, qr/worker process \d+ exited with code 0/, '... exited 0');
like($log, qr/serve: nginx exited with status 0/, '... and serve says nginx exited 0');
my @crash = grep { /exited on signal|\[emerg\]|\[crit\]/ } split /\n/, $log;
is_deeply(\@crash, [], 'no crash, no emerg');
done_testing;
