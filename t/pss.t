# t/pss.t - the weights are loaded once, in the master, and every worker
# shares that copy: with 4 workers that have all run the model, the model
# file's pages count once in the sum of PSS, and 4 workers cost little more
# than 1 (per-worker KV cache and buffers, not weights).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use Time::HiRes qw(sleep);

QwenNginx::require_built();

sub smaps_for {
    my ($pid, $path) = @_;
    my ($rss, $pss, $cur) = (0, 0, 0);
    open my $fh, '<', "/proc/$pid/smaps" or return (0, 0);
    while (<$fh>) {
        if (/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/) {
            $cur = defined $path && $1 eq $path;
            next;
        }
        next unless $cur;
        $rss += $1 if /^Rss:\s+(\d+) kB/;
        $pss += $1 if /^Pss:\s+(\d+) kB/;
    }
    return ($rss, $pss);
}

sub rollup_pss {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/smaps_rollup" or return 0;
    while (<$fh>) {
        return $1 if /^Pss:\s+(\d+) kB/;
    }
    return 0;
}

# The sum of PSS over nginx's master and workers.
sub total_pss {
    my $n = shift;
    my $p = 0;
    $p += rollup_pss($_) for $n->master_pid, $n->worker_pids;
    return $p;
}

# Start nginx with $workers workers and make every worker run the model.
sub warm {
    my ($model, $workers) = @_;
    my $n = QwenNginx->serve(workers => $workers, model => $model, ctx => 256,
                             engine => 'qwen_threads 1; qwen_slots 1;', listen => 'reuseport',
                             server => 'location /v1/ { add_header X-Worker $pid always; qwen_api openai; }');
    my %seen;
    for (1 .. 400) {
        my $r = $n->post_json('/v1/completions', { prompt => [1, 2, 3], max_tokens => 2 });
        $seen{$r->{headers}{'x-worker'} // 0}++ if $r->{status} == 200;
        last if keys %seen >= $workers;
    }
    return ($n, scalar keys %seen);
}

for my $name ('tiny-f32.gguf', 'tiny-bf16-hf') {
    my $model = QwenNginx::model($name);
    my $size = 0;
    if (-d $model) {
        $size += -s $_ for glob "$model/*.safetensors";
    } else {
        $size = -s $model;
    }
    my $size_kb = int($size / 1024);

    my ($one, $seen1) = warm($model, 1);
    my $p1 = total_pss($one);
    $one->stop;

    my ($four, $seen4) = warm($model, 4);
    is($seen4, 4, "$name: all 4 workers ran the model");
    my @pids = ($four->master_pid, $four->worker_pids);
    my $p4 = 0;
    $p4 += rollup_pss($_) for @pids;

    if (!-d $model) {
        my ($sum_pss, $sum_rss, $min_rss) = (0, 0, 1e12);
        for my $pid ($four->worker_pids) {
            my ($rss, $pss) = smaps_for($pid, $model);
            $sum_rss += $rss;
            $sum_pss += $pss;
            $min_rss = $rss if $rss < $min_rss;
        }
        my ($mrss, $mpss) = smaps_for($four->master_pid, $model);
        $sum_pss += $mpss;
        diag("$name: file $size_kb kB; model mapping: Rss per worker >= $min_rss kB, "
             . "sum of Rss $sum_rss kB, sum of Pss $sum_pss kB (master + 4 workers)");
        ok($min_rss > $size_kb / 2, "$name: every worker has the weights mapped and touched");
        ok($sum_pss < $size_kb * 1.1, "$name: their PSS adds up to one copy of the file");
    }

    diag(sprintf "%s: sum of PSS, master + workers: 1 worker %d kB, 4 workers %d kB (+%d kB, weights %d kB)",
         $name, $p1, $p4, $p4 - $p1, $size_kb);
    ok($p4 - $p1 < $size_kb, "$name: 3 more workers cost less than one more copy of the weights");

    my @bad = $four->crashes;
    is_deeply(\@bad, [], "$name: no worker crashed, no alerts");
    $four->stop;
}

# A model whose weights this CPU's kernels read repacked (repack.h): the
# master packs them once into memory the workers share and drops the file pages of the
# packed tensors from its mapping, so the workers, forked after, hold the
# packed copy once between them and not the file's copy as well.
{
    my $name = 'small-q4_k_m.gguf';
    my $model = QwenNginx::model($name);
    my $size_kb = int((-s $model) / 1024);
    my $info = `$QwenNginx::QWEN info -m $model 2>/dev/null`;
    my ($packed) = $info =~ /"packed_bytes":(\d+)/;
    ok(defined $packed, "$name: qwen info says how much is packed");
    $packed //= 0;
    my $packed_kb = int($packed / 1024);
  SKIP: {
        skip("$name: this CPU's best kernels read no packed layout", 4) if $packed == 0;
        my ($one, $seen1) = warm($model, 1);
        my $p1 = total_pss($one);
        $one->stop;

        my ($four, $seen4) = warm($model, 4);
        is($seen4, 4, "$name: all 4 workers ran the model");
        my $p4 = total_pss($four);
        my $max_rss = 0;
        for my $pid ($four->worker_pids) {
            my ($rss, $pss) = smaps_for($pid, $model);
            $max_rss = $rss if $rss > $max_rss;
        }
        diag(sprintf "%s: file %d kB, packed %d kB; file pages resident per worker <= %d kB; "
             . "sum of PSS 1 worker %d kB, 4 workers %d kB", $name, $size_kb, $packed_kb,
             $max_rss, $p1, $p4);
        # what stays: norms, the tensors no kernel reads packed, the
        # embedding rows the lookup touched
        ok($max_rss < $size_kb - $packed_kb / 2,
           "$name: the packed tensors' file pages are not resident in the workers");
        ok($p4 - $p1 < $packed_kb, "$name: 3 more workers cost less than one more packed copy");
        my @bad = $four->crashes;
        is_deeply(\@bad, [], "$name: no worker crashed, no alerts");
        $four->stop;
    }
}

done_testing;
