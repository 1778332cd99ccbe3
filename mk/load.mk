# Load runs against a real nginx with 2 workers on the tiny model (not part
# of make test: they take minutes).
#   make soak SOAK_SECONDS=N    mixed load of every API, streamed, abandoned,
#                               keepalive and HTTP/2 (h2load); then checks
#                               answers, workers, fds, RSS, /metrics
#   make load-admission         the 429 rate at 80% of 2 workers' capacity,
#                               shared listen socket against reuseport
SOAK_SECONDS ?= 600
LOAD_ENV = QWEN_NGINX_MODULE=$(abspath $(NGX_MODULE)) QWEN_NGINX_BIN=$(NGX_BIN) \
           QWEN_TEST_MODELS=$(abspath $(BUILD)/models)

.PHONY: soak load-admission
soak: $(NGX_MODULE) test-models
	$(LOAD_ENV) SOAK_OUT=$(BUILD)/soak tests/load/soak.py --seconds $(SOAK_SECONDS)

load-admission: $(NGX_MODULE) test-models
	$(LOAD_ENV) tests/load/admission.py --seconds 30 --load 0.8
