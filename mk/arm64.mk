# mk/arm64.mk - the arm64 (Graviton) kernels without arm64 hardware: the
# kernel and quantizer tests cross-compiled, linked static (qemu-user then
# needs no sysroot) and run under qemu for CPU models that take each
# dispatch path; each run also checks which table the dispatcher chose.
#   make deps-arm64   cross compiler + qemu-user-static (idempotent, root)
#   make test-arm64   build into $(BUILD)/arm64, run, one closing total line
ifeq ($(ARCH),aarch64)
# an arm64 host builds natively and still emulates the other CPU models
ARM64_APT_PACKAGES = libc6-dev qemu-user-static
ARM64_CC    ?= $(CC)
else
ARM64_APT_PACKAGES = gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
ARM64_CC    ?= aarch64-linux-gnu-gcc
endif
ARM64_QEMU  ?= qemu-aarch64-static
ARM64_BUILD  = $(BUILD)/arm64
ARM64_TESTS  = test_kernels test_quant test_forward_kernels test_elementwise
# qemu CPU model = the table qwen_kernels_best() must pick on it
ARM64_CPUS   = cortex-a53=neon cortex-a72=neon neoverse-n1=neon_dotprod \
               max=neon_i8mm max,sve256=on=neon_i8mm

.PHONY: deps-arm64 test-arm64 test-arm64-build

# Tests that need only the kernels, quantizers and the forward pass (no
# files, no tokenizer), linked static. Built for
# arm64 by the sub-make of test-arm64 (ARCH=aarch64, the cross CC), so the
# Makefile's ISA flags for kernels/arm/*.c apply; on the host the same rule
# gives static host binaries.
STATIC_TEST_OBJS = $(addprefix $(BUILD)/engine/,quant.o repack.o forward.o elementwise.o kv_cache.o threadpool.o errors.o) \
                   $(filter $(BUILD)/engine/kernels/%,$(ENGINE_OBJS))
$(BUILD)/static/%: engine/tests/%.c $(wildcard engine/tests/*.h) $(STATIC_TEST_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iengine/tests $< $(STATIC_TEST_OBJS) -static -lm -pthread -o $@

# Debian 12's aarch64 GCC 12.2 dies (ICE in vect_transform_reduction) on
# test_q4_K_known when vectorizing loops; the test needs no vector code.
$(BUILD)/static/test_quant: CFLAGS += -fno-tree-loop-vectorize

# Cross-build the tests, then one wrapper per CPU model and test that runs it
# under qemu with the table the dispatcher must pick (run_c_tests.sh runs
# plain commands; tests/run_all.sh runs each $(ARM64_BUILD)/run/CPU as a suite).
test-arm64-build:
	$(MAKE) --no-print-directory ARCH=aarch64 CC=$(ARM64_CC) BUILD=$(ARM64_BUILD) \
	    $(addprefix $(ARM64_BUILD)/static/,$(ARM64_TESTS))
	@rm -rf $(ARM64_BUILD)/run
	@for spec in $(ARM64_CPUS); do \
	    cpu=$${spec%=*}; want=$${spec##*=}; dir=$(ARM64_BUILD)/run/$$cpu; \
	    mkdir -p $$dir; \
	    for t in $(ARM64_TESTS); do \
	        printf '#!/bin/sh\nQWEN_EXPECT_KERNELS=%s exec %s -cpu %s %s "$$@"\n' \
	            $$want $(ARM64_QEMU) $$cpu $(abspath $(ARM64_BUILD))/static/$$t > $$dir/$$t; \
	        chmod +x $$dir/$$t; \
	    done; \
	done

test-arm64: test-arm64-build
	@command -v $(ARM64_QEMU) >/dev/null || { echo "test-arm64: no $(ARM64_QEMU): make deps-arm64"; exit 1; }
	@totals=$$(mktemp); status=0; \
	for dir in $(ARM64_BUILD)/run/*; do \
	    TEST_TOTALS=$$totals tests/run_c_tests.sh arm64-$$(basename $$dir) $$dir/* || status=1; \
	done; \
	set -- $$(awk '{p += $$1; f += $$2} END {print p + 0, f + 0}' $$totals); \
	rm -f $$totals; echo "arm64 total: $$1 passed, $$2 failed"; exit $$status

# make test: the arm64 suites too (about 10 s under qemu)
APT_PACKAGES += $(ARM64_APT_PACKAGES)
TEST_DEPS    += test-arm64-build
TEST_ENV     += QWEN_ARM64_RUNS=$(abspath $(ARM64_BUILD))/run

# A native arm64 build meets the same compiler bug in the regular test build.
ifeq ($(ARCH),aarch64)
$(BUILD)/tests/test_quant: CFLAGS += -fno-tree-loop-vectorize
endif

deps-arm64:
	@missing=""; \
	for p in $(ARM64_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "deps-arm64: all packages present"; \
	else echo "deps-arm64: installing$$missing"; apt-get update -qq && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
