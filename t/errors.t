# t/errors.t - every client error is a 4xx with a JSON error body in the
# OpenAI format (shared/docs/api.md): malformed JSON, wrong types, values
# out of range, prompts longer than the context, unknown models, bodies over
# client_max_body_size, unknown endpoints and methods. No worker dies.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

my $n = QwenNginx->serve(ctx => 64, server => 'client_max_body_size 2k;
                                               location /v1/ { qwen_api openai; }');

sub check_error {
    my ($r, $status, $type, $name, $message) = @_;
    subtest $name => sub {
        is($r->{status}, $status, "status $status");
        like($r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON');
        my $j = QwenNginx::decode_json_or_undef($r->{body});
        ok($j && ref $j->{error} eq 'HASH', 'an error object') or diag $r->{body};
        is($j->{error}{type}, $type, "type $type") if $j;
        ok(length($j->{error}{message} // ''), 'with a message') if $j;
        like($j->{error}{message}, $message, 'saying what is wrong') if $j && $message;
    };
}

my $chat = '/v1/chat/completions';
my $cmpl = '/v1/completions';
my $msgs = [{ role => 'user', content => 'hi' }];

check_error($n->post_json($chat, '{"messages": [{"role": "user", "content": "hi"}'),
            400, 'invalid_request_error', 'malformed JSON', qr/JSON/i);
check_error($n->post_json($chat, ''), 400, 'invalid_request_error', 'an empty body');
check_error($n->post_json($chat, '[1, 2]'), 400, 'invalid_request_error', 'a body that is not an object');
check_error($n->post_json($chat, { messages => 'hi' }), 400, 'invalid_request_error',
            'messages of the wrong type', qr/messages/);
check_error($n->post_json($chat, { messages => $msgs, max_tokens => 'ten' }), 400,
            'invalid_request_error', 'max_tokens of the wrong type', qr/max_tokens/);
check_error($n->post_json($chat, { messages => $msgs, temperature => 'hot' }), 400,
            'invalid_request_error', 'temperature of the wrong type', qr/temperature/);
check_error($n->post_json($chat, { messages => $msgs, stream => 'yes' }), 400,
            'invalid_request_error', 'stream of the wrong type', qr/stream/);
check_error($n->post_json($chat, { messages => $msgs, temperature => 5 }), 400,
            'invalid_request_error', 'temperature out of range', qr/temperature/);
check_error($n->post_json($chat, { messages => $msgs, top_p => 1.5 }), 400,
            'invalid_request_error', 'top_p out of range', qr/top_p/);
check_error($n->post_json($chat, { messages => $msgs, top_logprobs => 50, logprobs => JSON::PP::true }),
            400, 'invalid_request_error', 'top_logprobs out of range', qr/top_logprobs/);
check_error($n->post_json($chat, { messages => $msgs, n => 3 }), 400,
            'invalid_request_error', 'n other than 1', qr/\bn\b/);
check_error($n->post_json($chat, { messages => $msgs, max_tokens => -5 }), 400,
            'invalid_request_error', 'negative max_tokens', qr/max_tokens/);
check_error($n->post_json($cmpl, { prompt => [1, 2, 999999999] }), 400,
            'invalid_request_error', 'a token id outside the vocabulary');
check_error($n->post_json($cmpl, { prompt => [(1) x 100], max_tokens => 1 }), 400,
            'invalid_request_error', 'a prompt longer than the context', qr/context/);
check_error($n->post_json($chat, { model => 'gpt-4o', messages => $msgs }), 404,
            'not_found_error', 'an unknown model', qr/gpt-4o/);

my $big = { messages => [{ role => 'user', content => 'x' x 4000 }] };
check_error($n->post_json($chat, $big), 413, 'invalid_request_error',
            'a body over client_max_body_size', qr/client_max_body_size/);
my $body = $QwenNginx::JSON->encode($big);
my $chunked = sprintf("%x\r\n%s\r\n0\r\n\r\n", length $body, $body);
my $r = $n->request('POST', $chat, $chunked, { 'Transfer-Encoding' => 'chunked' });
check_error($r, 413, 'invalid_request_error', 'a chunked body over client_max_body_size');

check_error($n->request('GET', '/v1/embeddings'), 404, 'not_found_error',
            'an unknown endpoint', qr/embeddings/);
$r = $n->request('GET', $chat);
check_error($r, 405, 'invalid_request_error', 'GET on chat completions', qr/POST/);
is($r->{headers}{allow}, 'POST', '... with an Allow header');
check_error($n->request('POST', '/v1/models', '{}'), 405, 'invalid_request_error', 'POST on models');

$r = $n->post_json($chat, { messages => $msgs, max_tokens => 2 });
is($r->{status}, 200, 'a good request still works after the errors');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
unlike($n->error_log, qr/exited on signal/, 'no worker exited on a signal');
$n->stop;
done_testing;
