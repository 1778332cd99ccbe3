# The protocol layer (proto/): request JSON to engine parameters and token
# events to SSE / NDJSON / JSON bodies. Pure C without nginx types, built as
# its own static library with the engine's strict flags; the nginx module
# links it next to libqwen.a.
#   make test-proto        unit tests (needs the tiny test model's tokenizer)
#   make test-proto-asan   the same under AddressSanitizer + UBSan (leaks too)
#   make test-ollama[-asan] the Ollama / operations endpoints' tests
PROTO_SRCS   = $(wildcard proto/*.c)
PROTO_HDRS   = $(wildcard proto/*.h) engine/include/qwen.h
PROTO_OBJS   = $(PROTO_SRCS:proto/%.c=$(BUILD)/proto/%.o)
PROTO_LIB    = $(BUILD)/libqwenproto.a
PROTO_TEST   = $(BUILD)/tests/test_proto
PROTO_CFLAGS = -std=gnu11 -g $(OPT) -fPIC -Wall -Wextra -Wno-unused-parameter \
               -Iengine/include -Iproto -pthread

$(BUILD)/proto/%.o: proto/%.c $(PROTO_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(PROTO_CFLAGS) -c $< -o $@

$(PROTO_LIB): $(PROTO_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(PROTO_TEST): proto/tests/test_proto.c engine/tests/test.h $(PROTO_HDRS) $(PROTO_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(PROTO_CFLAGS) -Iengine/tests $< $(PROTO_LIB) $(LIB) $(LDLIBS) -o $@

test-proto: $(PROTO_TEST) test-models
	QWEN_TEST_MODELS=$(abspath $(BUILD)/models) tests/run_c_tests.sh proto $(PROTO_TEST)

# The proto sources and the test under AddressSanitizer + UBSan (leak check
# on), linked with the regular libqwen.a: the engine has its own test-asan.
PROTO_ASAN_TEST = $(BUILD)/tests/test_proto_asan
$(PROTO_ASAN_TEST): proto/tests/test_proto.c engine/tests/test.h $(PROTO_SRCS) $(PROTO_HDRS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(PROTO_CFLAGS) $(ASAN_OPT) -Iengine/tests $< $(PROTO_SRCS) $(LIB) $(LDLIBS) -o $@

test-proto-asan: $(PROTO_ASAN_TEST) test-models
	QWEN_TEST_MODELS=$(abspath $(BUILD)/models) ASAN_OPTIONS=detect_leaks=1 \
	    tests/run_c_tests.sh proto-asan $(PROTO_ASAN_TEST)

.PHONY: test-proto test-proto-asan

# The Ollama API, model listings, tokenize/detokenize, health and metrics
# bodies (proto/tests/test_ollama.c), built and run like test_proto.
OLLAMA_TEST      = $(BUILD)/tests/test_ollama
OLLAMA_ASAN_TEST = $(BUILD)/tests/test_ollama_asan
$(OLLAMA_TEST): proto/tests/test_ollama.c engine/tests/test.h $(PROTO_HDRS) $(PROTO_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(PROTO_CFLAGS) -Iengine/tests $< $(PROTO_LIB) $(LIB) $(LDLIBS) -o $@

$(OLLAMA_ASAN_TEST): proto/tests/test_ollama.c engine/tests/test.h $(PROTO_SRCS) $(PROTO_HDRS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(PROTO_CFLAGS) $(ASAN_OPT) -Iengine/tests $< $(PROTO_SRCS) $(LIB) $(LDLIBS) -o $@

test-ollama: $(OLLAMA_TEST) test-models
	QWEN_TEST_MODELS=$(abspath $(BUILD)/models) tests/run_c_tests.sh ollama $(OLLAMA_TEST)

test-ollama-asan: $(OLLAMA_ASAN_TEST) test-models
	QWEN_TEST_MODELS=$(abspath $(BUILD)/models) ASAN_OPTIONS=detect_leaks=1 \
	    tests/run_c_tests.sh ollama-asan $(OLLAMA_ASAN_TEST)

.PHONY: test-ollama test-ollama-asan

# make test builds and runs these too (tests/run_all.sh picks them up)
TEST_DEPS += $(PROTO_TEST) $(PROTO_ASAN_TEST) $(OLLAMA_TEST) $(OLLAMA_ASAN_TEST)
ASAN_EXTRA += $(PROTO_ASAN_TEST) $(OLLAMA_ASAN_TEST)
