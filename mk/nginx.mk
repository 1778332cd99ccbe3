# The nginx dynamic module, built against Debian's nginx from nginx-dev (the
# configure tree and the distro's flags in /usr/share/nginx/src), so its
# signature matches /usr/sbin/nginx. The glue links build/libqwenproto.a and
# build/libqwen.a (see `config`).
#   make module        build/ngx_http_qwen_module.so
#   make run           serve MODEL (a .gguf file or HF directory) on PORT
#   make test-nginx    the Perl tests in t/ against a real nginx
NGX_SRC      = /usr/share/nginx/src
NGX_BIN     ?= /usr/sbin/nginx
NGX_BUILD    = $(BUILD)/nginx
NGX_OBJS     = $(NGX_BUILD)/objs
NGX_MODULE   = $(BUILD)/ngx_http_qwen_module.so
PROTO_LIB    = $(BUILD)/libqwenproto.a
NGX_GLUE     = config $(wildcard ngx_http_qwen_*.c ngx_http_qwen_*.h)
# Debian's own flags for nginx 1.22 (nginx -V), so the module matches.
NGX_CC_OPT   = -g -O2 -fstack-protector-strong -Wformat -Werror=format-security \
               -fPIC -Wdate-time -D_FORTIFY_SOURCE=2
NGX_LD_OPT   = -Wl,-z,relro -Wl,-z,now -fPIC
PORT        ?= 8080
MODEL       ?=

.PHONY: module run test-nginx

module: $(NGX_MODULE)

# configure once per change of `config`; it writes only into $(NGX_BUILD).
# With CC, so `make module ARCH=aarch64 CC=aarch64-linux-gnu-gcc` (the
# image's cross build) configures for the target; configure runs its test
# programs, which then need binfmt_misc qemu for the target.
$(NGX_OBJS)/Makefile: config mk/nginx.mk
	rm -rf $(NGX_BUILD)
	mkdir -p $(NGX_BUILD)
	cp -r $(NGX_SRC) $(NGX_BUILD)/src
	cd $(NGX_BUILD)/src && QWEN_BUILD_DIR=$(abspath $(BUILD)) bash -c \
	    '. ./conf_flags && ./configure --with-cc="$(CC)" \
	        --with-cc-opt="$(NGX_CC_OPT)" --with-ld-opt="$(NGX_LD_OPT)" \
	        "$${NGX_CONF_FLAGS[@]}" \
	        --add-dynamic-module=$(CURDIR) --builddir=$(abspath $(NGX_OBJS))' \
	    > $(abspath $(NGX_BUILD))/configure.log 2>&1 \
	    || { tail -20 $(abspath $(NGX_BUILD))/configure.log; exit 1; }

# nginx's Makefile does not know the static libraries: relink on any change.
$(NGX_MODULE): $(NGX_OBJS)/Makefile $(NGX_GLUE) $(LIB) $(PROTO_LIB) \
               engine/include/qwen.h proto/qwen_proto.h
	rm -f $(NGX_OBJS)/ngx_http_qwen_module.so
	$(MAKE) --no-print-directory -C $(NGX_BUILD)/src -f $(abspath $(NGX_OBJS))/Makefile modules
	cp $(NGX_OBJS)/ngx_http_qwen_module.so $@

run: deps $(NGX_MODULE)
	BUILD=$(abspath $(BUILD)) NGX_BIN=$(NGX_BIN) MODEL="$(MODEL)" PORT=$(PORT) \
	    NGX_MODULE=$(abspath $(NGX_MODULE)) tools/run.sh

# npm-deps: the official openai and ollama clients that t/clients.t runs.
test-nginx: $(NGX_MODULE) $(BUILD)/qwen test-models npm-deps
	QWEN_NGINX_MODULE=$(abspath $(NGX_MODULE)) QWEN_NGINX_BIN=$(NGX_BIN) \
	QWEN_NPM_DIR=$(abspath $(NPM_DIR)) \
	QWEN_TEST_MODELS=$(abspath $(BUILD)/models) QWEN_BIN=$(abspath $(BUILD)/qwen) \
	QWEN_MAKE_TEST_MODEL=$(abspath $(BUILD)/make_test_model) \
	QWEN_TOKENIZER_DIR=$(abspath $(QWEN_TOKENIZER_DIR)) \
	QWEN_TEST_TMP=$(abspath $(BUILD)/t) \
	    prove -r t/

# make test: build the module and give the Perl tests what they need
# (tests/run_all.sh runs prove -r t/ with this environment).
TEST_DEPS += $(NGX_MODULE) npm-deps
TEST_ENV  += QWEN_NGINX_MODULE=$(abspath $(NGX_MODULE)) QWEN_NGINX_BIN=$(NGX_BIN) \
             QWEN_NPM_DIR=$(abspath $(NPM_DIR)) \
             QWEN_BIN=$(abspath $(BUILD)/qwen) \
             QWEN_MAKE_TEST_MODEL=$(abspath $(BUILD)/make_test_model) \
             QWEN_TEST_TMP=$(abspath $(BUILD)/t)

# The same tests against the module built with AddressSanitizer (engine,
# protocol layer and glue instrumented), run by tests/run_all.sh through
# tests/nginx_asan.sh: memory errors in the glue fail make test.
NGX_ASAN_BUILD  = $(BUILD)/asanmod
NGX_ASAN_MODULE = $(NGX_ASAN_BUILD)/ngx_http_qwen_module.so
ASAN_MOD_OPT    = -O1 -g -fsanitize=address -fno-omit-frame-pointer

.PHONY: module-asan
module-asan:
	$(MAKE) --no-print-directory BUILD=$(NGX_ASAN_BUILD) OPT="$(ASAN_MOD_OPT)" \
	    NGX_CC_OPT="-g -O1 -fPIC -fsanitize=address -fno-omit-frame-pointer -Wformat" \
	    NGX_LD_OPT="-fPIC -fsanitize=address" $(NGX_ASAN_MODULE)

TEST_DEPS += module-asan
TEST_ENV  += QWEN_NGINX_ASAN_MODULE=$(abspath $(NGX_ASAN_MODULE))
