# t/clients.t - real clients, unchanged: the official `openai` and `ollama`
# npm packages (installed by `make test` into build/npm) run a short script
# each (t/clients/*.mjs) against nginx: model lists, chat and generate, one
# body and streamed, a tool definition, and the errors they raise.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;

QwenNginx::require_built();

my $npm = QwenNginx::env_or('QWEN_NPM_DIR', "$QwenNginx::ROOT/build/npm");
my $node = `command -v node 2>/dev/null`;
chomp $node;
plan(skip_all => 'node is not installed') unless $node;
for my $pkg (qw(openai ollama)) {
    plan(skip_all => "npm package $pkg is not in $npm (make npm-deps)")
        unless -e "$npm/node_modules/$pkg/package.json";
}

# No prefix cache: the Ollama script compares prompt_eval_count with and
# without a tool definition, and the OpenAI script sends the same tool
# first, so with the cache on the tools prompt would be partly cached
# (prompt_eval_count counts evaluated tokens, as Ollama's does).
my $n = QwenNginx->serve(engine => 'qwen_prefix_cache off;',
                         server => 'location / { qwen_api ollama; } location /v1/ { qwen_api openai; }');

# Run a client script; returns its report (a hash) or undef.
sub run_client {
    my $script = shift;
    local $ENV{QWEN_PORT} = $n->port;
    local $ENV{QWEN_NPM_DIR} = $npm;
    my $out = `$node $QwenNginx::ROOT/t/clients/$script 2>&1`;
    my $rc = $? >> 8;
    my ($line) = grep { /^\{/ } split /\n/, $out;
    my $r = defined $line ? QwenNginx::decode_json_or_undef($line) : undef;
    ok($rc == 0 && $r, "$script runs to the end") or diag $out;
    return $r // {};
}

# ---------------------------------------------------------------- openai
my $r = run_client('openai_client.mjs');
is_deeply($r->{models}, ['qwen3'], 'openai: models.list() names the model');
is($r->{chat}{object}, 'chat.completion', 'openai: chat.completions.create()');
is($r->{chat}{role}, 'assistant', '... an assistant message');
is($r->{chat}{finish_reason}, 'length', '... cut by max_tokens');
is($r->{chat}{usage}{completion_tokens}, 5, '... usage.completion_tokens');
ok($r->{chat_stream}{chunks} >= 3, "openai: chat stream ($r->{chat_stream}{chunks} chunks)");
is($r->{chat_stream}{ids}, 1, '... one id across chunks');
is($r->{chat_stream}{finish_reason}, 'length', '... finish_reason in the last choice');
is($r->{chat_stream}{usage}{completion_tokens}, 6, '... and the usage chunk');
is($r->{completion}{object}, 'text_completion', 'openai: completions.create()');
is($r->{completion}{usage}{completion_tokens}, 4, '... 4 tokens');
is($r->{completion_stream}{text}, $r->{completion}{text},
   'openai: streamed completion, greedy, has the same text');
is($r->{tools}{status}, 'ok', 'openai: a tool definition is accepted');
ok(($r->{tools}{prompt_tokens} // 0) > ($r->{tools}{prompt_tokens_without} // 0) + 20,
   "... and goes into the prompt ($r->{tools}{prompt_tokens} vs "
   . "$r->{tools}{prompt_tokens_without} prompt tokens)");
is($r->{unknown_model}{status}, 404, 'openai: an unknown model raises 404');
ok($r->{unknown_model}{not_found}, '... as OpenAI.NotFoundError');

# ---------------------------------------------------------------- ollama
$r = run_client('ollama_client.mjs');
is($r->{list}[0]{name}, 'qwen3:0.6b', 'ollama: list() names the model');
is($r->{list}[0]{details}{family}, 'qwen3', '... with its family');
is_deeply($r->{ps}, ['qwen3:0.6b'], 'ollama: ps() shows it resident');
like($r->{version} // '', qr/^\d+\.\d+\.\d+$/, 'ollama: version()');
is($r->{show}{family}, 'qwen3', 'ollama: show()');
ok($r->{show}{has_template}, '... with a template');
is($r->{chat}{role}, 'assistant', 'ollama: chat() (stream false)');
ok($r->{chat}{done}, '... done');
is($r->{chat}{done_reason}, 'length', '... done_reason length (num_predict)');
is($r->{chat}{eval_count}, 5, '... eval_count = num_predict');
ok($r->{chat}{prompt_eval_count} > 0 && $r->{chat}{total_duration} > 0,
   '... prompt_eval_count and total_duration');
ok($r->{chat_stream}{parts} >= 3, "ollama: chat stream ($r->{chat_stream}{parts} parts)");
is($r->{chat_stream}{last}{done_reason}, 'length', '... ends with done_reason');
is($r->{chat_stream}{last}{eval_count}, 6, '... and eval_count');
ok($r->{generate}{done}, 'ollama: generate() (stream false)');
is($r->{generate}{eval_count}, 4, '... eval_count = num_predict');
ok($r->{generate_stream}{done}, 'ollama: generate stream ends with done');
is($r->{generate_stream}{response}, $r->{generate}{response},
   '... greedy: the same text as one body');
ok($r->{tools}{done}, 'ollama: chat with tools');
ok(($r->{tools}{prompt_eval_count} // 0) > ($r->{tools}{prompt_eval_count_without} // 0) + 20,
   '... the tool definition goes into the prompt');
is($r->{unknown_model}{status}, 404, 'ollama: an unknown model raises 404');
like($r->{unknown_model}{error} // '', qr/not found/, '... "model ... not found"');
is($r->{pull}{status}, 501, 'ollama: pull() raises 501');
like($r->{pull}{error} // '', qr/not supported/, '... with a clear message');

is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
