# t/browser.t - the chat page (html/) in a real browser: the shipped
# conf/nginx.conf (its module, model, port, page directory and logs swapped
# for the test's) serves the page and the API with the tiny model, and
# t/browser/chat.mjs drives Debian's chromium headless through
# playwright-core (build/npm): the page loads without console errors, an
# answer streams in token by token, Stop closes the connection and nginx
# ends the request as cancelled (access log, metrics, a free slot), multi-turn, thinking folded apart, Markdown,
# model output with HTML shown as text, JSON mode, and the errors (a 400
# body, a 429 with its retry hint, an error event, no server). Screenshots
# go to build/browser/ (build/browser-asan/ in the AddressSanitizer run).
# Skipped, saying why, only when chromium cannot start at all.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use QwenNginx;
use JSON::PP;

QwenNginx::require_built();

my $chromium = QwenNginx::env_or('QWEN_CHROMIUM', '/usr/bin/chromium');
plan(skip_all => "chromium cannot start: $chromium is not installed (make deps installs "
               . "Debian's chromium)") unless -x $chromium;
my $node = `command -v node 2>/dev/null`;
chomp $node;
plan(skip_all => 'chromium cannot be driven: node is not installed (make deps)') unless $node;

my $npm = QwenNginx::env_or('QWEN_NPM_DIR', "$QwenNginx::ROOT/build/npm");
my $asan = $QwenNginx::NGINX =~ /nginx_asan\.sh$/ ? '-asan' : '';
my $shots = QwenNginx::env_or('QWEN_SHOTS', "$QwenNginx::ROOT/build/browser$asan");

# Checks made before the browser says whether it starts are reported
# after: a skip must come before any test.
my @pending;
push @pending, [-e "$npm/node_modules/playwright-core/package.json",
                "playwright-core is installed in $npm (make npm-deps)"];

my $n = QwenNginx->new;
my $dir = $n->dir;
my $port = $n->port;
my $conf = $n->slurp("$QwenNginx::ROOT/conf/nginx.conf");
my $model = QwenNginx::model('tiny-f32.gguf');
my $html = "$QwenNginx::ROOT/html";
push @pending, [$conf =~ s{load_module \@MODULE\@;}{load_module $QwenNginx::MODULE;}
                && $conf =~ s{qwen_model \@MODEL\@;}{qwen_model $model;}
                && $conf =~ s{listen \@PORT\@;}{listen 127.0.0.1:$port;}
                && $conf =~ s{alias \@HTML\@/;}{alias $html/;}
                && $conf =~ s{^error_log .*$}{daemon off;\nerror_log $dir/logs/error.log info;}m,
                'conf/nginx.conf has @MODULE@, @MODEL@, @PORT@, the page at @HTML@ and error_log'];
open my $fh, '>', $n->conf_file or die;
print $fh $conf;
close $fh;
my ($rc, $out) = $n->test_conf;
push @pending, [$rc == 0, 'nginx -t accepts it', $out];

sub flush_pending {
    for (@pending) { ok($_->[0], $_->[1]) or diag($_->[2] // ''); }
    @pending = ();
}
if ($rc != 0) { flush_pending(); done_testing; exit; }
$n->start;

# the browser
{
    local $ENV{QWEN_PORT} = $port;
    local $ENV{QWEN_NPM_DIR} = $npm;
    local $ENV{QWEN_ERROR_LOG} = $n->error_log_file;
    local $ENV{QWEN_ACCESS_LOG} = "$dir/logs/access.log";
    local $ENV{QWEN_SHOTS} = $shots;
    local $ENV{QWEN_CHROMIUM} = $chromium;
    open my $p, '-|', "$node $QwenNginx::ROOT/t/browser/chat.mjs 2>&1"
        or die "cannot run node: $!";
    my ($checks, $done, @other) = (0, 0);
    while (my $line = <$p>) {
        chomp $line;
        my $o = $line =~ /^\{/ ? eval { JSON::PP->new->decode($line) } : undef;
        if (!$o) {
            push @other, $line;
        } elsif (defined $o->{skip}) {
            $n->stop;
            plan(skip_all => $o->{skip});
        } elsif ($o->{done}) {
            $done = 1;
        } else {
            $checks++;
            flush_pending();
            ok($o->{ok}, "browser: $o->{name}") or diag($o->{diag} // '');
        }
    }
    close $p;
    my $status = $? >> 8;
    flush_pending();
    ok($done && $status == 0, "the browser script ran to the end ($checks checks)")
        or diag join("\n", "exit status $status", @other);
    note "screenshots: $shots";
}

# the page's files as nginx serves them
my $r = $n->request('GET', '/chat');
is($r->{status}, 301, 'GET /chat redirects');
is($r->{headers}{location}, '/chat/', '... to /chat/');
for (['/chat/', 'text/html'], ['/chat/chat.js', 'text/javascript'],
     ['/chat/chat.css', 'text/css'])
{
    $r = $n->request('GET', $_->[0]);
    ok($r->{status} == 200 && ($r->{headers}{'content-type'} // '') =~ /^\Q$_->[1]\E; charset=utf-8$/,
       "GET $_->[0]: 200 $_->[1]") or diag "$r->{status} " . ($r->{headers}{'content-type'} // '');
}
$r = $n->request('GET', '/');
like($r->{body}, qr/^Ollama is running/, "GET / is still Ollama's");
$r = $n->request('GET', '/chat/../conf/nginx.conf');
isnt($r->{status}, 200, 'nothing outside html/ is served');

like($n->slurp("$dir/logs/access.log") // '', qr{"POST /v1/chat/completions HTTP/1.1" 200 .* finish=cancelled},
     'the access log has the stopped request, finish=cancelled');
is_deeply([$n->crashes], [], 'no worker crashed, no alerts');
$n->stop;
done_testing;
