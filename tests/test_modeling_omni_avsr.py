"""Behaviour of OmniAVSRForConditionalGeneration on tiny random configurations."""

import itertools

import pytest
import torch
from tiny_models import TRANSCRIPTS, randomize_lora, tiny_batch, tiny_clips, tiny_model, tiny_processor

from omni_avsr import OmniAVSRForConditionalGeneration
from omni_avsr.input_checks import placeholder_mask
from omni_avsr.modeling_omni_avsr import compress_frames
from omni_avsr.presets import paper_config
from omni_avsr.training.matryoshka import matryoshka_step
from omni_avsr.training.policy import freeze, keep_frozen_encoders_in_eval_mode


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


@pytest.fixture(scope="module")
def batch(processor):
    return tiny_batch(processor)


def _grad_is_nonzero(param):
    return param.grad is not None and bool(param.grad.abs().sum() > 0)


@pytest.mark.parametrize("variant,compression", list(itertools.product(["S", "T", "ST"], ["avg_pool", "stack"])))
def test_training_step_loss_and_gradients(processor, batch, variant, compression):
    model = tiny_model(processor, lora_variant=variant, compression=compression)
    randomize_lora(model)
    keep_frozen_encoders_in_eval_mode(model.train())
    output = matryoshka_step(model, processor, batch, audio_rate=16, video_rate=2)
    weighted = 1.0 * output.asr_loss + 1.5 * output.vsr_loss + 1.0 * output.avsr_loss
    assert torch.isfinite(output.loss)
    torch.testing.assert_close(output.loss, weighted)
    assert (output.audio_rate, output.video_rate) == (16, 2)
    output.loss.backward()

    lora_names = [name for name, _ in model.named_parameters() if ".lora_" in name]
    expected_adapters = {"S": {"shared"}, "T": {"asr", "vsr", "avsr"}, "ST": {"shared", "asr", "vsr", "avsr"}}[variant]
    assert {name.split(".lora_")[1].split(".")[1] for name in lora_names if "language_model" in name} == expected_adapters
    for name, param in model.named_parameters():
        sampled_projector = name.startswith(("model.audio_projectors.16.", "model.video_projectors.2."))
        if ".lora_" in name or sampled_projector:
            assert param.requires_grad and _grad_is_nonzero(param), name
        else:
            assert param.grad is None, name


def test_rates_are_sampled_uniformly_over_steps(processor, batch):
    model = keep_frozen_encoders_in_eval_mode(tiny_model(processor, tasks=["asr"]).train())
    torch.manual_seed(0)
    seen = {matryoshka_step(model, processor, batch).audio_rate for _ in range(12)}
    assert seen == {4, 16}
    model.eval()
    assert matryoshka_step(model, processor, batch).audio_rate == 4, "eval without a rate uses the finest rate"


def test_task_losses_match_separate_single_task_calls(processor, batch):
    """The combined LM call (rows of all tasks, routed adapters) equals running each task alone."""
    model = tiny_model(processor, lora_variant="ST").eval()
    randomize_lora(model)
    joint = matryoshka_step(model, processor, batch, audio_rate=4, video_rate=5)
    for task in ("asr", "vsr", "avsr"):
        alone = matryoshka_step(model, processor, batch, audio_rate=4, video_rate=5, tasks=[task])
        torch.testing.assert_close(getattr(alone, f"{task}_loss"), getattr(joint, f"{task}_loss"), rtol=1e-5, atol=1e-6)


def test_one_call_gradients_equal_the_sum_of_single_task_steps(processor, batch):
    """Routing adapters per row in one LM call (with in-place LoRA deltas) gives every parameter, the unfrozen LM
    included, the gradient of the weighted sum of three single-task steps."""
    model = tiny_model(processor, lora_variant="ST", freeze_language_model=False)
    randomize_lora(model)
    model.eval()  # no dropout: both ways must see the same network

    def gradients(task_groups):
        model.zero_grad()
        sum(
            matryoshka_step(model, processor, batch, audio_rate=4, video_rate=2, tasks=tasks).loss for tasks in task_groups
        ).backward()
        return {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}

    joint = gradients([["asr", "vsr", "avsr"]])
    separate = gradients([["asr"], ["vsr"], ["avsr"]])
    assert joint.keys() == separate.keys() and any("language_model" in name for name in joint)
    for name, grad in separate.items():
        torch.testing.assert_close(joint[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_gradients_are_correct_under_activation_checkpointing(processor, batch):
    reference = tiny_model(processor, lora_variant="ST")
    randomize_lora(reference)
    checkpointed = tiny_model(processor, lora_variant="ST")
    checkpointed.load_state_dict(reference.state_dict())
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.language_model.layers[0].gradient_checkpointing
    for model in (reference, checkpointed):
        keep_frozen_encoders_in_eval_mode(model.train())
        matryoshka_step(model, processor, batch, audio_rate=4, video_rate=2).loss.backward()
    reference_grads = dict(reference.named_parameters())
    for name, param in checkpointed.named_parameters():
        if ".lora_" in name and "language_model" in name:
            torch.testing.assert_close(param.grad, reference_grads[name].grad, rtol=1e-4, atol=1e-6)


def test_masked_padding_makes_a_clip_independent_of_its_batch(processor):
    model = tiny_model(processor).eval()
    randomize_lora(model)
    full = tiny_batch(processor, num_clips=3)
    alone = tiny_batch(processor, num_clips=2)
    for name in ("pixel_values_videos", "video_mask"):
        alone[name] = alone[name][1:2, :30]
    for name in ("input_features", "input_features_mask", "labels"):
        alone[name] = alone[name][1:2]
    alone["labels"] = alone["labels"][:, : len(TRANSCRIPTS[1]) + 1]
    # Clip 1 of the batch is shorter than clip 2, so it is padded in audio, video and text.
    pair = {name: tensor[1:3] for name, tensor in full.items()}
    with torch.no_grad():
        for task in ("asr", "vsr", "avsr"):
            single = matryoshka_step(model, processor, alone, [task], audio_rate=4, video_rate=2, output_logits=True)
            batched = matryoshka_step(model, processor, pair, [task], audio_rate=4, video_rate=2, output_logits=True)
            length = single.task_logits[task].shape[1]
            torch.testing.assert_close(batched.task_logits[task][0, :length], single.task_logits[task][0], atol=1e-4, rtol=1e-4)


def test_official_padding_differs_for_padded_clips(processor):
    """`padding="official"` reproduces the reference batching: a short clip sees its batch's padding."""
    model = tiny_model(processor).eval()
    batch = tiny_batch(processor, num_clips=2)
    with torch.no_grad():
        masked_out = matryoshka_step(model, processor, batch, ["vsr"], audio_rate=4, video_rate=2, output_logits=True)
        official_out = matryoshka_step(
            model, processor, batch, ["vsr"], audio_rate=4, video_rate=2, padding="official", output_logits=True
        )
    assert official_out.task_logits["vsr"].shape[1] > masked_out.task_logits["vsr"][1:].shape[1] - 1
    assert not torch.allclose(official_out.vsr_loss, masked_out.vsr_loss)


@pytest.mark.parametrize("llm", ["llama", "qwen2"])
def test_generate_every_task_and_rate_batched_equals_single(llm):
    processor = tiny_processor(with_bos=llm == "llama")
    model = tiny_model(processor, llm=llm).eval()
    randomize_lora(model, std=0.3)
    audio, videos = tiny_clips(3)
    for task, audio_rate, video_rate in itertools.product(["asr", "vsr", "avsr"], [4, 16], [2, 5]):
        layout = dict(sampling_rate=16000, task=task, audio_rate=audio_rate, video_rate=video_rate)
        inputs = processor(audio=audio, videos=videos, **layout)
        batched = model.generate(**inputs, max_new_tokens=6, do_sample=False)[:, inputs["input_ids"].shape[1]:]
        assert batched.shape[0] == 3 and batched.shape[1] <= 6
        for index in range(3):
            single = processor(audio=audio[index : index + 1], videos=videos[index : index + 1], **layout)
            one = model.generate(**single, max_new_tokens=6, do_sample=False)[:, single["input_ids"].shape[1]:]
            assert batched[index, : one.shape[1]].tolist() == one[0].tolist(), (task, audio_rate, video_rate, index)


def test_beam_search_batched_equals_single(processor):
    model = tiny_model(processor).eval()
    randomize_lora(model, std=0.3)
    audio, _ = tiny_clips(2)
    inputs = processor(audio=audio, sampling_rate=16000, task="asr", audio_rate=4)
    one = processor(audio=audio[1:], sampling_rate=16000, task="asr", audio_rate=4)
    kwargs = dict(num_beams=3, max_new_tokens=5, do_sample=False)
    batched = model.generate(**inputs, **kwargs)[:, inputs["input_ids"].shape[1]:]
    single = model.generate(**one, **kwargs)[:, one["input_ids"].shape[1]:]
    assert batched[1, : single.shape[1]].tolist() == single[0].tolist()


def test_shared_prompt_prefill_prefills_once_per_clip_with_identical_results(processor):
    """With `share_prompt_prefill=True`, the prompt goes through the LM once per clip (not once per beam); the tokens
    equal the plain beam search, which is the default."""
    model = tiny_model(processor).eval()
    randomize_lora(model, std=0.3)
    audio, videos = tiny_clips(2)
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="avsr", audio_rate=4, video_rate=2)
    kwargs = dict(num_beams=4, max_new_tokens=5, do_sample=False)
    calls = []
    hook = model.language_model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True)
    try:
        plain = model.generate(**inputs, **kwargs)
        assert calls[0]["inputs_embeds"].shape[:2] == (2 * 4, inputs["input_ids"].shape[1]), "default: per beam"
        calls.clear()
        ours = model.generate(**inputs, share_prompt_prefill=True, **kwargs)
    finally:
        hook.remove()
    assert ours.tolist() == plain.tolist()
    prompt_length = inputs["input_ids"].shape[1]
    assert calls[0]["inputs_embeds"].shape[:2] == (2, prompt_length - 1), "the prompt once per clip"
    assert calls[1]["inputs_embeds"].shape[:2] == (2 * 4, 1), "then only the last prompt position per beam"


def test_single_modality_models_and_single_task_training(processor):
    audio_only = tiny_model(processor, video=False)
    assert audio_only.config.tasks == ["asr"] and audio_only.video_tower is None
    batch = tiny_batch(processor)
    audio_batch = {name: batch[name] for name in ("input_features", "input_features_mask", "labels")}
    out = matryoshka_step(audio_only, processor, audio_batch)
    assert out.vsr_loss is None and torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss, out.asr_loss)
    video_only = tiny_model(processor, audio=False, lora_variant="T")
    video_batch = {name: batch[name] for name in ("pixel_values_videos", "video_mask", "labels")}
    out = matryoshka_step(video_only, processor, video_batch)
    torch.testing.assert_close(out.loss, 1.5 * out.vsr_loss)
    with pytest.raises(ValueError, match="task='asr' is not one of this model's tasks \\(vsr\\)"):
        video_only.generate(pixel_values_videos=batch["pixel_values_videos"], task="asr")


def test_bad_inputs_raise_clear_errors(processor, batch):
    model = tiny_model(processor).eval()
    media = {name: batch[name] for name in ("input_features", "input_features_mask", "pixel_values_videos", "video_mask")}
    with pytest.raises(ValueError, match="Unknown task 'lipreading'"):
        model.generate(**media, task="lipreading")
    with pytest.raises(ValueError, match="audio_rate=8 is not one of this model's audio rates"):
        model.generate(**media, task="asr", audio_rate=8)
    with pytest.raises(ValueError, match="video_rate=3"):
        matryoshka_step(model, processor, batch, video_rate=3)
    with pytest.raises(ValueError, match="The audio placeholders of input_ids do not match the audio features"):
        model.generate(**media, task="avsr")
    with pytest.raises(ValueError, match="task='asr' needs audio, but the training batch has no audio"):
        matryoshka_step(model, processor, {"pixel_values_videos": batch["pixel_values_videos"], "labels": batch["labels"]})
    with pytest.raises(ValueError, match="Batch sizes disagree"):
        matryoshka_step(model, processor, {**batch, "labels": batch["labels"][:2]})
    with pytest.raises(ValueError, match="longer audio does not fit"):
        model.generate(input_features=torch.zeros(1, 80, 3200), input_features_mask=torch.ones(1, 3200), task="asr")
    with pytest.raises(ValueError, match="input_features_mask is required"):
        model.generate(input_features=batch["input_features"], task="asr")
    with pytest.raises(ValueError, match="grayscale"):
        model.generate(pixel_values_videos=batch["pixel_values_videos"].repeat(1, 1, 3, 1, 1), task="vsr")
    with pytest.raises(ValueError, match="Give exactly one of input_ids or inputs_embeds .*omni_avsr.training.matryoshka"):
        model(**media)


def test_save_and_reload_gives_identical_logits_and_all_parameters_train(processor, batch, tmp_path):
    model = tiny_model(processor).eval()
    randomize_lora(model)
    model.save_pretrained(tmp_path)
    reloaded = OmniAVSRForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        before = matryoshka_step(model, processor, batch, audio_rate=4, video_rate=5, output_logits=True)
        after = matryoshka_step(reloaded, processor, batch, audio_rate=4, video_rate=5, output_logits=True)
    for task in ("asr", "vsr", "avsr"):
        torch.testing.assert_close(after.task_logits[task], before.task_logits[task], rtol=0, atol=0)
    # The training policy is the training run's, not the checkpoint's: loaded, everything can train.
    assert all(param.requires_grad for param in reloaded.parameters())
    freeze(reloaded)
    trainable = {name for name, param in reloaded.named_parameters() if param.requires_grad}
    assert trainable == {name for name, param in model.named_parameters() if param.requires_grad}
    assert all(".lora_" in name or "projectors" in name for name in trainable)


def test_missing_adapters_start_at_zero_after_loading(processor, tmp_path):
    """Adapters absent from a checkpoint get peft's init (B = 0), not the LM's normal init."""
    from safetensors.torch import load_file, save_file

    model = tiny_model(processor, lora_variant="S")
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".lora_" not in k}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    reloaded = OmniAVSRForConditionalGeneration.from_pretrained(tmp_path)
    for name, param in reloaded.named_parameters():
        if ".lora_B" in name:
            assert torch.count_nonzero(param) == 0, name


@pytest.mark.parametrize("variant,expected_millions", [("S", 38.3), ("T", 51.9), ("ST", 58.7)])
def test_paper_shapes_trainable_parameters(variant, expected_millions):
    with torch.device("meta"):
        model = OmniAVSRForConditionalGeneration(paper_config(variant))
    freeze(model)
    trainable = sum(param.numel() for param in model.parameters() if param.requires_grad) / 1e6
    assert abs(trainable - expected_millions) / expected_millions < 0.02, trainable
    video_tower = sum(param.numel() for name, param in model.video_tower.named_parameters() if ".lora_" not in name)
    assert abs(video_tower / 1e6 - 324.5) < 0.1


def test_compress_frames_matches_avg_pool_and_keeps_short_clips():
    features = torch.randn(2, 10, 3)
    pooled, lengths = compress_frames(features, torch.tensor([10, 3]), 4, "avg_pool")
    reference = torch.nn.functional.avg_pool1d(features.transpose(1, 2), 4).transpose(1, 2)
    torch.testing.assert_close(pooled[0, :2], reference[0])
    torch.testing.assert_close(pooled[1, 0], features[1, :3].mean(0))
    assert lengths.tolist() == [2, 1]
    stacked, lengths = compress_frames(features, torch.tensor([10, 9]), 3, "stack")
    assert stacked.shape == (2, 4, 9) and lengths.tolist() == [3, 3]
    torch.testing.assert_close(stacked[0, 1], features[0, 3:6].flatten())


def test_trimmed_audio_window_is_batch_independent(processor):
    full = tiny_model(processor).eval()
    trimmed = tiny_model(processor, audio_full_window=False).eval()
    trimmed.load_state_dict(full.state_dict())
    batch = tiny_batch(processor, text=False)
    with torch.no_grad():
        batched, lengths = trimmed.model.encode_audio(batch["input_features"], batch["input_features_mask"])
        single, _ = trimmed.model.encode_audio(batch["input_features"][1:2], batch["input_features_mask"][1:2])
        reference, reference_lengths = full.model.encode_audio(batch["input_features"], batch["input_features_mask"])
    batched, single, reference = batched.last_hidden_state, single.last_hidden_state, reference.last_hidden_state
    assert lengths.tolist() == reference_lengths.tolist() == [80, 60, 100]
    torch.testing.assert_close(batched[1, :60], single[0, :60], atol=1e-5, rtol=1e-5)
    assert batched.shape[1] == 100 and reference.shape[1] == 100
    audio, _ = tiny_clips(3)
    assert trimmed.generate(**processor(audio=audio, sampling_rate=16000, task="asr"), max_new_tokens=4).shape[0] == 3


def test_placeholder_mask_is_one_rule_for_the_merge_the_embedding_lookup_and_the_id_check(processor):
    """`input_checks.placeholder_mask` is where a sequence holds media: the model's merge reads it per modality, its
    embedding lookup and `generate`'s id check for either."""
    model = tiny_model(processor).eval()
    config = model.config
    audio, videos = tiny_clips(2)
    inputs = processor(audio=audio, videos=videos, sampling_rate=16000, task="avsr")
    input_ids = inputs["input_ids"]
    audio, video = (input_ids == config.audio_token_id), (input_ids == config.video_token_id)
    assert audio.any() and video.any()
    assert torch.equal(placeholder_mask(config, input_ids), audio | video)
    embeds = model.model.embed_tokens(input_ids)
    for modality, expected in (("audio", audio), ("video", video)):
        assert torch.equal(placeholder_mask(config, input_ids, modality), expected)
        assert torch.equal(model.model.get_placeholder_mask(input_ids, embeds, modality), expected)
