# t/reload.t - `nginx -s reload` while a stream runs: the old worker finishes
# the stream to its end and then exits, new requests go to the new worker; a
# storm of reloads cuts no stream; a reload with a bad model fails and the
# running server keeps serving.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use Time::HiRes qw(time sleep);

QwenNginx::require_built();

my %engine = (ctx => 1024, engine => 'qwen_threads 1; qwen_slots 2;');
my $n = QwenNginx->serve(%engine);
my @first = $n->worker_pids;

my $N = 400;
my $s = $n->stream_json('/v1/completions',
    { prompt => [9707, 11], max_tokens => $N, ignore_eos => JSON::PP::true,
      stream => JSON::PP::true, stream_options => { include_usage => JSON::PP::true } });
ok(defined $s->next_event(10), 'a stream runs');

ok($n->reload, 'reload: new workers start');
my %was = map { $_ => 1 } @first;
my @second = grep { !$was{$_} } $n->worker_pids;
is(scalar @second, 1, '... with a new pid');
sleep 0.2;
ok(kill(0, $first[0]), 'the old worker is still there, finishing its stream');

my $r = $n->post_json('/v1/completions', { prompt => [1, 2], max_tokens => 2 });
is($r->{status}, 200, 'new requests are served during the old stream');

my @ev = $s->all_events(120);
is($ev[-1], '[DONE]', 'the old worker finished the stream');
my ($usage) = grep { /"usage":\{/ } @ev;
like($usage // '', qr/"completion_tokens":$N\b/, "... with all its $N tokens");

my $deadline = time + 10;
sleep 0.05 while $n->old_worker_pids && time < $deadline;
is(scalar($n->old_worker_pids), 0, 'then the old worker exits');

# a storm of reloads while streams run: none is cut, every one ends with
# all its tokens, and the workers of every generation exit when done
my @storm = map {
    $n->stream_json('/v1/completions',
        { prompt => [9707, 11 + $_], max_tokens => 200, ignore_eos => JSON::PP::true,
          stream => JSON::PP::true, stream_options => { include_usage => JSON::PP::true } })
} 1 .. 3;
ok(defined $_->next_event(10), 'storm: a stream runs') for @storm;
my $reloads = 0;
for (1 .. 8) {
    $reloads++ if $n->reload;
    my $q = $n->post_json('/v1/completions', { prompt => [1, 2], max_tokens => 1 });
    last unless $q->{status} == 200;
    sleep 0.1;
}
is($reloads, 8, 'storm: 8 reloads, each answered by new workers');
for my $i (0 .. $#storm) {
    my @e = $storm[$i]->all_events(120);
    my ($u) = grep { /"usage":\{/ } @e;
    ok(($e[-1] // '') eq '[DONE]' && ($u // '') =~ /"completion_tokens":200\b/,
       "storm: stream $i ends with [DONE] and all 200 tokens");
}
$deadline = time + 20;
sleep 0.05 while $n->old_worker_pids && time < $deadline;
is(scalar($n->old_worker_pids), 0, 'storm: every old worker exited');
@second = $n->worker_pids;

# a reload with a model that does not load
$n->write_conf(http => QwenNginx::tiny_http(%engine, model => '/nonexistent/model.gguf'));
my ($rc, $out) = $n->test_conf;
isnt($rc, 0, 'nginx -t rejects the bad model');
ok(!$n->reload(timeout => 1), 'reload with the bad model starts no new workers');
like($n->error_log, qr{qwen_model "/nonexistent/model.gguf" cannot be loaded}, '... and says why');
is_deeply([$n->worker_pids], \@second, 'the running workers stay');
$r = $n->post_json('/v1/completions', { prompt => [1, 2], max_tokens => 2 });
is($r->{status}, 200, 'and keep serving');

# a truncated model file fails the same way
my $cut = $n->dir . '/cut.gguf';
system("head -c 2000000 " . QwenNginx::model("tiny-f32.gguf") . " > $cut") == 0 or die;
$n->write_conf(http => QwenNginx::tiny_http(%engine, model => $cut));
ok(!$n->reload(timeout => 1), 'reload with a truncated model starts no new workers');
$r = $n->post_json('/v1/completions', { prompt => [1, 2], max_tokens => 2 });
is($r->{status}, 200, 'the server keeps serving');

my @bad = grep { /exited on signal|\[alert\]/ } split /\n/, $n->error_log;
is_deeply(\@bad, [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
