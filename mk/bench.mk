# make bench: speed on full Qwen3-0.6B-shape random-weight models (tests/bench/run.sh).
# Figures compare only within one run: the machine is shared and noisy.
BENCH_FORMATS ?= bf16 q8_0 q4_k_m
BENCH_PROMPT  ?= 200
BENCH_GEN     ?= 200

bench: deps deps-bench
	$(MAKE) --no-print-directory all $(NGX_MODULE) bench-models test-models $(BUILD)/blas_bench \
	    $(BUILD)/att_bench $(BUILD)/dot_bench $(BUILD)/peak_bench $(BUILD)/gemm_bench
	BUILD=$(BUILD) BENCH_PROMPT=$(BENCH_PROMPT) BENCH_GEN=$(BENCH_GEN) \
	    BENCH_FORMATS="$(BENCH_FORMATS)" tests/bench/run.sh
.PHONY: bench deps-bench

# OpenBLAS for make bench's comparison only (tests/bench/blas_bench.c); the
# engine does not link it (BENCHMARKS.md has the figures and the reasons)
BENCH_APT_PACKAGES = libopenblas-dev
deps-bench:
	@missing=""; \
	for p in $(BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "deps-bench: installing$$missing"; apt-get update -qq && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

$(BUILD)/blas_bench: tests/bench/blas_bench.c tests/bench/bench_clock.h $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) -lopenblas $(LDLIBS) -ldl -o $@

# the other bench programs link only the engine: att_bench (one decode
# step's attention per table and KV format), dot_bench (one token's packed
# dot per table and weight type, from memory and in cache), peak_bench
# (each table's multiply-add instruction at its peak: prefill's ceiling),
# gemm_bench (each table's prompt GEMMs, 200 tokens, against that peak)
$(BUILD)/%_bench: tests/bench/%_bench.c tests/bench/bench_clock.h tests/bench/bench_tables.h $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

# att_count: a table's attention calls for counting instructions under
# qemu (make bench-arm64-att; built for arm64 there)
$(BUILD)/att_count: tests/bench/att_count.c $(LIB)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

# make bench-ab BASE=REV: this tree's engine against REV's, interleaved in
# one run (tests/bench/ab.sh), best of BENCH_ROUNDS each, with the ratio
BENCH_ROUNDS ?= 3
bench-ab: deps
	$(MAKE) --no-print-directory all bench-models
	BUILD=$(BUILD) tests/bench/ab.sh $(or $(BASE),$(error BASE=REV is required)) $(BENCH_ROUNDS)
.PHONY: bench-ab
