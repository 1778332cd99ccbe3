# mk/arm64bench.mk - make bench-arm64: the instructions `qwen bench` executes
# per decoded and per prefilled token on arm64 (our users run Graviton),
# counted under qemu-aarch64 with a TCG plugin, next to the same counts for
# llama.cpp's llama-bench on the same model files (tests/bench/arm64_insn.py;
# the method: ../shared/arm64/README.md). qemu's timing means nothing; the
# number of instructions executed is exact and deterministic.
#   make bench-arm64 [ARM64_BENCH_MODELS=DIR] [ARM64_SHARED=DIR] [PEER_DIR=DIR]
#        [ARM64_BENCH_DEPTH=700 ARM64_BENCH_PHASES=prefill ARM64_BENCH_FORMATS=q8_0
#         ARM64_BENCH_CPUS=neoverse-n1=dotprod]   (at our users' depth: slow)
# writes $(BUILD)/bench/arm64.md (also printed) and arm64.jsonl (arm64_dD.*
# with a depth).
#
# qwen is cross-built static (qemu then needs no sysroot) against a private
# sysroot, $(ARM64_BUILD)/sysroot: Debian's arm64 -dev packages of the
# libraries it links, fetched with apt-get download (after dpkg
# --add-architecture arm64) and unpacked with dpkg -x; nothing is installed
# for arm64. qemu-user (not -static) is the one that loads plugins.

# insn_count.c (the plugin) lives outside the repo; without it the target
# says so and does nothing. The peer's static arm64 llama-bench builds are
# in $(PEER_DIR)/arm64; without them only our counts are taken.
ARM64_SHARED       ?= ../shared/arm64
PEER_DIR           ?= ../shared/peer
# the full-shape models (make bench-models), e.g. another tree's build/models
ARM64_BENCH_MODELS ?= $(MODELS_DIR)
ARM64_BENCH_FORMATS ?= q4_k_m q8_0
# qemu CPU model=the peer build it runs: Graviton2-like, Graviton3-like
ARM64_BENCH_CPUS   ?= neoverse-n1=dotprod max,sve256=on=i8mm
# tokens in context before each prompt (0: none; our users' typical: 700)
# and which per-token counts (decode prefill)
ARM64_BENCH_DEPTH  ?= 0
ARM64_BENCH_PHASES ?= decode prefill
ARM64_BENCH_APT_PACKAGES = qemu-user
ARM64_PLUGIN_QEMU  ?= qemu-aarch64

ARM64_SYSROOT      = $(ARM64_BUILD)/sysroot
ARM64_SYSROOT_DEBS = libpcre2-dev libjansson-dev libutf8proc-dev
ARM64_BENCH_MODEL_FILES = $(ARM64_BENCH_FORMATS:%=$(ARM64_BENCH_MODELS)/full-%.gguf)

ifeq ($(ARCH),aarch64)
# a native arm64 host links the system's own -dev packages (make deps)
ARM64_CROSS        =
ARM64_SYSROOT_DEP  =
ARM64_STATIC_CFLAGS =
ARM64_STATIC_LIBS  = -static -lpcre2-8 -ljansson -lutf8proc -lm -pthread
else
ARM64_CROSS        = aarch64-linux-gnu-
ARM64_SYSROOT_DEP  = $(ARM64_SYSROOT)/.unpacked
ARM64_STATIC_CFLAGS = -isystem $(abspath $(ARM64_SYSROOT))/usr/include
ARM64_STATIC_LIBS  = -static -L$(abspath $(ARM64_SYSROOT))/usr/lib/aarch64-linux-gnu \
                     -lpcre2-8 -ljansson -lutf8proc -lm -pthread
endif

.PHONY: bench-arm64 bench-arm64-build deps-bench-arm64 bench-arm64-profile bench-arm64-att

# The sysroot. apt-get download needs the arm64 package lists: the first
# time the architecture is added and the lists fetched; a stale list (the
# archive moved on) is refreshed once. jansson's own utf8_* helpers are
# renamed in the unpacked libjansson.a: in a static link they would collide
# with any engine function of the same name.
$(ARM64_SYSROOT)/.unpacked: mk/arm64bench.mk
	@dpkg --print-foreign-architectures | grep -qx arm64 || { \
	    echo "bench-arm64: dpkg --add-architecture arm64 (for apt-get download)"; \
	    dpkg --add-architecture arm64 && apt-get update -qq; }
	rm -rf $(ARM64_SYSROOT) $(ARM64_BUILD)/debs
	mkdir -p $(ARM64_BUILD)/debs
	cd $(ARM64_BUILD)/debs && { apt-get download $(ARM64_SYSROOT_DEBS:%=%:arm64) || \
	    { apt-get update -qq && apt-get download $(ARM64_SYSROOT_DEBS:%=%:arm64); }; }
	for d in $(ARM64_BUILD)/debs/*.deb; do dpkg -x $$d $(ARM64_SYSROOT) || exit 1; done
	lib=$(ARM64_SYSROOT)/usr/lib/aarch64-linux-gnu/libjansson.a; \
	$(ARM64_CROSS)nm -g --defined-only $$lib | \
	    awk '$$3 ~ /^utf8_/ { print $$3, "jansson_" $$3 }' | sort -u > $(ARM64_BUILD)/jansson.syms; \
	$(ARM64_CROSS)objcopy --redefine-syms=$(ARM64_BUILD)/jansson.syms $$lib
	touch $@

# qwen for aarch64, static, in $(ARM64_BUILD) (the engine objects are the
# ones test-arm64 builds: same compiler, same ISA flags). CFLAGS through the
# environment: the Makefile appends its own to it.
bench-arm64-build: $(ARM64_SYSROOT_DEP)
	CFLAGS="$(ARM64_STATIC_CFLAGS)" $(MAKE) --no-print-directory ARCH=aarch64 \
	    CC=$(ARM64_CC) BUILD=$(ARM64_BUILD) LDLIBS="$(ARM64_STATIC_LIBS)" $(ARM64_BUILD)/qwen

$(ARM64_BUILD)/insn_count.so: $(ARM64_SHARED)/insn_count.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -shared -fPIC -fvisibility=hidden -o $@ $<

# make bench-arm64-profile: the same per-token counts by function
# (tests/bench/arm64_profile.py, with our own plugin, tests/bench/
# arm64_prof.c), ours only, one CPU model, format and phase:
#   make bench-arm64-profile [ARM64_PROFILE_CPU=neoverse-n1]
#        [ARM64_PROFILE_FORMAT=q8_0] [ARM64_PROFILE_PHASE=prefill|decode]
#        [ARM64_PROFILE_SEQS=1]   (decode of that many sequences together)
# writes $(BUILD)/bench/arm64_profile.md (also printed).
ARM64_PROFILE_CPU    ?= neoverse-n1
ARM64_PROFILE_FORMAT ?= q8_0
ARM64_PROFILE_PHASE  ?= prefill
ARM64_PROFILE_SEQS   ?= 1

$(ARM64_BUILD)/arm64_prof.so: tests/bench/arm64_prof.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -shared -fPIC -fvisibility=hidden -o $@ $<

bench-arm64-profile: deps deps-bench-arm64
	$(if $(filter $(MODELS_DIR),$(ARM64_BENCH_MODELS)),$(MAKE) --no-print-directory $(ARM64_BENCH_MODELS)/full-$(ARM64_PROFILE_FORMAT).gguf)
	$(MAKE) --no-print-directory bench-arm64-build $(ARM64_BUILD)/arm64_prof.so
	/usr/bin/python3 tests/bench/arm64_profile.py --qwen $(ARM64_BUILD)/qwen \
	    --qemu $(ARM64_PLUGIN_QEMU) --plugin $(ARM64_BUILD)/arm64_prof.so \
	    --model $(ARM64_BENCH_MODELS)/full-$(ARM64_PROFILE_FORMAT).gguf \
	    --cpu $(ARM64_PROFILE_CPU) --phase $(ARM64_PROFILE_PHASE) --seqs $(ARM64_PROFILE_SEQS) \
	    --nm $(ARM64_CROSS)nm --out $(BUILD)/bench

# make bench-arm64-att: the instructions of one attention call on arm64
# (tests/bench/att_count.c, tests/bench/arm64_att.py), decode and a prompt's
# call at 48 and 732 positions: a minute of qemu, where the same at our
# users' depth through make bench-arm64 ARM64_BENCH_DEPTH=700 takes an hour.
# Writes $(BUILD)/bench/arm64_att.md (also printed).
ARM64_ATT_CPUS      ?= neoverse-n1=neon_dotprod max,sve256=on=neon_i8mm
ARM64_ATT_POSITIONS ?= 48 732

deps-bench-arm64:
	@missing=""; \
	for p in $(ARM64_BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "deps-bench-arm64: installing$$missing"; apt-get update -qq && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

ifeq ($(wildcard $(ARM64_SHARED)/insn_count.c),)
bench-arm64:
	@echo "bench-arm64: skipped: no $(ARM64_SHARED)/insn_count.c (the qemu plugin that counts"
	@echo "  instructions; ARM64_SHARED=DIR names the folder that has it)"
bench-arm64-att:
	@echo "bench-arm64-att: skipped: no $(ARM64_SHARED)/insn_count.c"
else
# The models: built here (make bench-models) when they are this tree's;
# when ARM64_BENCH_MODELS names another folder, they must be there.
bench-arm64: deps deps-bench-arm64
	$(if $(filter $(MODELS_DIR),$(ARM64_BENCH_MODELS)),$(MAKE) --no-print-directory $(ARM64_BENCH_MODEL_FILES))
	$(MAKE) --no-print-directory bench-arm64-build $(ARM64_BUILD)/insn_count.so
	/usr/bin/python3 tests/bench/arm64_insn.py --qwen $(ARM64_BUILD)/qwen \
	    --qemu $(ARM64_PLUGIN_QEMU) --plugin $(ARM64_BUILD)/insn_count.so \
	    --peer $(PEER_DIR)/arm64 --models $(ARM64_BENCH_MODELS) \
	    --formats "$(ARM64_BENCH_FORMATS)" --cpus "$(ARM64_BENCH_CPUS)" \
	    --depth $(ARM64_BENCH_DEPTH) --phases "$(ARM64_BENCH_PHASES)" --out $(BUILD)/bench

bench-arm64-att: deps deps-bench-arm64 $(ARM64_SYSROOT_DEP)
	CFLAGS="$(ARM64_STATIC_CFLAGS)" $(MAKE) --no-print-directory ARCH=aarch64 \
	    CC=$(ARM64_CC) BUILD=$(ARM64_BUILD) LDLIBS="$(ARM64_STATIC_LIBS)" $(ARM64_BUILD)/att_count
	$(MAKE) --no-print-directory $(ARM64_BUILD)/insn_count.so
	/usr/bin/python3 tests/bench/arm64_att.py --att-count $(ARM64_BUILD)/att_count \
	    --qemu $(ARM64_PLUGIN_QEMU) --plugin $(ARM64_BUILD)/insn_count.so \
	    --cpus "$(ARM64_ATT_CPUS)" --positions "$(ARM64_ATT_POSITIONS)" --out $(BUILD)/bench
endif
