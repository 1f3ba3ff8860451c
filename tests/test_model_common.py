"""Transformers' common model and generation expectations, written for Omni-AVSR in the style of transformers'
`ModelTesterMixin` / `GenerationTesterMixin` (a tester that prepares a config and inputs, then one test per
expectation). Each test is a place where a user who knows Voxtral or Audio Flamingo 3 would otherwise be surprised."""

import pytest
import torch
from tiny_models import randomize_lora, tiny_clips, tiny_config, tiny_processor

import omni_avsr
from omni_avsr import OmniAVSRForConditionalGeneration, OmniAVSRModel


class OmniAVSRModelTester:
    """A tiny config whose LM has embedding rows for the placeholders (as transformers' testers give their image or
    audio tokens), and the processor's inputs of a batch of clips for one task."""

    def __init__(self, lora_variant: str = "ST", task: str = "avsr", batch_size: int = 2):
        self.processor = tiny_processor()
        self.lora_variant, self.task, self.batch_size = lora_variant, task, batch_size

    def get_config(self):
        return tiny_config(self.processor, vocab_size=len(self.processor.tokenizer), lora_variant=self.lora_variant)

    def prepare_config_and_inputs_for_common(self):
        audio, videos = tiny_clips(self.batch_size, seconds=(1.2, 0.8))
        inputs = self.processor(audio=audio, videos=videos, sampling_rate=16000, task=self.task)
        return self.get_config(), dict(inputs)


def model_for(tester: OmniAVSRModelTester, seed: int = 0) -> OmniAVSRForConditionalGeneration:
    torch.manual_seed(seed)
    model = OmniAVSRForConditionalGeneration(tester.get_config()).eval()
    randomize_lora(model, std=0.3)
    return model


@pytest.fixture(scope="module")
def tester():
    return OmniAVSRModelTester()


def test_inputs_embeds(tester):
    """`inputs_embeds` in place of `input_ids`, with the media: merged at the placeholders found in the embeddings."""
    config, inputs = tester.prepare_config_and_inputs_for_common()
    model = model_for(tester)
    input_ids = inputs.pop("input_ids")
    with torch.no_grad():
        model(**inputs, inputs_embeds=model.get_input_embeddings()(input_ids))


def test_inputs_embeds_matches_input_ids(tester):
    _, inputs = tester.prepare_config_and_inputs_for_common()
    model = model_for(tester)
    input_ids = inputs.pop("input_ids")
    with torch.no_grad():
        from_ids = model(**inputs, input_ids=input_ids).logits
        from_embeds = model(**inputs, inputs_embeds=model.get_input_embeddings()(input_ids)).logits
    torch.testing.assert_close(from_embeds, from_ids)


def test_placeholders_past_the_vocabulary_cannot_be_found_in_embeddings():
    """Converted models have no embedding row for the placeholders: with media, `inputs_embeds` alone are refused
    with what to pass instead."""
    processor = tiny_processor()
    model = OmniAVSRForConditionalGeneration(tiny_config(processor)).eval()
    audio, _ = tiny_clips(1)
    inputs = processor(audio=audio, sampling_rate=16000, task="asr")
    embeddings = model.model.embed_tokens(inputs.pop("input_ids"))
    with pytest.raises(ValueError, match="lies past the language model.s 39 embedding rows, so it cannot be found in embeddings: pass input_ids"):
        model(**inputs, inputs_embeds=embeddings)


@pytest.mark.parametrize("lora_variant", ["S", "T", "ST"])
def test_text_only_forward_and_generate_from_bos_need_no_task(lora_variant):
    """Without media or a task the LM runs with the adapters every task shares (S's `shared`, none for T): a text-only
    forward, and `generate()` from BOS alone, as GenerationMixin starts it."""
    tester = OmniAVSRModelTester(lora_variant=lora_variant)
    model = model_for(tester)
    input_ids = torch.tensor([[tester.processor.tokenizer.bos_token_id, 5, 6, 7]])
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
    assert logits.shape == (1, 4, model.config.text_config.vocab_size)
    tokens = model.generate(max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert tokens.shape == (1, 4) and tokens[0, 0] == tester.processor.tokenizer.bos_token_id
    if lora_variant == "T":
        # No shared adapter: the LM alone, as with the adapters disabled.
        with torch.no_grad():
            for layer in model.model._routed_lora_layers:
                layer.enable_adapters(False)
            plain = model(input_ids=input_ids, task="asr").logits
        torch.testing.assert_close(logits, plain)


def test_placeholders_without_media_read_as_text(tester):
    """A draft model of assisted decoding gets the prompt without the media: its placeholders are embedded like any
    token instead of refused."""
    _, inputs = tester.prepare_config_and_inputs_for_common()
    model = model_for(tester)
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], task="avsr").logits
    assert torch.isfinite(logits).all()


def test_a_mask_without_its_media_is_ignored(tester):
    """As Audio Flamingo 3: a mask left over without its media changes nothing (`generate` keeps passing
    `video_mask` after the prefill dropped the frames)."""
    processor, model = tester.processor, model_for(tester)
    audio, videos = tiny_clips(2)
    inputs = processor(audio=audio, sampling_rate=16000, task="asr")
    video_mask = processor(videos=videos)["video_mask"]
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs, video_mask=video_mask).logits, model(**inputs).logits)
    assert torch.equal(
        model.generate(**inputs, video_mask=video_mask, max_new_tokens=3), model.generate(**inputs, max_new_tokens=3)
    )


def test_beam_search_attentions_and_hidden_states_cover_the_prompt_at_step_0(tester):
    _, inputs = tester.prepare_config_and_inputs_for_common()
    model = model_for(tester)
    model.set_attn_implementation("eager")  # attention weights come from eager attention
    prompt_length = inputs["input_ids"].shape[1]
    output = model.generate(
        **inputs, num_beams=2, max_new_tokens=3, min_new_tokens=3, do_sample=False, return_dict_in_generate=True,
        output_attentions=True, output_hidden_states=True,
    )
    layers = model.config.text_config.num_hidden_layers
    assert len(output.attentions) == 3 and len(output.attentions[0]) == layers
    assert output.attentions[0][0].shape[-2:] == (prompt_length, prompt_length)
    assert output.attentions[1][0].shape[-2:] == (1, prompt_length + 1)
    assert output.hidden_states[0][-1].shape[:2] == (2 * tester.batch_size, prompt_length)


def test_tensor_parallel_plan_covers_the_lm_head(tester):
    """The tied LM head is split column-wise and gathered, as Llava and Qwen2.5-Omni declare."""
    model = model_for(tester)
    assert model._tp_plan["lm_head"] == "colwise_gather_output"
    assert model.get_output_embeddings() is model.lm_head


def test_the_base_model_is_exported_and_is_the_base_model(tester):
    model = model_for(tester)
    assert isinstance(model.base_model, OmniAVSRModel) and omni_avsr.OmniAVSRModel is OmniAVSRModel
    assert "OmniAVSRModel" in omni_avsr.__all__


def test_training_gradient_checkpointing(tester):
    """Every parameter trains by default (training policy is the training run's, `omni_avsr.training.policy`); the
    frozen Whisper encoder is frozen by `requires_grad` alone, so `requires_grad_(True)` unfreezes it, and gradient
    checkpointing gives the same parameters a gradient."""
    processor = tester.processor
    audio, videos = tiny_clips(2)
    inputs = processor(audio=audio, videos=videos, text=["bin red", "set blue"], sampling_rate=16000, task="avsr")
    model = model_for(tester).train()
    assert all(param.requires_grad for param in model.parameters())

    def nonzero_gradients():
        model.zero_grad()
        torch.manual_seed(0)
        model(**inputs).loss.backward()
        return {name for name, param in model.named_parameters() if param.grad is not None and param.grad.abs().sum() > 0}

    plain = nonzero_gradients()
    assert any(name.startswith("model.audio_tower.layers.") for name in plain), "the audio tower trains"
    model.activation_checkpointing_enable({"use_reentrant": False})
    assert nonzero_gradients() == plain


def test_freezing_is_requires_grad(tester):
    """`freeze` (the paper's policy) sets `requires_grad`; a frozen encoder can be unfrozen afterwards."""
    from omni_avsr.training.policy import freeze

    processor = tester.processor
    audio, _ = tiny_clips(2)
    inputs = processor(audio=audio, text=["bin red", "set blue"], sampling_rate=16000, task="asr")
    model = model_for(tester)
    freeze(model)
    assert not any(param.requires_grad for param in model.audio_tower.parameters())
    model.audio_tower.requires_grad_(True)
    model.train()(**inputs).loss.backward()
    assert all(param.grad is not None for param in model.audio_tower.parameters() if param.requires_grad)


def test_sdpa_can_dispatch_composite_models(tester, tmp_path):
    """The towers are named as transformers' composite models name them (`audio_tower`), and an attention
    implementation asked for at loading reaches each sub-model."""
    model = model_for(tester)
    model.save_pretrained(tmp_path)
    for requested in ("sdpa", "eager"):
        loaded = OmniAVSRForConditionalGeneration.from_pretrained(tmp_path, attn_implementation=requested).base_model
        assert loaded.audio_tower.config._attn_implementation == requested
        assert loaded.video_tower.config._attn_implementation == requested
        assert loaded.language_model.config._attn_implementation == requested
