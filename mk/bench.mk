# Benchmarks on full Qwen3-0.6B-shape random-weight models (make bench).
# Figures are only comparable within one run: the machine is shared.
BENCH_FORMATS = bf16 q8_0 q4_k_m
BENCH_PROMPT  ?= 200
BENCH_GEN     ?= 200

bench: all bench-models
	BUILD=$(BUILD) BENCH_PROMPT=$(BENCH_PROMPT) BENCH_GEN=$(BENCH_GEN) \
	    BENCH_FORMATS="$(BENCH_FORMATS)" tests/bench/run.sh
.PHONY: bench
