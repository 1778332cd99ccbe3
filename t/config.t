# t/config.t - directives are validated at `nginx -t` with messages that say
# what is wrong: model paths, broken model files, values out of range, and
# engine settings that two locations sharing a model disagree on.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

my $good = QwenNginx::model('tiny-f32.gguf');

sub conf_test {
    my ($http) = @_;
    my $n = QwenNginx->new(http => $http);
    my ($rc, $out) = $n->test_conf;
    return ($rc, $out, $n);
}

sub server {
    my ($top, $loc) = @_;
    $loc //= 'qwen_api openai;';
    return "$top\n server { listen 127.0.0.1:%%PORT%%; location /v1/ { $loc } }\n";
}

my ($rc, $out, $n);

($rc, $out) = conf_test(server("qwen_model $good;"));
is($rc, 0, 'a valid configuration passes nginx -t') or diag $out;

($rc, $out) = conf_test(server(''));
isnt($rc, 0, 'qwen_api without a model fails');
like($out, qr/"qwen_api" in location "\/v1\/" has no model/, '... saying the model is missing');

($rc, $out) = conf_test(server("qwen_model /nonexistent/model.gguf;"));
isnt($rc, 0, 'a missing model file fails nginx -t');
like($out, qr{qwen_model "/nonexistent/model.gguf" cannot be loaded}, '... naming the path');

# a truncated model file: the loader checks offsets against the file size
$n = QwenNginx->new;
my $cut = $n->dir . '/truncated.gguf';
{
    open my $in, '<:raw', $good or die;
    read $in, my $buf, 1 << 20;
    open my $o, '>:raw', $cut or die;
    print $o $buf;
    close $o;
}
($rc, $out) = conf_test(server("qwen_model $cut;"));
isnt($rc, 0, 'a truncated model file fails nginx -t');
like($out, qr{qwen_model "\Q$cut\E" cannot be loaded: .+}, '... with the loader\'s reason');

my $junk = $n->dir . '/junk.gguf';
{ open my $o, '>', $junk or die; print $o "this is not a model\n" x 100; close $o; }
($rc, $out) = conf_test(server("qwen_model $junk;"));
isnt($rc, 0, 'a file that is not a model fails nginx -t');

($rc, $out) = conf_test(server("qwen_model $good;", 'qwen_api ollamax;'));
isnt($rc, 0, 'an unknown API fails');
like($out, qr/unknown API "ollamax" in "qwen_api"/, '... naming it');

($rc, $out) = conf_test(server("qwen_model $good; qwen_ctx 10000000;"));
isnt($rc, 0, 'qwen_ctx beyond the model fails');
like($out, qr/"qwen_ctx 10000000" in location "\/v1\/" is more than the \d+ positions/,
     '... saying the model\'s limit');

($rc, $out) = conf_test(server("qwen_model $good; qwen_slots 1024; qwen_ctx 40000;"));
isnt($rc, 0, 'slots x ctx beyond the memory fails');
like($out, qr/need \d+ MiB of KV cache per worker/, '... with the size it would need');

($rc, $out) = conf_test(server("qwen_model $good; qwen_slots 0;"));
isnt($rc, 0, 'qwen_slots 0 fails');
like($out, qr/qwen_slots/, '... naming the directive');

($rc, $out) = conf_test(server("qwen_model $good; qwen_batch 0;"));
isnt($rc, 0, 'qwen_batch 0 fails');
like($out, qr/invalid value "0" in "qwen_batch": expected a number from 1 to 65536/,
     '... with the value and the range');

($rc, $out) = conf_test(server("qwen_model $good; qwen_max_tokens many;"));
isnt($rc, 0, 'qwen_max_tokens with a word fails');
like($out, qr/"qwen_max_tokens" directive invalid number/, '... naming the directive');

($rc, $out) = conf_test(server("qwen_model $good; qwen_threads lots;"));
isnt($rc, 0, 'qwen_threads with a word fails');
like($out, qr/expected "auto" or a number/, '... saying what is expected');

($rc, $out) = conf_test(server("qwen_model $good; qwen_queue_full_status 404;"));
isnt($rc, 0, 'qwen_queue_full_status 404 fails');
like($out, qr/expected 429 or 503/, '... saying what is allowed');

($rc, $out) = conf_test(server("qwen_model $good; qwen_temperature 3.5;"));
isnt($rc, 0, 'qwen_temperature out of range fails');
like($out, qr/invalid value "3.5" in "qwen_temperature": expected a number from 0.00 to 2.00/,
     '... with the range');

($rc, $out) = conf_test(server("qwen_model $good; qwen_top_p 0.9x;"));
isnt($rc, 0, 'a malformed number fails');

($rc, $out) = conf_test(server("qwen_model $good; qwen_reasoning_field thoughts;"));
isnt($rc, 0, 'an unknown reasoning field fails');

($rc, $out) = conf_test(server("qwen_model $good; qwen_timeout 10s; qwen_temperature 0.2;"
    . " qwen_top_p 0.9; qwen_top_k 40; qwen_min_p 0.05; qwen_max_tokens 64;"
    . " qwen_presence_penalty 0.5; qwen_frequency_penalty 0.1; qwen_repetition_penalty 1.1;"
    . " qwen_enable_thinking off; qwen_reasoning_field reasoning; qwen_model_name mine;"
    . " qwen_threads 1; qwen_slots 2; qwen_ctx 256; qwen_batch 32; qwen_queue 4;"
    . " qwen_queue_full_status 503; qwen_retry_after 5s; qwen_kv_cache f16;"));
is($rc, 0, 'every directive with a valid value passes') or diag $out;

# two locations, one model, different engine settings
($rc, $out) = conf_test(<<"EOF2");
qwen_model $good;
server {
    listen 127.0.0.1:%%PORT%%;
    location /a/ { qwen_slots 2; qwen_api openai; }
    location /b/ { qwen_slots 3; qwen_api openai; }
}
EOF2
isnt($rc, 0, 'one model with two sets of engine settings fails');
like($out, qr/locations "\/a\/" and "\/b\/" serve model ".*" with different engine settings/,
     '... naming both locations');

# two locations sharing one model with the same settings, and model names
($rc, $out) = conf_test(<<"EOF2");
qwen_model $good;
qwen_slots 2;
server {
    listen 127.0.0.1:%%PORT%%;
    location /a/ { qwen_model_name one; qwen_api openai; }
    location /b/ { qwen_model_name two; qwen_temperature 0; qwen_api openai; }
}
EOF2
is($rc, 0, 'two locations share a model') or diag $out;
is(() = $out =~ /qwen: model ".*" loaded/g, 1, '... loaded once');

# qwen_kv_cache: auto picks f32 for F32 weights, BF16 where the kernels have a
# BF16 attention (AVX-512 BF16 here) and the weights are BF16 or quantized,
# f16 otherwise; f32, f16 and q8_0 work on every CPU
($rc, $out) = conf_test(server("qwen_model $good; qwen_kv_cache int4;"));
isnt($rc, 0, 'an unknown qwen_kv_cache value fails');
like($out, qr/invalid value "int4" in \S+nginx.conf:\d+/, "... naming the value and line");

for my $fmt (qw(auto f32 f16 q8_0)) {
    ($rc, $out) = conf_test(server("qwen_model $good; qwen_kv_cache $fmt;"));
    is($rc, 0, "qwen_kv_cache $fmt passes") or diag $out;
}

my $cpu_bf16 = (`uname -m` =~ /x86_64/ && `grep -c avx512_bf16 /proc/cpuinfo` > 0) ? 1 : 0;
($rc, $out) = conf_test(server("qwen_model $good; qwen_kv_cache bf16;"));
if ($cpu_bf16) {
    is($rc, 0, 'qwen_kv_cache bf16 passes on a CPU with AVX-512 BF16') or diag $out;
} else {
    isnt($rc, 0, 'qwen_kv_cache bf16 fails on a CPU without a BF16 attention');
    like($out, qr/"qwen_kv_cache bf16" in location "\/v1\/" needs kernels this CPU lacks/,
         '... saying why');
}

# the memory check counts the chosen format's bytes: tiny-f32 (2 layers, 2 KV
# heads of 32) takes 1024 bytes a position in f32, 272 in q8_0, so enough
# slots of 40000 positions fail in f32 and pass in q8_0
my ($mem_kb) = `grep MemTotal /proc/meminfo` =~ /(\d+)/;
my $slots = int($mem_kb * 1024 / 2 / (40000 * 1024)) + 1;
SKIP: {
    skip "$slots slots would exceed qwen_slots' 1024", 4 if $slots > 1024;
    my $conf = "qwen_model $good; qwen_slots $slots; qwen_ctx 40000; qwen_prefix_cache off;";
    ($rc, $out) = conf_test(server("$conf qwen_kv_cache f32;"));
    isnt($rc, 0, "$slots slots x 40000 positions in f32 are more than half the memory");
    like($out, qr/need \d+ MiB of KV cache per worker \(f32\)/, '... naming the format');
    ($rc, $out) = conf_test(server("$conf qwen_kv_cache auto;"));
    isnt($rc, 0, '... and so is auto, which is f32 for F32 weights');
    ($rc, $out) = conf_test(server("$conf qwen_kv_cache q8_0;"));
    is($rc, 0, '... in q8_0 (27% of the bytes) they fit') or diag $out;
}

($rc, $out) = conf_test(<<"EOF2");
qwen_model $good;
server {
    listen 127.0.0.1:%%PORT%%;
    location /a/ { qwen_kv_cache f16; qwen_api openai; }
    location /b/ { qwen_api openai; }
}
EOF2
isnt($rc, 0, 'one model with two KV cache formats fails');
like($out, qr/locations "\/a\/" and "\/b\/" serve model ".*" with different "qwen_kv_cache" \(f16\/auto\)/,
     '... naming both');

# what the engine picked, in the error log at worker start, with its size:
# tiny models, 1 slot of 4096 positions, 2 layers x 2 KV heads x 32
# dimensions: 4 MiB in f32, 2 in f16 and bf16, 1 in q8_0 (1088 KiB)
for my $case (['tiny-f32.gguf', 'auto', 'f32', 4], ['tiny-bf16.gguf', 'auto', $cpu_bf16 ? 'bf16' : 'f16', 2],
              ['tiny-bf16.gguf', 'f16', 'f16', 2], ['tiny-q8_0.gguf', 'q8_0', 'q8_0', 1],
              ['tiny-q8_0.gguf', 'f32', 'f32', 4])
{
    my ($file, $set, $want, $mib) = @$case;
    my $m = QwenNginx::model($file);
    $n = QwenNginx->new(http => server("qwen_model $m; qwen_kv_cache $set; qwen_slots 1;"))->start;
    my $log = '';
    for (1 .. 100) {
        $log = $n->error_log;
        last if $log =~ /engine for model/;
        select undef, undef, undef, 0.05;
    }
    like($log, qr/engine for model ".*\Q$file\E": .* KV cache $mib MiB \Q$want\E/,
         "$file with qwen_kv_cache $set: a $want cache of $mib MiB");
    $n->stop;
}

done_testing;
