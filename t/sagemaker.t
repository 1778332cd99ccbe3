# t/sagemaker.t - the SageMaker container contract with the shipped
# conf/sagemaker.conf (its module path, model, port and /tmp paths swapped
# for the test's): GET /ping 200 with an empty body, at once even while
# every slot is generating; POST /invocations with a chat body and a
# completion body, one JSON answer or, with "stream": true, SSE whose every
# HTTP chunk holds whole events; X-Amzn-SageMaker-Custom-Attributes echoed;
# errors as JSON; the $qwen_ variables in the access log on stdout.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use Time::HiRes qw(time);

QwenNginx::require_built();

my $n = QwenNginx->new;
my $dir = $n->dir;
my $port = $n->port;
my $conf = $n->slurp("$QwenNginx::ROOT/conf/sagemaker.conf");
my $model = QwenNginx::model('tiny-f32.gguf');
ok($conf =~ s{load_module modules/ngx_http_qwen_module\.so;}{load_module $QwenNginx::MODULE;}
   && $conf =~ s{qwen_model /opt/ml/model;}{qwen_model $model;}
   && $conf =~ s{listen 8080;}{listen 127.0.0.1:$port;}
   && $conf =~ s{pid /tmp/nginx\.pid;}{pid $dir/logs/nginx.pid;},
   'conf/sagemaker.conf has load_module, qwen_model /opt/ml/model, listen 8080, pid');
$conf =~ s{/tmp/nginx-}{$dir/temp/}g;
open my $fh, '>', $n->conf_file or die;
print $fh $conf;
close $fh;
my ($rc, $out) = $n->test_conf;
is($rc, 0, 'nginx -t accepts it') or diag $out;
$n->start;

my $T = JSON::PP::true;
my $msgs = [{ role => 'user', content => 'Hello' }];

# ------------------------------------------------------------------ ping
my $r = $n->request('GET', '/ping');
is($r->{status}, 200, 'GET /ping: 200');
is($r->{body}, '', '... with an empty body');
$r = $n->request('HEAD', '/ping');
is($r->{status}, 200, 'HEAD /ping: 200');

# every slot busy: /ping still answers at once
my $long = { prompt => [9707, 11, 1879], max_tokens => 3000, temperature => 0,
             ignore_eos => $T, stream => $T };
my @busy = map { $n->stream_json('/invocations', $long) } 1 .. 5;
ok(defined $busy[$_]->next_event(10), "long stream $_ generates") for 0 .. 3;
my $h = $n->get_json('/health');
is($h->{json}{running}, 4, 'the 4 slots are busy (/health)');
is($h->{json}{waiting}, 1, '... and one waits in the queue');
my @ms;
for (1 .. 5) {
    my $t = time;
    $r = $n->request('GET', '/ping');
    push @ms, (time - $t) * 1000;
    last if $r->{status} != 200;
}
is($r->{status}, 200, '/ping answers 200 while every slot generates');
my ($max) = sort { $b <=> $a } @ms;
ok($max < 500, sprintf('... in %.0f ms at most (SageMaker allows 2 s)', $max));
$_->close for @busy;

# ----------------------------------------------------------- invocations
$r = $n->post_json('/invocations', { messages => $msgs, max_tokens => 4 });
is($r->{status}, 200, 'POST /invocations with a chat body');
is($r->{json}{object}, 'chat.completion', '... answers a chat.completion');
like($r->{json}{id}, qr/^chatcmpl-/, '... chatcmpl- id');
is($r->{json}{usage}{completion_tokens}, 4, '... with usage');

$r = $n->post_json('/invocations', { prompt => 'Once upon a time', max_tokens => 3 });
is($r->{status}, 200, 'POST /invocations with a prompt body');
is($r->{json}{object}, 'text_completion', '... answers a text_completion');
like($r->{json}{id}, qr/^cmpl-/, '... cmpl- id');

$r = $n->post_json('/invocations', { messages => $msgs, max_tokens => 2 },
                   { 'X-Amzn-SageMaker-Custom-Attributes' => 'trace-id=abc,tenant=7' });
is($r->{headers}{'x-amzn-sagemaker-custom-attributes'}, 'trace-id=abc,tenant=7',
   'X-Amzn-SageMaker-Custom-Attributes is echoed');

# stream: whole events per HTTP chunk
$r = $n->post_json('/invocations', { messages => $msgs, max_tokens => 30, stream => $T },
                   { 'X-Amzn-SageMaker-Custom-Attributes' => 'x=1' });
is($r->{status}, 200, 'stream true');
is($r->{headers}{'content-type'}, 'text/event-stream', '... is text/event-stream');
is($r->{headers}{'x-amzn-sagemaker-custom-attributes'}, 'x=1', '... with the attributes');
my (undef, $raw) = split /\r\n\r\n/, $r->{raw}, 2;
my (@chunks, $bad);
while ($raw =~ s/^([0-9a-fA-F]+)\r\n//) {
    my $size = hex $1;
    last if $size == 0;
    push @chunks, substr($raw, 0, $size, '');
    $raw =~ s/^\r\n//;
}
# a chunk per engine poll, then the finish: 30 tokens come in 1 to 30 of
# them as they arrive (a busy worker may find them all at once), so at
# least 2 chunks, never the whole answer buffered into one
ok(@chunks >= 2, 'the stream came in ' . @chunks . ' HTTP chunks');
$bad = grep { !/\A(?:data: [^\n]+\n\n)+\z/ } @chunks;
is($bad, 0, '... each holding whole "data: ...\n\n" events');
my @events = map { /^data: (.*)$/mg } @chunks;
is($events[-1], '[DONE]', '... ending with [DONE]');
is(scalar(grep { !defined QwenNginx::decode_json_or_undef($_) } @events[0 .. $#events - 1]), 0,
   '... the others JSON chunks');
like($events[0], qr/"object":"chat\.completion\.chunk"/, '... chat.completion.chunk');

$r = $n->post_json('/invocations', { prompt => 'Hi', max_tokens => 5, stream => $T });
like($r->{body}, qr/"object":"text_completion".*data: \[DONE\]\n\n\z/s,
     'a streamed prompt body: text_completion events');

# the LMI / TGI schema: [{"generated_text"}], streamed as JSON lines
$r = $n->post_json('/invocations', { inputs => 'What is Deep Learning?',
                                     parameters => { max_new_tokens => 5, details => $T } });
is($r->{status}, 200, 'LMI body ("inputs"): 200');
is(ref $r->{json}, 'ARRAY', '... a list, as TGI answers');
ok(defined $r->{json}[0]{generated_text}, '... with generated_text');
is($r->{json}[0]{details}{generated_tokens}, 5, '... details: 5 generated tokens');
is($r->{json}[0]{details}{finish_reason}, 'length', '... finish_reason length');
my $greedy = $r->{json}[0]{generated_text};
$r = $n->post_json('/invocations', { inputs => 'What is Deep Learning?',
                                     parameters => { max_new_tokens => 5 } });
is($r->{json}[0]{generated_text}, $greedy, '... greedy by default: the same text again');
my $ls = $n->stream_json('/invocations', { inputs => 'What is Deep Learning?', stream => $T,
                                           parameters => { max_new_tokens => 12,
                                                           ignore_eos => $T } });
my $lmi_body = $ls->body(30);
is($ls->status, 200, 'LMI stream: 200');
is($ls->headers->{'content-type'}, 'application/jsonlines', '... application/jsonlines');
my @lines = map { QwenNginx::decode_json_or_undef($_) } split /\n/, $lmi_body;
is(scalar(grep { ref $_ && ref $_->{token} && defined $_->{token}{id} } @lines), scalar(@lines),
   '... every line a JSON object with a token');
ok(@lines >= 12, '... one line per token (' . scalar(@lines) . ' lines)');
is(join('', map { $_->{token}{text} } @lines), $lines[-1]{generated_text},
   '... the tokens\' texts join to the last line\'s generated_text');
$r = $n->post_json('/invocations', { inputs => 'x', parameters => { top_p => 2 } });
is($r->{status}, 400, 'LMI: a bad parameter is 400');
like($r->{json}{error} // '', qr/parameters\.top_p/, '... naming it, in TGI\'s error shape');
is($r->{json}{error_type}, 'validation', '... error_type validation');

# Batch Transform
$r = $n->get_json('/execution-parameters');
is($r->{status}, 200, 'GET /execution-parameters: 200');
is_deeply($r->{json}, { MaxConcurrentTransforms => 4, BatchStrategy => 'SINGLE_RECORD',
                        MaxPayloadInMB => 6 }, '... slots x workers, one record, 6 MB');

# errors
$r = $n->post_json('/invocations', { input => 'x' },
                   { 'X-Amzn-SageMaker-Custom-Attributes' => 'y=2' });
is($r->{status}, 400, 'neither messages nor prompt: 400');
like($r->{json}{error}{message}, qr/messages.*prompt/, '... says what is expected');
is($r->{headers}{'x-amzn-sagemaker-custom-attributes'}, 'y=2', '... attributes echoed on errors too');
$r = $n->post_json('/invocations', '[1,2]');
is($r->{status}, 400, 'a body that is not an object: 400');
$r = $n->post_json('/invocations', '{"messages":');
is($r->{status}, 400, 'broken JSON: 400');
is($r->{json}{error}{type}, 'invalid_request_error', '... invalid_request_error');
$r = $n->post_json('/invocations', { messages => $msgs, model => 'other' });
is($r->{status}, 404, 'an unknown model: 404');
$r = $n->get_json('/invocations');
is($r->{status}, 405, 'GET /invocations: 405');
is($r->{headers}{allow}, 'POST', '... Allow: POST');
$r = $n->request('POST', '/ping', '{}');
is($r->{status}, 405, 'POST /ping: 405');
$r = $n->request('POST', '/invocations', 'x' x (6 * 1024 * 1024 + 1));
is($r->{status}, 413, 'past SageMaker\'s 6 MB: 413');
ok(ref((QwenNginx::decode_json_or_undef($r->{body}) // {})->{error}), '... JSON');
like($r->{body}, qr/"type":"invalid_request_error"/, '... an OpenAI error body');

# the operator's endpoints
$r = $n->get_json('/health');
is($r->{json}{status}, 'ok', '/health is there');
$r = $n->request('GET', '/metrics');
like($r->{body}, qr/^qwen_request_success_total\{finished_reason="length"\} [1-9]/m, '/metrics counts');

$n->stop;

# the access log on stdout with the $qwen_ variables
my $log = $n->slurp("$dir/logs/stdout.log") // '';
like($log, qr{"POST /invocations HTTP/1.1" 200 \d+ [\d.]+ prompt=\d+ completion=4 ttft=\d+\.\d{3} tps=[\d.]+ finish=length queue=\d+\.\d{3}},
     'access log: the $qwen_ variables of a chat invocation');
like($log, qr{"GET /ping HTTP/1.1" 200 .* prompt=- completion=- ttft=- tps=- finish=- queue=-},
     '... empty for /ping');
like($log, qr{attrs="trace-id=abc,tenant=7"}, '... and the custom attributes');
like($log, qr{finish=cancelled}, '... the streams closed by the client: cancelled');
my @crash = grep { /exited on signal|\[alert\]|\[emerg\]|\[crit\]/ }
            split /\n/, ($n->slurp("$dir/logs/stderr.log") // '');
is_deeply(\@crash, [], 'no worker crashed, no alerts (error_log stderr)');
done_testing;
