# t/schema.t - structured output that never lies, through both APIs on the
# random-weight tiny model (real Qwen3 tokenizer), several seeds at
# temperature 1: every answer to an OpenAI response_format json_schema and
# to an Ollama format schema parses and validates against its schema with
# an independent validator (Debian's python3-jsonschema, Draft 2020-12 with
# its format checker), including schemas that mix the keywords and answers
# that max_tokens cut (then finish_reason says length and the JSON was
# closed in time); refused keywords are a 400 naming them and their path;
# logit_bias in Ollama's options.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp qw(tempfile);
use QwenNginx;

QwenNginx::require_built();

my $py = '/usr/bin/python3';
plan skip_all => 'python3-jsonschema is not installed (make deps)'
    unless system($py, '-c', 'import jsonschema') == 0;

my $n = QwenNginx->new(http => <<'EOF2');
    qwen_model %%MODELS%%/tiny-f32.gguf;
    qwen_ctx 1024;
    qwen_slots 2;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ { qwen_enable_thinking off; qwen_api openai; }
        location /ol/ { qwen_api ollama; }
        location = /tokenize { qwen_tokenize; }
    }
EOF2
$n->start;

my $F = JSON::PP::false;
my $json = JSON::PP->new->canonical;

my %schemas = (
    contact => {
        type => 'object',
        properties => {
            name  => { type => 'string', minLength => 2, maxLength => 24 },
            email => { type => 'string', format => 'email' },
            age   => { type => 'integer', minimum => 18, maximum => 99 },
            phone => { type => ['string', 'null'], pattern => '^\+?[0-9]{7,12}$' },
            tags  => { type => 'array', items => { enum => ['a', 'b', 'c'] }, uniqueItems => JSON::PP::true,
                       maxItems => 2 },
        },
        required => ['name', 'age'], additionalProperties => $F,
    },
    order => {
        type => 'object',
        '$defs' => { line => { type => 'object', properties => {
                        sku => { type => 'string', pattern => '^[A-Z]{3}-\d{4}$' },
                        qty => { type => 'integer', minimum => 1, maximum => 50, multipleOf => 5 } },
                     required => ['sku', 'qty'], additionalProperties => $F } },
        properties => {
            id    => { type => 'string', format => 'uuid' },
            date  => { type => 'string', format => 'date' },
            lines => { type => 'array', items => { '$ref' => '#/$defs/line' }, minItems => 1, maxItems => 3 },
            state => { enum => ['open', 'paid', 1, undef, { code => 7 }] },
            pair  => { type => 'array', prefixItems => [{ type => 'boolean' }, { const => 'x' }], items => $F },
        },
        required => ['id', 'date', 'lines', 'state'], additionalProperties => $F,
    },
    shape => {
        type => 'object',
        properties => {
            shape => { anyOf => [
                { type => 'object', properties => { kind => { const => 'circle' },
                  r => { type => 'number', minimum => 0, exclusiveMaximum => 10 } },
                  required => ['kind', 'r'], additionalProperties => $F },
                { type => 'object', properties => { kind => { const => 'rect' },
                  w => { type => 'integer', minimum => -5, maximum => 5 } },
                  required => ['kind', 'w'], additionalProperties => $F } ] },
            when => { type => 'string', format => 'date-time' },
            host => { type => 'string', format => 'hostname', maxLength => 20 },
            ip   => { oneOf => [{ type => 'string', format => 'ipv4' }, { type => 'null' }] },
        },
        required => ['shape', 'when', 'ip'], additionalProperties => $F,
    },
    tree => {
        '$defs' => { node => { type => 'object', properties => {
            v => { type => 'integer', exclusiveMinimum => 0 },
            kids => { type => 'array', maxItems => 2, items => { '$ref' => '#/$defs/node' } } },
            required => ['v'], additionalProperties => $F } },
        '$ref' => '#/$defs/node',
    },
);

my @records;   # [what, schema, text]
my ($cut, $stopped) = (0, 0);
for my $name (sort keys %schemas) {
    my $schema = $schemas{$name};
    for my $seed (1 .. 3) {
        # seed 1: a budget a little above the shortest valid answer's bytes
        my $max = $seed == 1 ? { contact => 30, order => 125, shape => 90, tree => 12 }->{$name} : 160;
        my $r = $n->post_json('/v1/chat/completions', {
            messages => [{ role => 'user', content => "Give a $name as JSON." }],
            response_format => { type => 'json_schema', json_schema => { name => $name, strict => JSON::PP::true, schema => $schema } },
            temperature => 1, seed => $seed, max_tokens => $max });
        is($r->{status}, 200, "openai $name seed $seed") or diag $r->{body};
        my $c = $r->{json}{choices}[0] // {};
        my $reason = $c->{finish_reason} // '';
        like($reason, qr/^(stop|length)$/, "... finish_reason $reason");
        $reason eq 'length' ? $cut++ : $stopped++;
        push @records, ["openai $name seed $seed ($reason)", $schema, $c->{message}{content} // ''];

        $r = $n->post_json('/ol/api/chat', {
            messages => [{ role => 'user', content => "Give a $name as JSON." }],
            format => $schema, think => $F, stream => $F,
            options => { temperature => 1, seed => $seed, num_predict => $max } });
        is($r->{status}, 200, "ollama $name seed $seed");
        $reason = $r->{json}{done_reason} // '';
        like($reason, qr/^(stop|length)$/, "... done_reason $reason");
        push @records, ["ollama $name seed $seed ($reason)", $schema, $r->{json}{message}{content} // ''];
    }
}
# a budget too small for anything but the shortest answer still closes it
{
    my $r = $n->post_json('/v1/chat/completions', {
        messages => [{ role => 'user', content => 'x' }],
        response_format => { type => 'json_schema', json_schema => { name => 'c', schema => $schemas{contact} } },
        temperature => 1, seed => 9, max_tokens => 22 });
    is($r->{status}, 200, 'max_tokens 22 for a schema needing 20 bytes at least');
    is($r->{json}{choices}[0]{finish_reason}, 'length', '... finish_reason length');
    push @records, ['openai contact, max_tokens 22', $schemas{contact}, $r->{json}{choices}[0]{message}{content} // ''];
}

# one independent validator run for every answer
my ($fh, $file) = tempfile(UNLINK => 1);
print $fh $json->encode({ what => $_->[0], schema => $_->[1], text => $_->[2] }), "\n" for @records;
close $fh;
my $out = `$py - $file 2>&1 <<'PY'
import json, sys, re, datetime
import jsonschema
fc = jsonschema.Draft202012Validator.FORMAT_CHECKER
try:
    import rfc3339_validator
except ImportError:
    # Debian 12 has no rfc3339_validator, without which jsonschema checks
    # no date-time or time: RFC 3339's grammar and ranges here
    def rfc3339(s, date):
        if not isinstance(s, str):
            return True
        # (doubled backslashes: this script is inside Perl's backticks)
        m = re.fullmatch((r"(\\d{4}-\\d{2}-\\d{2})[Tt]" if date else "()")
                         + r"(\\d{2}):(\\d{2}):(\\d{2})(\\.\\d+)?([Zz]|[+-](\\d{2}):(\\d{2}))", s)
        if (not m or int(m[2]) > 23 or int(m[3]) > 59 or int(m[4]) > 60
                or (m[7] and (int(m[7]) > 23 or int(m[8]) > 59))):
            raise ValueError("not RFC 3339")
        if date:
            datetime.date.fromisoformat(m[1])
        return True
    fc.checks("date-time", raises=ValueError)(lambda s: rfc3339(s, True))
    fc.checks("time", raises=ValueError)(lambda s: rfc3339(s, False))
for line in open(sys.argv[1]):
    rec = json.loads(line)
    try:
        inst = json.loads(rec["text"])
        v = jsonschema.Draft202012Validator(rec["schema"],
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errs = [e.message for e in v.iter_errors(inst)]
    except Exception as e:
        errs = ["does not parse: %s" % e]
    print("ok" if not errs else "INVALID " + errs[0][:200], "|", rec["what"], "|", json.dumps(rec["text"][:300]))
PY`;
my @lines = split /\n/, $out;
is(scalar(@lines), scalar(@records), 'the validator judged every answer') or diag $out;
for my $l (@lines) {
    like($l, qr/^ok \|/, "validates: $l");
}
diag "answers: $stopped ended by the model, $cut closed by max_tokens (openai)";

# ------------------------------------------------------------ refusals
my @refused = (
    [{ type => 'object', properties => { a => { allOf => [{}] } } }, qr{#/properties/a: 'allOf' is not supported}],
    [{ type => 'object', properties => { a => { type => 'string', pattern => '(?=x)' } } }, qr{#/properties/a: 'pattern'.*lookaround}],
    [{ type => 'object', properties => { a => { type => 'string', format => 'uri' } } }, qr{'format' "uri" is not supported}],
    [{ type => 'object', minProperties => 1 }, qr{#: 'minProperties' is not supported}],
    [{ type => 'object', properties => { a => { oneOf => [{ type => 'number' }, { type => 'integer' }] } } }, qr{'oneOf'}],
    [{ type => 'object', properties => { a => { '$ref' => 'https://example.com/s.json' } } }, qr{'\$ref'}],
);
for my $case (@refused) {
    my ($schema, $want) = @$case;
    my $r = $n->post_json('/v1/chat/completions', {
        messages => [{ role => 'user', content => 'x' }], max_tokens => 5,
        response_format => { type => 'json_schema', json_schema => { name => 'x', schema => $schema } } });
    is($r->{status}, 400, 'openai refuses ' . $json->encode($schema));
    like($r->{json}{error}{message} // '', $want, '... naming the keyword and path');
    $r = $n->post_json('/ol/api/chat', { messages => [{ role => 'user', content => 'x' }],
                                      format => $schema, stream => $F });
    is($r->{status}, 400, '... ollama too');
    like($r->{json}{error} // '', $want, '... naming it');
}

# ------------------------------------------------ logit_bias with Ollama
{
    my $r = $n->post_json('/ol/api/chat', { messages => [{ role => 'user', content => 'x' }], stream => $F,
                                         options => { logit_bias => { abc => 1 } } });
    is($r->{status}, 400, 'ollama options.logit_bias with a bad key is 400');
    like($r->{json}{error} // '', qr/options\.logit_bias key "abc"/, '... naming it');
    # ban every token the greedy answer used: the answer changes
    my %base = (messages => [{ role => 'user', content => 'Hello' }], stream => $F, think => $F,
                options => { temperature => 0, num_predict => 8 });
    $r = $n->post_json('/ol/api/chat', \%base);
    is($r->{status}, 200, 'greedy answer');
    my $first = $r->{json}{message}{content};
    my $tok = $n->post_json('/tokenize', { prompt => $first });
    my $ids = $tok->{json}{tokens} // [];
    SKIP: {
        skip 'the greedy answer is empty', 2 unless @$ids;
        $r = $n->post_json('/ol/api/chat', { %base, options => { %{ $base{options} },
                                          logit_bias => { map { ($_ => -100) } @$ids } } });
        is($r->{status}, 200, 'the same with its tokens banned');
        isnt($r->{json}{message}{content}, $first, '... gives another answer');
    }
}

# ------------------------------------------------- tool calls by grammar
my $weather = { type => 'function', function => { name => 'get_weather', parameters => {
    type => 'object', properties => {
        city => { type => 'string', enum => ['Paris', 'Oslo', 'Lima'] },
        days => { type => 'integer', minimum => 1, maximum => 7 },
        unit => { enum => ['c', 'f'] } },
    required => ['city', 'days'], additionalProperties => $F } } };
my $stock = { type => 'function', function => { name => 'get_stock', parameters => {
    type => 'object', properties => { ticker => { type => 'string', pattern => '^[A-Z]{1,5}$' } },
    required => ['ticker'], additionalProperties => $F } } };
my %params_of = (get_weather => $weather->{function}{parameters}, get_stock => $stock->{function}{parameters});
my @calls;
for my $seed (1 .. 3) {
    for my $choice ('required', { type => 'function', function => { name => 'get_stock' } }) {
        my $r = $n->post_json('/v1/chat/completions', {
            messages => [{ role => 'user', content => 'Weather in Paris?' }],
            tools => [$weather, $stock], tool_choice => $choice, temperature => 1, seed => $seed,
            max_tokens => 120, ($seed == 3 ? (parallel_tool_calls => $F) : ()) });
        my $what = 'tool_choice ' . (ref $choice ? 'get_stock' : $choice) . " seed $seed";
        is($r->{status}, 200, $what) or diag $r->{body};
        my $c = $r->{json}{choices}[0] // {};
        # parallel calls may go on until max_tokens closes the last one
        like($c->{finish_reason}, $seed == 3 ? qr/^tool_calls$/ : qr/^(tool_calls|length)$/,
             "... finish_reason $c->{finish_reason}") or diag $json->encode($c);
        my $tc = $c->{message}{tool_calls} // [];
        ok(@$tc >= 1, '... at least one call');
        ok(@$tc == 1, '... one call without parallel_tool_calls') if $seed == 3;
        for my $call (@$tc) {
            my $name = $call->{function}{name} // '';
            ok(exists $params_of{$name}, "... a known function ($name)");
            is($name, 'get_stock', '... the named one') if ref $choice;
            push @calls, ["$what: $name", $params_of{$name} // {}, $call->{function}{arguments} // ''];
        }
    }
    my $r = $n->post_json('/ol/api/chat', {
        messages => [{ role => 'user', content => 'Weather in Oslo?' }], tools => [$weather],
        stream => $F, think => $F, options => { temperature => 1, seed => $seed, num_predict => 120 } });
    is($r->{status}, 200, "ollama tools seed $seed");
    for my $call (@{ $r->{json}{message}{tool_calls} // [] }) {
        # Ollama gives the arguments as an object
        push @calls, ["ollama seed $seed", $params_of{get_weather}, $json->encode($call->{function}{arguments})];
    }
}
($fh, $file) = tempfile(UNLINK => 1);
print $fh $json->encode({ what => $_->[0], schema => $_->[1], text => $_->[2] }), "\n" for @calls;
close $fh;
$out = `$py - $file 2>&1 <<'PY'
import json, sys
import jsonschema
for line in open(sys.argv[1]):
    rec = json.loads(line)
    try:
        errs = [e.message for e in jsonschema.Draft202012Validator(rec["schema"]).iter_errors(json.loads(rec["text"]))]
    except Exception as e:
        errs = ["does not parse: %s" % e]
    print("ok" if not errs else "INVALID " + errs[0][:200], "|", rec["what"], "|", json.dumps(rec["text"][:300]))
PY`;
@lines = split /\n/, $out;
is(scalar(@lines), scalar(@calls), 'the validator judged every call\'s arguments') or diag $out;
like($_, qr/^ok \|/, "arguments validate: $_") for @lines;
{
    my $bad = { type => 'function', function => { name => 'f', parameters => {
        type => 'object', properties => { x => { type => 'string', format => 'uri' } } } } };
    my $r = $n->post_json('/v1/chat/completions', { messages => [{ role => 'user', content => 'x' }],
                                                    tools => [$weather, $bad], max_tokens => 5 });
    is($r->{status}, 400, 'a tool whose parameters use an unsupported keyword is 400');
    like($r->{json}{error}{message} // '', qr{tools\[1\]\.function\.parameters#/properties/x: 'format' "uri"},
         '... naming the tool and the keyword');
    $r = $n->post_json('/v1/chat/completions', { messages => [{ role => 'user', content => 'x' }],
        tools => [$weather], tool_choice => { type => 'function', function => { name => 'nope' } } });
    is($r->{status}, 400, 'a tool_choice naming no tool is 400');
}

ok(!$n->crashes, 'no worker crashed');
done_testing();
