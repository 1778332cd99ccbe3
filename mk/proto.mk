# The protocol layer (proto/): request JSON to engine parameters and token
# events to SSE / NDJSON / JSON bodies. Pure C without nginx types, built as
# its own static library with the engine's strict flags; the nginx module
# links it next to libqwen.a.
#   make test-proto         every proto/tests/test_*.c (needs the tiny test model)
#   make test-proto-asan    the same under AddressSanitizer + UBSan (leaks too)
#   make test-ollama[-asan] only the Ollama API's (proto/tests/test_ollama*.c)
PROTO_SRCS   = $(wildcard proto/*.c)
PROTO_HDRS   = $(wildcard proto/*.h) engine/include/qwen.h
PROTO_OBJS   = $(PROTO_SRCS:proto/%.c=$(BUILD)/proto/%.o)
PROTO_LIB    = $(BUILD)/libqwenproto.a
PROTO_CFLAGS = -std=gnu11 -g $(OPT) -fPIC -Wall -Wextra -Wno-unused-parameter \
               -Iengine/include -Iproto -pthread

$(BUILD)/proto/%.o: proto/%.c $(PROTO_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(PROTO_CFLAGS) -c $< -o $@

$(PROTO_LIB): $(PROTO_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Every proto/tests/test_X.c is $(BUILD)/tests/test_X, and test_X_asan: the
# test and the proto sources under AddressSanitizer + UBSan (leak check on),
# linked with the regular libqwen.a (the engine has its own test-asan).
PROTO_TEST_SRCS  = $(wildcard proto/tests/test_*.c)
PROTO_TESTS      = $(PROTO_TEST_SRCS:proto/tests/%.c=$(BUILD)/tests/%)
PROTO_ASAN_TESTS = $(PROTO_TESTS:%=%_asan)
PROTO_TEST_DEPS  = $(wildcard proto/tests/*.h) engine/tests/test.h $(PROTO_HDRS)
PROTO_ASAN_OBJS  = $(PROTO_SRCS:proto/%.c=$(BUILD)/proto_asan/%.o)

# $(BUILD)/tests/ also holds the engine's tests: one name, one test
ifneq ($(filter $(PROTO_TESTS),$(TESTS)),)
$(error engine/tests and proto/tests both have $(notdir $(filter $(PROTO_TESTS),$(TESTS))))
endif

$(PROTO_TESTS): $(BUILD)/tests/%: proto/tests/%.c $(PROTO_TEST_DEPS) $(PROTO_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(PROTO_CFLAGS) -Iengine/tests $< $(PROTO_LIB) $(LIB) $(LDLIBS) -o $@

$(BUILD)/proto_asan/%.o: proto/%.c $(PROTO_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(PROTO_CFLAGS) $(ASAN_OPT) -c $< -o $@

$(PROTO_ASAN_TESTS): $(BUILD)/tests/%_asan: proto/tests/%.c $(PROTO_TEST_DEPS) \
                                            $(PROTO_ASAN_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(PROTO_CFLAGS) $(ASAN_OPT) -Iengine/tests $< $(PROTO_ASAN_OBJS) $(LIB) $(LDLIBS) -o $@

PROTO_TEST_ENV = QWEN_TEST_MODELS=$(abspath $(BUILD)/models)
OLLAMA_TESTS   = $(filter $(BUILD)/tests/test_ollama%,$(PROTO_TESTS))

test-proto: $(PROTO_TESTS) test-models
	$(PROTO_TEST_ENV) tests/run_c_tests.sh proto $(PROTO_TESTS)

test-proto-asan: $(PROTO_ASAN_TESTS) test-models
	$(PROTO_TEST_ENV) ASAN_OPTIONS=detect_leaks=1 \
	    tests/run_c_tests.sh proto-asan $(PROTO_ASAN_TESTS)

test-ollama: $(OLLAMA_TESTS) test-models
	$(PROTO_TEST_ENV) tests/run_c_tests.sh ollama $(OLLAMA_TESTS)

test-ollama-asan: $(OLLAMA_TESTS:%=%_asan) test-models
	$(PROTO_TEST_ENV) ASAN_OPTIONS=detect_leaks=1 \
	    tests/run_c_tests.sh ollama-asan $(OLLAMA_TESTS:%=%_asan)

.PHONY: test-proto test-proto-asan test-ollama test-ollama-asan

# make test builds and runs these too (tests/run_all.sh picks them up)
TEST_DEPS += $(PROTO_TESTS) $(PROTO_ASAN_TESTS)
ASAN_EXTRA += $(PROTO_ASAN_TESTS)
