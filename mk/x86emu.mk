# mk/x86emu.mk - the avx512 tables' kernels without AVX-512 hardware: the
# kernel tests and the forward pass built with avx512.c (and avx512_vnni.c,
# its build without BF16) compiled against SIMDe (Debian's libsimde-dev,
# portable C for the AVX-512 intrinsics; see
# kernels/x86/avx512_emulated.h) and the dispatcher told both tables run,
# avx2_vnni too (its vpdpbusd / vpdpwssd the EVEX forms' SIMDe versions:
# the same definitions, so its kernels run on CPUs without AVX-VNNI),
# then run like the arm64 suites with the table the dispatcher must pick.
# Slow (every AVX-512 instruction is a C loop) but exact to the
# instructions' definitions: a mistake in a tile index or a lane order
# fails here on any x86 machine, not only on one with AVX-512.
#   make test-x86emu   build into $(BUILD)/x86emu, run, one closing line
ifeq ($(ARCH),x86_64)
X86EMU_BUILD = $(BUILD)/x86emu
X86EMU_TESTS = test_kernels test_forward_kernels
# tests that read the generated model files (linked dynamically, as usual)
X86EMU_MODEL_TESTS = test_forward test_prefix_cache

.PHONY: test-x86emu test-x86emu-build

test-x86emu-build:
	$(MAKE) --no-print-directory BUILD=$(X86EMU_BUILD) \
	    ISA_FLAGS_avx512="$(ISA_FLAGS_avx2) -Wno-psabi -DQWEN_X86_EMULATE_AVX512" \
	    ISA_FLAGS_avx512_vnni="$(ISA_FLAGS_avx2) -Wno-psabi -DQWEN_X86_EMULATE_AVX512" \
	    ISA_FLAGS_avx2_vnni="$(ISA_FLAGS_avx2) -Wno-psabi -DQWEN_X86_EMULATE_AVX512" \
	    DISPATCH_DEFS=-DQWEN_X86_EMULATE_AVX512 \
	    $(addprefix $(X86EMU_BUILD)/static/,$(X86EMU_TESTS)) \
	    $(addprefix $(X86EMU_BUILD)/tests/,$(X86EMU_MODEL_TESTS))
	@rm -rf $(X86EMU_BUILD)/run && mkdir -p $(X86EMU_BUILD)/run/avx512-simde
	@for t in $(addprefix static/,$(X86EMU_TESTS)) $(addprefix tests/,$(X86EMU_MODEL_TESTS)); do \
	    printf '#!/bin/sh\nQWEN_EXPECT_KERNELS=avx512 exec %s "$$@"\n' \
	        $(abspath $(X86EMU_BUILD))/$$t > $(X86EMU_BUILD)/run/avx512-simde/$$(basename $$t); \
	    chmod +x $(X86EMU_BUILD)/run/avx512-simde/$$(basename $$t); \
	done

test-x86emu: test-x86emu-build test-models
	$(TEST_ENV) tests/run_c_tests.sh avx512-simde $(X86EMU_BUILD)/run/avx512-simde/*

APT_PACKAGES += libsimde-dev
TEST_DEPS    += test-x86emu-build
TEST_ENV     += QWEN_X86EMU_RUNS=$(abspath $(X86EMU_BUILD))/run
endif

# the dispatcher's own defines (the emulated build above sets them)
$(BUILD)/engine/kernels/dispatch.o: CFLAGS += $(DISPATCH_DEFS)
