import pytest
import torch
from tiny_models import tiny_batch, tiny_model, tiny_processor

from omni_avsr.training.encoder_cache import cache_frozen_video_encoder
from omni_avsr.training.matryoshka import matryoshka_step
from omni_avsr.training.policy import keep_frozen_encoders_in_eval_mode


@pytest.fixture
def frozen_video_model():
    processor = tiny_processor()
    model = tiny_model(processor, video_lora_rank=0)
    keep_frozen_encoders_in_eval_mode(model.train())
    return processor, model


def test_cached_encoder_gives_the_same_losses_and_encodes_each_clip_once(frozen_video_model):
    processor, model = frozen_video_model
    batch = tiny_batch(processor, num_clips=3)
    expected = matryoshka_step(model, processor, batch, audio_rate=4, video_rate=2)
    calls = []
    encoder = model.model.video_tower
    real_forward = encoder.forward

    def counting_forward(pixel_values_videos, **kwargs):
        calls.append(pixel_values_videos.shape[0])
        return real_forward(pixel_values_videos, **kwargs)

    encoder.forward = counting_forward
    cache = cache_frozen_video_encoder(encoder)
    first = matryoshka_step(model, processor, batch, audio_rate=4, video_rate=2)
    # The same clips in another batch (reordered, padded to another length): no encoder call, same losses.
    subset = tiny_batch(processor, num_clips=2)
    second = matryoshka_step(model, processor, subset, audio_rate=4, video_rate=5)
    assert calls == [3] and len(cache.features) == 3
    for task in ("asr", "vsr", "avsr"):
        torch.testing.assert_close(first[f"{task}_loss"], expected[f"{task}_loss"], rtol=1e-5, atol=1e-6)
    reference = model.model.get_video_features(subset["pixel_values_videos"], subset["video_mask"], 5)
    encoder.forward = real_forward
    uncached = model.model.get_video_features(subset["pixel_values_videos"], subset["video_mask"], 5)
    torch.testing.assert_close(reference.pooler_output, uncached.pooler_output, rtol=1e-5, atol=1e-6)
    assert second.loss.requires_grad
    # Checkpoints keep the encoder's own parameter names.
    assert not any(".encoder_forward" in name for name in model.state_dict())


def test_a_trainable_or_adapted_video_encoder_is_refused():
    processor = tiny_processor()
    adapted = tiny_model(processor)  # video LoRA rank 4: its output changes as LoRA trains
    with pytest.raises(ValueError, match="frozen video encoder"):
        cache_frozen_video_encoder(adapted.model.video_tower)
