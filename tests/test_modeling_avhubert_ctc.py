"""AVHubertForCTC: the lip reader that gives a from-scratch video encoder a lip-reading start."""

import pytest
import torch

from omni_avsr import AVHubertForCTC, AVHubertVideoConfig, AVHubertVideoModel


BLANK, EOS = 3, 1


@pytest.fixture
def lip_reader():
    torch.manual_seed(0)
    config = AVHubertVideoConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, frontend_channels=8, resnet_channels=[8, 8, 16, 16], layerdrop=0.0,
        vocab_size=12, pad_token_id=BLANK, eos_token_id=EOS,
    )
    return AVHubertForCTC(config).eval()


def _videos(num_frames=(20, 14)):
    pixels = torch.randn(len(num_frames), max(num_frames), 1, 88, 88)
    mask = torch.zeros(len(num_frames), max(num_frames), dtype=torch.bool)
    for row, count in enumerate(num_frames):
        mask[row, :count] = True
    return pixels, mask


def test_ctc_loss_ignores_eos_and_padding(lip_reader):
    """Omni-AVSR labels (transcript + EOS, -100 padding) give the CTC loss of the bare transcripts."""
    pixels, mask = _videos()
    with_eos = torch.tensor([[5, 6, 6, 7, EOS], [8, 9, EOS, -100, -100]])
    bare = torch.tensor([[5, 6, 6, 7], [8, 9, -100, -100]])
    loss = lip_reader(pixels, video_mask=mask, labels=with_eos).loss
    assert torch.isfinite(loss) and loss > 0
    torch.testing.assert_close(loss, lip_reader(pixels, video_mask=mask, labels=bare).loss)


def test_padding_does_not_change_a_clip(lip_reader):
    pixels, mask = _videos()
    batched = lip_reader(pixels, video_mask=mask).logits[1, :14]
    alone = lip_reader(pixels[1:, :14], video_mask=mask[1:, :14]).logits[0]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


def test_greedy_decode_merges_repeats_and_drops_blanks(lip_reader):
    path = torch.tensor([[5, 5, BLANK, 5, 6, 6, BLANK, BLANK, 7, 7]])
    logits = torch.nn.functional.one_hot(path, 12).float()
    mask = torch.ones(1, 10, dtype=torch.bool)
    assert lip_reader.greedy_decode(logits, mask) == [[5, 5, 6, 7]]
    mask[0, 8:] = False
    assert lip_reader.greedy_decode(logits, mask) == [[5, 5, 6]]


def test_saved_lip_reader_loads_as_the_encoder(lip_reader, tmp_path):
    lip_reader.save_pretrained(tmp_path)
    encoder = AVHubertVideoModel.from_pretrained(tmp_path)
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(tensor, lip_reader.avhubert.state_dict()[name], msg=name)


def test_missing_vocabulary_is_explained():
    with pytest.raises(ValueError, match="vocab_size"):
        AVHubertForCTC(AVHubertVideoConfig(hidden_size=32, num_attention_heads=2, num_conv_pos_embedding_groups=4))


def test_spatial_stride_four_keeps_the_output_layout_and_round_trips(lip_reader, tmp_path):
    """A stride-4 stem sees a quarter of the pixels; the encoder's output (frames × hidden) and the saved config keep
    the same layout, and a reloaded model computes the same logits."""
    config = lip_reader.config.to_dict() | {"frontend_spatial_stride": 4}
    torch.manual_seed(0)
    strided = AVHubertForCTC(AVHubertVideoConfig.from_dict(config)).eval()
    pixels, mask = _videos()
    logits = strided(pixels, video_mask=mask).logits
    assert logits.shape == lip_reader(pixels, video_mask=mask).logits.shape
    strided.save_pretrained(tmp_path)
    reloaded = AVHubertForCTC.from_pretrained(tmp_path).eval()
    assert reloaded.config.frontend_spatial_stride == 4
    assert reloaded.avhubert.frontend.conv3d.stride == (1, 4, 4)
    torch.testing.assert_close(reloaded(pixels, video_mask=mask).logits, logits)


@pytest.mark.parametrize("name", ["frontend_spatial_stride", "frontend_input_pooling"])
def test_frontend_factors_must_be_positive(name):
    with pytest.raises(Exception, match=f"{name} must be a positive integer, got 0"):
        AVHubertVideoConfig(**{name: 0})


def test_input_pooling_reads_the_crop_at_half_resolution_and_round_trips(lip_reader, tmp_path):
    """`frontend_input_pooling: 2` is the same network fed 2×2-averaged crops: same weights, same logits, and the
    option survives save / load (so a pipeline reads clips as the model was trained)."""
    pooled = AVHubertForCTC(AVHubertVideoConfig.from_dict(lip_reader.config.to_dict() | {"frontend_input_pooling": 2}))
    pooled.load_state_dict(lip_reader.state_dict())
    pooled.eval()
    pixels, mask = _videos()
    batch, frames, channels, height, width = pixels.shape
    halved = pixels.reshape(batch, frames, channels, height // 2, 2, width // 2, 2).mean(dim=(4, 6))
    logits = pooled(pixels, video_mask=mask).logits
    torch.testing.assert_close(logits, lip_reader(halved, video_mask=mask).logits)
    pooled.save_pretrained(tmp_path)
    reloaded = AVHubertForCTC.from_pretrained(tmp_path).eval()
    assert reloaded.config.frontend_input_pooling == 2
    torch.testing.assert_close(reloaded(pixels, video_mask=mask).logits, logits)
