"""The standard Transformers multimodal contract: processor-expanded placeholders, `model(**inputs)` and GenerationMixin's
own `generate`, and the invariants transformers' common model tests check (written here in their style)."""

import copy

import numpy as np
import pytest
import torch
from tiny_models import TRANSCRIPTS, randomize_lora, tiny_clips, tiny_config, tiny_model, tiny_processor

from omni_avsr import AVHubertForCTC, AVHubertVideoConfig, AVHubertVideoModel, OmniAVSRForConditionalGeneration
from omni_avsr.configuration_omni_avsr import OmniAVSRConfig
from omni_avsr.modeling_omni_avsr import MIN_AUDIO_FRAMES, OmniAVSRMediaOutput
from omni_avsr.processing_omni_avsr import IGNORE_INDEX
from omni_avsr.training.matryoshka import matryoshka_step
from transformers.modeling_outputs import BaseModelOutputWithPooling


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


@pytest.fixture(scope="module")
def model(processor):
    model = tiny_model(processor).eval()
    randomize_lora(model, std=0.3)
    return model


@pytest.fixture(scope="module")
def clips():
    return tiny_clips(3, seconds=(1.6, 0.3, 1.0))


# ----- the processor lays out the sequence ----------------------------------------------------------------------


@pytest.mark.parametrize("task,audio_rate,video_rate", [("asr", 4, None), ("vsr", None, 5), ("avsr", 16, 2)])
def test_processor_expands_one_placeholder_per_media_token(processor, clips, task, audio_rate, video_rate):
    audio, videos = clips
    inputs = processor(
        audio=audio, videos=videos, sampling_rate=16000, task=task, audio_rate=audio_rate, video_rate=video_rate,
        padding_side="right",
    )
    tokenizer = processor.tokenizer
    audio_id, video_id = (tokenizer.convert_tokens_to_ids(token) for token in ("<|AUDIO|>", "<|VIDEO|>"))
    frames = [len(clip) for clip in videos]  # 40, 7 and 25 frames at 25 fps
    # Whisper: 2 encoder frames per video frame, at least 25 (0.5 s); the tail shorter than a rate is dropped,
    # but a clip keeps at least one token.
    expected_audio = [max(max(2 * n, MIN_AUDIO_FRAMES) // audio_rate, 1) for n in frames] if audio_rate else [0] * 3
    expected_video = [max(n // video_rate, 1) for n in frames] if video_rate else [0] * 3
    assert (inputs["input_ids"] == audio_id).sum(-1).tolist() == expected_audio
    assert (inputs["input_ids"] == video_id).sum(-1).tolist() == expected_video
    assert inputs["task"] == task
    assert int(inputs.get("audio_rate", 0) or 0) == (audio_rate or 0)
    prompt = tokenizer(processor.task_prompts[task], add_special_tokens=False)["input_ids"]
    markers = {name: tokenizer.convert_tokens_to_ids(name) for name in ("<audio>", "</audio>", "<video>", "</video>")}
    row = inputs["input_ids"][1][inputs["attention_mask"][1].bool()].tolist()
    expected = [tokenizer.bos_token_id]
    if audio_rate:
        expected += [markers["<audio>"]] + [audio_id] * expected_audio[1] + [markers["</audio>"]]
    if video_rate:
        expected += [markers["<video>"]] + [video_id] * expected_video[1] + [markers["</video>"]]
    assert row == expected + prompt


def test_processor_labels_padding_prompt_and_structured_kwargs(processor, clips):
    audio, videos = clips
    inputs = processor(audio=audio, videos=videos, text=TRANSCRIPTS, sampling_rate=16000, task="avsr")
    assert (inputs["attention_mask"][:, 0] == 0).any() and (inputs["attention_mask"][:, -1] == 1).all(), "left padding"
    eos = processor.tokenizer.eos_token_id
    for row, text in enumerate(TRANSCRIPTS):
        targets = inputs["labels"][row][inputs["labels"][row] != IGNORE_INDEX].tolist()
        assert targets == processor.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        assert inputs["input_ids"][row, -len(targets):].tolist() == targets, "the transcript follows the prompt"
    structured = processor(
        audio=audio, videos=videos, task="avsr", audio_kwargs={"sampling_rate": 16000},
        text_kwargs={"padding_side": "right"}, common_kwargs={"return_tensors": "np"},
    )
    assert isinstance(structured["input_ids"], np.ndarray) and (structured["attention_mask"][:, 0] == 1).all()
    own = processor(audio=audio[:1], sampling_rate=16000, prompt="Names: ann, bob.")
    assert own["task"] == "asr"
    ids = own["input_ids"][0].tolist()
    assert ids[-len(processor.tokenizer("Names: ann, bob.", add_special_tokens=False)["input_ids"]):] == \
        processor.tokenizer("Names: ann, bob.", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="Unexpected arguments to OmniAVSRProcessor: \\['beam_size'\\]"):
        processor(audio=audio, sampling_rate=16000, beam_size=4)
    with pytest.raises(ValueError, match="audio_rate=8 is not one of this model's audio rates \\(4, 16\\)"):
        processor(audio=audio, sampling_rate=16000, task="asr", audio_rate=8)
    with pytest.raises(ValueError, match="task='avsr' needs audio and lip video, but this processor call has no lip video"):
        processor(audio=audio, sampling_rate=16000, task="avsr")


def test_prompts_are_left_padded_whatever_the_tokenizer_says(clips):
    """A tokenizer made with padding_side="right" does not turn the generation prompts' padding around."""
    from tiny_models import tiny_tokenizer
    from transformers import PreTrainedTokenizerFast, WhisperFeatureExtractor

    from omni_avsr import OmniAVSRProcessor

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer().backend_tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        padding_side="right",
    )
    processor = OmniAVSRProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    inputs = processor(audio=clips[0], sampling_rate=16000, task="asr")
    assert (inputs["attention_mask"][:, -1] == 1).all() and (inputs["attention_mask"][:, 0] == 0).any()


def test_decoding_defaults_match_the_tokenizer(processor):
    ids = processor.tokenizer("bin", add_special_tokens=True)["input_ids"] + [processor.tokenizer.eos_token_id]
    assert processor.batch_decode([ids]) == processor.tokenizer.batch_decode([ids])
    assert processor.decode(ids) == processor.tokenizer.decode(ids)
    assert processor.decode_transcripts([ids]) == ["bin"]


# ----- model(**inputs) and generate(**inputs) -------------------------------------------------------------------


@pytest.mark.parametrize("task", ["asr", "vsr", "avsr"])
def test_forward_gives_logits_and_the_loss_of_the_training_path(processor, model, clips, task):
    audio, videos = clips
    inputs = processor(audio=audio, videos=videos, text=TRANSCRIPTS, sampling_rate=16000, task=task, audio_rate=16,
                       video_rate=5)
    with torch.no_grad():
        output = model(**inputs)
        no_labels = model(**{name: value for name, value in inputs.items() if name != "labels"})
        batch = processor(audio=audio, videos=videos, text=TRANSCRIPTS, sampling_rate=16000)
        training = matryoshka_step(model, processor, batch, [task], audio_rate=16, video_rate=5)
    assert output.logits.shape == (*inputs["input_ids"].shape, model.config.text_config.vocab_size)
    assert no_labels.loss is None
    torch.testing.assert_close(no_labels.logits, output.logits)
    # Left-padded standard batch and right-padded training rows: the same sequences, so the same loss.
    torch.testing.assert_close(output.loss, getattr(training, f"{task}_loss"), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        last = model(**{name: value for name, value in inputs.items() if name != "labels"}, logits_to_keep=1)
    torch.testing.assert_close(last.logits[:, 0], output.logits[:, -1])


def test_generate_is_generation_mixins_with_the_prompt_in_front(processor, model, clips):
    audio, videos = clips
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="avsr", audio_rate=4, video_rate=2)
    prompt_length = inputs["input_ids"].shape[1]
    kwargs = dict(max_new_tokens=5, do_sample=False)
    sequences = model.generate(**inputs, **kwargs)
    assert torch.equal(sequences[:, :prompt_length], inputs["input_ids"])
    scored = model.generate(**inputs, **kwargs, return_dict_in_generate=True, output_scores=True)
    assert torch.equal(scored.sequences, sequences) and len(scored.scores) == sequences.shape[1] - prompt_length
    # Beam search, with and without the shared prompt prefill, and sampling.
    beams = model.generate(**inputs, max_new_tokens=4, num_beams=3, do_sample=False)
    shared_beams = model.generate(**inputs, max_new_tokens=4, num_beams=3, do_sample=False, share_prompt_prefill=True)
    assert torch.equal(beams, shared_beams)
    torch.manual_seed(0)
    sampled = model.generate(**inputs, max_new_tokens=4, do_sample=True, top_k=5, num_return_sequences=2)
    assert sampled.shape[0] == 2 * 3 and torch.equal(sampled[::2, :prompt_length], inputs["input_ids"])


def test_generate_returns_what_generation_mixin_returns_for_its_inputs(processor, model, clips):
    """One rule: `input_ids` give the prompt and the new tokens; `inputs_embeds` alone give the new tokens."""
    audio, _ = clips
    inputs = processor(audio=audio, sampling_rate=16000, task="asr")
    kwargs = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False)
    from_ids = model.generate(**inputs, **kwargs)
    with torch.no_grad():
        features = model.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
        embeddings = model.model.merge_media(
            model.model.embed_tokens(inputs["input_ids"]), inputs["input_ids"], {"audio": features}
        )
    from_embeds = model.generate(inputs_embeds=embeddings, attention_mask=inputs["attention_mask"], task="asr", **kwargs)
    assert from_embeds.shape == (3, 4)
    assert torch.equal(from_ids[:, inputs["input_ids"].shape[1]:], from_embeds)


def test_generate_continues_from_a_cache_and_supports_assisted_decoding(processor, model, clips):
    audio, videos = clips
    inputs = processor(audio=audio[:1], videos=videos[:1], sampling_rate=16000, task="avsr")
    full = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    first = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    continued = model.generate(
        input_ids=first.sequences, attention_mask=torch.ones_like(first.sequences), cache=first.cache, task="avsr",
        max_new_tokens=3, min_new_tokens=3, do_sample=False,
    )
    assert torch.equal(continued, full), "3 + 3 tokens from the cache equal 6 at once"
    with torch.no_grad():
        prefix = model(**inputs, use_cache=True)
        step = model(input_ids=full[:, -6:-5], past_key_values=prefix.cache, task="avsr",
                     attention_mask=torch.ones_like(full[:, :-5]))
    assert step.logits.shape[1] == 1, "past_key_values= reaches the LM (the deprecated name of `cache`)"
    torch.testing.assert_close(step.logits[:, 0].argmax(-1), full[:, -5])
    assisted = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False, prompt_lookup_num_tokens=2)
    assert torch.equal(assisted, full), "assisted decoding by prompt lookup gives the greedy tokens"
    # A draft model gets the prompt without the media (their placeholders read as text); the main model checks it.
    drafted = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False, assistant_model=model)
    assert torch.equal(drafted, full), "assisted decoding by a draft model gives the greedy tokens"


def test_batched_standard_generate_equals_one_clip_at_a_time(processor, model, clips):
    audio, videos = clips
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="avsr")
    # No EOS before the 5th token, so that every row has 5 new tokens to compare.
    kwargs = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)
    batched = model.generate(**inputs, **kwargs)[:, inputs["input_ids"].shape[1]:]
    for index in range(3):
        one = processor(audio=audio[index:index + 1], videos=videos[index:index + 1], sampling_rate=16000, task="avsr")
        single = model.generate(**one, **kwargs)[:, one["input_ids"].shape[1]:]
        assert batched[index].tolist() == single[0].tolist(), index


def test_placeholders_must_match_the_media(processor, model, clips):
    audio, videos = clips
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="asr", audio_rate=4)
    with pytest.raises(ValueError, match="audio placeholders of input_ids do not match the audio features"):
        model(**{**inputs, "audio_rate": 16})


def test_one_place_decides_tasks_and_rates(processor, clips):
    """Rates listed coarse-first still default to the finest; model, processor and pipeline share the rules."""
    config = OmniAVSRConfig(**{**tiny_config(processor).to_dict(), "audio_rates": [16, 4], "video_rates": [5, 2]})
    assert (config.check_rate("audio"), config.check_rate("video")) == (4, 2)
    assert config.default_task({"audio", "video"}) == "avsr" and config.default_task({"video"}) == "vsr"
    for bad in ("4", 4.0, True):
        with pytest.raises(ValueError, match=f"audio_rate must be an integer, one of \\[4, 16\\]; got {bad!r}"):
            config.check_rate("audio", bad)
    assert config.check_rate("audio", torch.tensor(16)) == 16 and config.check_rate("audio", np.int64(4)) == 4
    model = OmniAVSRForConditionalGeneration(config).eval()
    audio, _ = clips
    inputs = tiny_processor()(audio=audio[:1], sampling_rate=16000, task="asr")
    assert int(inputs["audio_rate"]) == 4
    assert model.generate(**inputs, max_new_tokens=2).shape[0] == 1
    with pytest.raises(ValueError, match="OmniAVSRConfig has no text_config"):
        OmniAVSRForConditionalGeneration(OmniAVSRConfig(audio_config=config.audio_config))


# ----- the v5 layout, loading, devices -------------------------------------------------------------------------


# Where each parameter lived in earlier layouts: the first releases, and before the encoders became towers.
EARLIER_LAYOUTS = {
    "first releases": {
        "model.audio_tower.": "audio_encoder.", "model.video_tower.": "video_encoder.",
        "model.language_model.": "language_model.model.", "model.audio_projectors.": "audio_projectors.",
        "model.video_projectors.": "video_projectors.", "lm_head.": "language_model.lm_head.",
    },
    "encoders before towers": {"model.audio_tower.": "model.audio_encoder.", "model.video_tower.": "model.video_encoder."},
}


@pytest.mark.parametrize("layout", EARLIER_LAYOUTS)
def test_layout_loading_info_and_folders_of_earlier_layouts(processor, model, clips, tmp_path, layout):
    from safetensors.torch import load_file, save_file

    assert model.base_model is model.model and model.model.language_model is model.language_model
    assert model.get_output_embeddings() is model.lm_head
    assert model.lm_head.weight is model.get_input_embeddings().weight, "tied as the LM's config says"
    model.save_pretrained(tmp_path / "new")
    loaded, info = OmniAVSRForConditionalGeneration.from_pretrained(tmp_path / "new", output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert all(param.requires_grad for param in loaded.parameters()), "loading applies no training policy"
    # The same weights under the layout's names load through transformers' conversion mapping...
    prefixes = EARLIER_LAYOUTS[layout]
    saved = load_file(tmp_path / "new" / "model.safetensors")
    renamed = {}
    for key, value in saved.items():
        new = next((prefix for prefix in prefixes if key.startswith(prefix)), "")
        renamed[prefixes.get(new, "") + key[len(new):]] = value
    assert set(renamed) != set(saved)
    (tmp_path / "old").mkdir()
    for name in ("config.json", "generation_config.json"):
        (tmp_path / "old" / name).write_bytes((tmp_path / "new" / name).read_bytes())
    save_file(renamed, tmp_path / "old" / "model.safetensors", metadata={"format": "pt"})
    old, info = OmniAVSRForConditionalGeneration.from_pretrained(tmp_path / "old", output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    audio, videos = clips
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="avsr")
    with torch.no_grad():
        torch.testing.assert_close(old.eval()(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    # ... and are saved again under this layout's.
    old.save_pretrained(tmp_path / "resaved")
    assert set(load_file(tmp_path / "resaved" / "model.safetensors")) == set(saved)


def test_device_map_auto_offloads_to_disk_with_identical_tokens(processor, model, clips, tmp_path):
    model.save_pretrained(tmp_path / "model")
    size = sum(param.numel() * param.element_size() for param in model.parameters())
    offloaded = OmniAVSRForConditionalGeneration.from_pretrained(
        tmp_path / "model", device_map="auto", max_memory={"cpu": int(size * 0.6)}, offload_folder=tmp_path / "offload"
    ).eval()
    assert "disk" in set(offloaded.hf_device_map.values()), offloaded.hf_device_map
    no_split = set(offloaded._no_split_modules)
    assert {"LlamaDecoderLayer", "WhisperEncoderLayer", "Wav2Vec2EncoderLayerStableLayerNorm"} <= no_split
    audio, videos = clips
    inputs = processor(audio=audio[:2], videos=videos[:2], sampling_rate=16000, task="avsr")
    expected = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(offloaded.generate(**inputs, max_new_tokens=4, do_sample=False), expected)


def test_missing_weights_get_their_submodels_init(processor, tmp_path):
    """Weights absent from a checkpoint get the init of the sub-model that owns them: Whisper's sinusoidal
    positions, the AV-HuBERT positional convolution's zero bias."""
    from safetensors.torch import load_file, save_file
    from transformers.models.whisper.modeling_whisper import sinusoids

    model = tiny_model(processor)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = [key for key in weights if "embed_positions" in key or "pos_conv_embed.conv.bias" in key]
    assert len(dropped) == 2
    save_file({k: v for k, v in weights.items() if k not in dropped}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    reloaded = OmniAVSRForConditionalGeneration.from_pretrained(tmp_path)
    positions = reloaded.audio_tower.embed_positions.weight
    torch.testing.assert_close(positions, sinusoids(*positions.shape))
    assert torch.count_nonzero(reloaded.video_tower.encoder.pos_conv_embed.conv.bias) == 0


# ----- media features, output options --------------------------------------------------------------------------


def test_media_features_are_model_outputs(processor, model, clips):
    audio, videos = clips
    batch = processor(audio=audio, videos=videos, sampling_rate=16000)
    with torch.no_grad():
        features = model.get_audio_features(batch["input_features"], batch["input_features_mask"], audio_rate=16)
        video = model.get_video_features(batch["pixel_values_videos"], batch["video_mask"], video_rate=5,
                                         output_hidden_states=True)
        as_tuple = model.get_video_features(batch["pixel_values_videos"], batch["video_mask"], return_dict=False)
    assert isinstance(features, BaseModelOutputWithPooling) and isinstance(features, OmniAVSRMediaOutput)
    assert features.pooler_output.shape[:2] == (3, int(features.token_lengths.max()))
    assert features.rate == 16 and video.rate == 5
    assert len(video.hidden_states) == model.config.video_config.num_hidden_layers + 1
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], video.last_hidden_state)


def avhubert_config(**kwargs):
    return AVHubertVideoConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, frontend_channels=8, resnet_channels=[8, 8, 16, 16], **kwargs,
    )


@pytest.mark.parametrize("model_class", [AVHubertVideoModel, AVHubertForCTC])
def test_avhubert_output_options_and_attention_implementations(model_class):
    torch.manual_seed(0)
    config = avhubert_config(vocab_size=12, pad_token_id=0)
    pixels = torch.randn(2, 9, 1, 88, 88)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    models = {
        implementation: model_class._from_config(copy.deepcopy(config), attn_implementation=implementation).eval()
        for implementation in ("eager", "sdpa")
    }
    models["sdpa"].load_state_dict(models["eager"].state_dict())
    assert {name: m.config._attn_implementation for name, m in models.items()} == {"eager": "eager", "sdpa": "sdpa"}
    with torch.no_grad():
        eager = models["eager"](pixels, video_mask=mask, output_hidden_states=True, output_attentions=True)
        sdpa = models["sdpa"](pixels, video_mask=mask)
        as_tuple = models["eager"](pixels, video_mask=mask, return_dict=False)
    first = eager[0]
    torch.testing.assert_close(sdpa[0][mask.bool()], first[mask.bool()], atol=1e-5, rtol=1e-5)
    assert len(eager.hidden_states) == config.num_hidden_layers + 1
    assert len(eager.attentions) == config.num_hidden_layers and eager.attentions[0].shape == (2, 2, 9, 9)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], first)


def test_forward_honours_return_dict(processor, model, clips):
    audio, videos = clips
    inputs = processor(audio=audio, videos=videos, text=TRANSCRIPTS, sampling_rate=16000, task="avsr")
    with torch.no_grad():
        output = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], output.loss)
    torch.testing.assert_close(as_tuple[1], output.logits)


def test_the_merge_compiles_without_graph_breaks(processor, model, clips):
    """The LM step on media inputs (placeholder merge + LM) traces as one graph: no data-dependent shapes."""
    audio, videos = clips
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="avsr")
    with torch.no_grad():
        audio_features = model.get_audio_features(inputs["input_features"], inputs["input_features_mask"])
        video_features = model.get_video_features(inputs["pixel_values_videos"], inputs["video_mask"])

    def lm_step(input_ids, attention_mask, audio_tokens, audio_lengths, video_tokens, video_lengths):
        media = {
            "audio": OmniAVSRMediaOutput(pooler_output=audio_tokens, token_lengths=audio_lengths, rate=4),
            "video": OmniAVSRMediaOutput(pooler_output=video_tokens, token_lengths=video_lengths, rate=2),
        }
        inputs_embeds = model.model.merge_media(model.model.embed_tokens(input_ids), input_ids, media)
        return model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, task="avsr", use_cache=False).logits

    arguments = (
        inputs["input_ids"], inputs["attention_mask"], audio_features.pooler_output, audio_features.token_lengths,
        video_features.pooler_output, video_features.token_lengths,
    )
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(lm_step)(*arguments)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(lm_step, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*arguments), lm_step(*arguments))
