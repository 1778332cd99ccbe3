# Random-weight Qwen3 test models from build/make_test_model (deterministic:
# same seed, same bits). A GGUF and an HF directory made by one run hold the
# same weights. test-models: tiny shape (+ "small", the smallest shape whose
# rows are whole K-quant blocks); bench-models: the real 0.6B shape.
MODELS_DIR = $(BUILD)/models
# mk/npm.mk defines NPM_DIR but is read after this file, and prerequisites
# are expanded as they are read: give the same default here.
NPM_DIR   ?= $(BUILD)/npm
MODEL_GEN  = $(BUILD)/make_test_model
MODEL_TOK  = --tokenizer $(QWEN_TOKENIZER_DIR)
# Regenerate when the generator's source or the quantizers change, not on
# every rebuild of libqwen.a (the full-shape models take a while to write).
MODEL_DEPS = tools/make_test_model.c engine/src/quant.c engine/src/quant.h \
             $(NPM_DIR)/.installed | $(MODEL_GEN)

TEST_MODELS = $(MODELS_DIR)/tiny-f32.gguf $(MODELS_DIR)/tiny-f32-hf \
              $(MODELS_DIR)/tiny-bf16.gguf $(MODELS_DIR)/tiny-bf16-hf \
              $(MODELS_DIR)/tiny-q8_0.gguf $(MODELS_DIR)/tiny-q4_k_m.gguf \
              $(MODELS_DIR)/tiny-f32-hf-sharded \
              $(MODELS_DIR)/small-f32.gguf $(MODELS_DIR)/small-q4_k_m.gguf \
              $(MODELS_DIR)/small-q4_k_m-dequant.gguf $(MODELS_DIR)/tiny-q8_0-dequant.gguf
BENCH_MODELS = $(MODELS_DIR)/full-bf16.gguf $(MODELS_DIR)/full-bf16-hf \
               $(MODELS_DIR)/full-q8_0.gguf $(MODELS_DIR)/full-q4_k_m.gguf

.PHONY: test-models bench-models
test-models: $(TEST_MODELS)
bench-models: $(BENCH_MODELS)

# Pairs are grouped targets (one run writes both) so they share weights by
# construction. HF directories are targets without a trailing slash; the
# recipe clears them first so no stale shard survives a change of layout.
$(MODELS_DIR)/tiny-f32.gguf $(MODELS_DIR)/tiny-f32-hf &: $(MODEL_DEPS)
	@mkdir -p $(MODELS_DIR)
	rm -rf $(MODELS_DIR)/tiny-f32-hf
	$(MODEL_GEN) --shape tiny $(MODEL_TOK) --gguf $(MODELS_DIR)/tiny-f32.gguf --type f32 \
	    --hf $(MODELS_DIR)/tiny-f32-hf --dtype f32

$(MODELS_DIR)/tiny-bf16.gguf $(MODELS_DIR)/tiny-bf16-hf &: $(MODEL_DEPS)
	@mkdir -p $(MODELS_DIR)
	rm -rf $(MODELS_DIR)/tiny-bf16-hf
	$(MODEL_GEN) --shape tiny $(MODEL_TOK) --gguf $(MODELS_DIR)/tiny-bf16.gguf --type bf16 \
	    --hf $(MODELS_DIR)/tiny-bf16-hf --dtype bf16

$(MODELS_DIR)/tiny-f32-hf-sharded: $(MODEL_DEPS)
	@mkdir -p $(MODELS_DIR)
	rm -rf $@
	$(MODEL_GEN) --shape tiny $(MODEL_TOK) --hf $@ --dtype f32 --shards 3

# Tiny rows (64..192 values) are shorter than a 256-value K-quant block, so
# tiny-q4_k_m falls back to Q8_0 throughout, as llama.cpp falls back to
# 32-value blocks; small-q4_k_m holds real Q4_K and Q6_K tensors.
# *-dequant.gguf: F32 files holding the quantized model's weights after
# quantize + dequantize; the engine on the quantized file must match them up
# to activation rounding (an end-to-end check of the quantized kernels).
$(MODELS_DIR)/tiny-%-dequant.gguf: $(MODEL_DEPS)
	@mkdir -p $(MODELS_DIR)
	$(MODEL_GEN) --shape tiny $(MODEL_TOK) --gguf $@ --type $* --dequantized

$(MODELS_DIR)/small-%-dequant.gguf: $(MODEL_DEPS)
	@mkdir -p $(MODELS_DIR)
	$(MODEL_GEN) --shape small $(MODEL_TOK) --gguf $@ --type $* --dequantized

$(MODELS_DIR)/tiny-%.gguf: $(MODEL_DEPS)
	@mkdir -p $(MODELS_DIR)
	$(MODEL_GEN) --shape tiny $(MODEL_TOK) --gguf $@ --type $*

$(MODELS_DIR)/small-%.gguf: $(MODEL_DEPS)
	@mkdir -p $(MODELS_DIR)
	$(MODEL_GEN) --shape small $(MODEL_TOK) --gguf $@ --type $*

$(MODELS_DIR)/full-bf16.gguf $(MODELS_DIR)/full-bf16-hf &: $(MODEL_DEPS)
	@mkdir -p $(MODELS_DIR)
	rm -rf $(MODELS_DIR)/full-bf16-hf
	$(MODEL_GEN) --shape full $(MODEL_TOK) --gguf $(MODELS_DIR)/full-bf16.gguf --type bf16 \
	    --hf $(MODELS_DIR)/full-bf16-hf --dtype bf16

$(MODELS_DIR)/full-%.gguf: $(MODEL_DEPS)
	@mkdir -p $(MODELS_DIR)
	$(MODEL_GEN) --shape full $(MODEL_TOK) --gguf $@ --type $*
