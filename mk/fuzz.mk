# libFuzzer targets (tests/fuzz/fuzz_*.c) with AddressSanitizer and UBSan,
# built by Debian's clang-14 (libclang-rt-14-dev holds libFuzzer): the
# engine and the protocol layer are rebuilt under $(BUILD)/fuzz with
# coverage instrumentation, each target links them with libFuzzer.
#   make fuzz FUZZ_SECONDS=N     every target for N seconds (default 60)
#   make fuzz-build              only build $(BUILD)/fuzz/fuzz_*
# Seeds and every input that once crashed live in tests/fuzz/corpus/<name>/
# (replayed first on every run); new inputs go to $(BUILD)/fuzz/corpus/,
# crashes to $(BUILD)/fuzz/artifacts/. make test runs each target for
# FUZZ_TEST_SECONDS (tests/run_all.sh through tests/fuzz/run_fuzz.sh).
FUZZ_CC      ?= clang-14
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OPT      = -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN)
# clang sees no use of the x86 kernels reached only through aliases; after
# -Wall, so it sits with the ISA flags (avx512's include avx2's). The
# AVX-512 kernels (both tables) are built without the sanitizers and
# coverage: their unrolled 512-bit GEMM took clang's sanitizer build over 6
# minutes, and the targets fuzz parsers and loaders (the kernels run under ASan in
# make test's asan suite, built by gcc)
FUZZ_ISA      = ISA_FLAGS_avx2="$(ISA_FLAGS_avx2) -Wno-unused-function" \
                ISA_FLAGS_avx512="$(ISA_FLAGS_avx512) -Wno-unused-function -fno-sanitize=all" \
                ISA_FLAGS_avx512_vnni="$(ISA_FLAGS_avx512_vnni) -Wno-unused-function -fno-sanitize=all"
FUZZ_NAMES    = request grammar tokenizer chat gguf hf
FUZZ_BINS     = $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)
FUZZ_LIBS     = $(BUILD)/fuzz/libqwenproto.a $(BUILD)/fuzz/libqwen.a
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 15

.PHONY: fuzz fuzz-build fuzz-libs

# The libraries through this Makefile's own rules, in their own tree.
fuzz-libs:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/fuzz CC=$(FUZZ_CC) OPT="$(FUZZ_OPT)" \
	    $(FUZZ_ISA) $(FUZZ_LIBS)

fuzz-build: fuzz-libs
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h engine/include/qwen.h \
                      proto/qwen_proto.h $(FUZZ_LIBS)
	$(FUZZ_CC) -std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer $(FUZZ_SAN) \
	    -Wall -Wextra -Iengine/include -Iproto -Itests/fuzz -DFUZZ_DIR=\"$(abspath tests/fuzz)\" \
	    $< $(FUZZ_LIBS) $(LDLIBS) -o $@

fuzz: fuzz-build test-models
	$(TEST_ENV) tests/fuzz/run_fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

TEST_DEPS += fuzz-build
TEST_ENV  += FUZZ_BINS="$(abspath $(FUZZ_BINS))" FUZZ_TEST_SECONDS=$(FUZZ_TEST_SECONDS)
