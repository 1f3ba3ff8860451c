"""What Omni-AVSR refuses before any work, with a message that names the input and what was expected: a task without
the media it reads, media of the wrong shape, batch sizes that disagree, NaN or infinite values, ids outside the language model's vocabulary, decoding
counts that are not counts; and NaN logits at the first decoding step. The model, the processor and the training
step (and the pipelines, for the task's media) call these, so each rule is written once; so is where a sequence holds
media placeholders, which the checks and the model's merge both read.

Copied into Hub repositories with the modeling file (a flat module, relative imports only).
"""

import numpy as np
import torch
from transformers.generation import LogitsProcessor

from .configuration_omni_avsr import TASK_MODALITIES


# How messages name each modality: the video a task reads is lip video (mouth crops), not any video.
MODALITY_NAMES = {"audio": "audio", "video": "lip video"}


def check_task_media(task: str, available, source: str) -> None:
    """Refuse `task` when `source` (the input, as the message names it) lacks a modality the task reads (`available`:
    the modalities it has): the model would write a transcript from the prompt alone."""
    needs = TASK_MODALITIES[task]
    missing = [modality for modality in needs if modality not in available]
    if missing:
        raise ValueError(
            f"task={task!r} needs {' and '.join(MODALITY_NAMES[m] for m in needs)}, but {source} has no "
            f"{' or '.join(MODALITY_NAMES[m] for m in missing)}; use a task its media allow or give the missing input."
        )


def check_finite(name: str, values) -> None:
    """Refuse NaN or ±inf in `values` (a numpy array or a tensor): they pass through every layer and come out as an
    empty or garbage transcript, with no error."""
    finite = torch.isfinite(values) if isinstance(values, torch.Tensor) else np.isfinite(values)
    if not finite.all():
        bad, total = int((~finite).sum()), int(np.prod(finite.shape))
        raise ValueError(f"{name} holds {bad} NaN or infinite value(s) of {total}; expected finite numbers.")


def placeholder_mask(config, input_ids: torch.LongTensor, modality: str | None = None) -> torch.BoolTensor:
    """Where `input_ids` hold the media placeholder of `modality` (default: of either modality), for a model of
    `config` (an `OmniAVSRConfig`)."""
    mask = input_ids == (config.video_token_id if modality == "video" else config.audio_token_id)
    return mask | (input_ids == config.video_token_id) if modality is None else mask


def check_batch_sizes(sizes: dict[str, int]) -> None:
    """Refuse inputs of one batch that hold different numbers of clips (`{name: clips}`)."""
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Batch sizes disagree: {sizes}.")


def check_media(config, input_features=None, input_features_mask=None, pixel_values_videos=None, video_mask=None):
    """Refuse media tensors of the wrong shape for a model of `config` (an `OmniAVSRConfig`), audio without its mask,
    masks that do not fit their media, empty batches, or batches of different sizes. A mask without its media is left
    alone. Shapes only: no host sync, so the training forward runs it too."""
    for name, media in (("input_features", input_features), ("pixel_values_videos", pixel_values_videos)):
        if media is not None and media.ndim > 0 and media.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (0 clips); expected at least one clip.")
    sizes = {}
    if input_features is not None:
        if not config.has_modality("audio"):
            raise ValueError("This model has no audio encoder (a VSR-only model): do not pass input_features.")
        expected_frames = 2 * config.audio_config.max_source_positions
        if input_features.ndim != 3 or input_features.shape[-1] != expected_frames:
            raise ValueError(
                f"input_features has shape {tuple(input_features.shape)}; the Whisper encoder takes (batch, mel "
                f"bins, {expected_frames}) ({expected_frames // 100} s, longer audio does not fit its window). Use "
                "the processor, which pads every clip to the window and rejects longer ones."
            )
        mel_bins = config.audio_config.num_mel_bins
        if input_features.shape[1] != mel_bins:
            raise ValueError(
                f"input_features has {input_features.shape[1]} mel bins; this model's audio encoder reads "
                f"{mel_bins}. Expected the features of this model's processor (a feature extractor with "
                f"feature_size={mel_bins})."
            )
        if input_features_mask is None:
            raise ValueError(
                "input_features_mask is required with input_features: it tells how much of the 30 s Whisper "
                "window is speech (OmniAVSRProcessor returns it)."
            )
        if tuple(input_features_mask.shape) != (input_features.shape[0], expected_frames):
            raise ValueError(
                f"input_features_mask has shape {tuple(input_features_mask.shape)}; expected "
                f"{(input_features.shape[0], expected_frames)}, one entry per mel frame of input_features."
            )
        sizes["input_features"] = input_features.shape[0]
    if pixel_values_videos is not None:
        if not config.has_modality("video"):
            raise ValueError("This model has no video encoder (an ASR-only model): do not pass pixel_values_videos.")
        if pixel_values_videos.ndim != 5 or pixel_values_videos.shape[2] != 1:
            raise ValueError(
                "pixel_values_videos must have shape (batch, frames, 1, height, width) (grayscale), got "
                f"{tuple(pixel_values_videos.shape)}."
            )
        if video_mask is not None and tuple(video_mask.shape) != tuple(pixel_values_videos.shape[:2]):
            raise ValueError(
                f"video_mask has shape {tuple(video_mask.shape)}; expected {tuple(pixel_values_videos.shape[:2])}, "
                "one entry per frame of pixel_values_videos."
            )
        sizes["pixel_values_videos"] = pixel_values_videos.shape[0]
    check_batch_sizes(sizes)


def check_input_ids(config, input_ids: torch.LongTensor, vocabulary: int) -> None:
    """Refuse ids that are neither among the LM's `vocabulary` embedding rows nor a media placeholder (ids of another
    tokenizer?), which would fail deep inside the embedding lookup. It reads the ids on the host: `generate` runs it,
    the training forward does not."""
    config.check_token_ids()
    outside = ((input_ids < 0) | (input_ids >= vocabulary)) & ~placeholder_mask(config, input_ids)
    if outside.any():
        row, position = (int(index) for index in outside.nonzero()[0])
        raise ValueError(
            f"input_ids[{row}, {position}] is {int(input_ids[row, position])}: outside the language model's "
            f"vocabulary (0 to {vocabulary - 1}) and not a media placeholder ({config.audio_token_id}, "
            f"{config.video_token_id}); expected the ids this model's processor (its tokenizer) gives."
        )


def check_generate_inputs(model, input_ids, kwargs: dict) -> None:
    """What `model.generate` refuses before any work (inputs from the processor pass): labels, non-finite media or
    embeddings, a clip whose mask marks no frame (it would be transcribed from padding alone), prompts and masks that
    disagree with each other or the media, ids outside the vocabulary, beam counts that are not whole numbers ≥ 1."""
    if kwargs.get("labels") is not None:
        raise ValueError("generate() takes no labels; use forward() to score a transcript.")
    media = {name: kwargs.get(name) for name in ("input_features", "input_features_mask", "pixel_values_videos", "video_mask")}
    check_media(model.config, **media)
    inputs_embeds = kwargs.get("inputs_embeds")
    for name in ("input_features", "pixel_values_videos", "inputs_embeds"):
        values = inputs_embeds if name == "inputs_embeds" else media[name]
        if values is not None and values.is_floating_point():
            check_finite(name, values)
    for name, media_name in (("input_features_mask", "input_features"), ("video_mask", "pixel_values_videos")):
        if media[media_name] is not None and media[name] is not None and media[name].ndim == 2:
            empty = (media[name].sum(-1) == 0).nonzero().flatten().tolist()
            if empty:
                raise ValueError(
                    f"{name} marks no frame of clip(s) {empty}; expected at least one frame per clip (a clip "
                    "without media has nothing to transcribe)."
                )
    prompt_name, prompt = ("input_ids", input_ids) if input_ids is not None else ("inputs_embeds", inputs_embeds)
    if prompt is not None:
        if prompt.shape[0] == 0:
            raise ValueError(f"{prompt_name} is an empty batch (0 rows); expected at least one clip.")
        attention_mask = kwargs.get("attention_mask")
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(prompt.shape[:2]):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; expected {tuple(prompt.shape[:2])}, one "
                f"entry per token of {prompt_name}."
            )
        for name in ("input_features", "pixel_values_videos"):
            if media[name] is not None and media[name].shape[0] != prompt.shape[0]:
                raise ValueError(
                    f"{name} holds {media[name].shape[0]} clip(s) but {prompt_name} has {prompt.shape[0]} row(s); "
                    "expected one row per clip (the processor's output as it is)."
                )
    if input_ids is not None:
        check_input_ids(model.config, input_ids, model.get_input_embeddings().num_embeddings)
    generation_config = kwargs.get("generation_config") or model.generation_config
    for name in ("num_beams", "num_return_sequences"):
        value = kwargs.get(name, getattr(generation_config, name))
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}.")


class FiniteLogitsCheck(LogitsProcessor):
    """Refuses NaN or +inf scores at the first step of `generate` (one host read per call): greedy search would pick a
    token from them and decode an empty or garbage transcript, with no error. The error names the weights that are not
    finite, or else the arithmetic that overflowed. (-inf is left alone: processors set it to forbid tokens.)"""

    def __init__(self, model):
        self.model = model
        self.checked = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.checked:
            self.checked = True
            if (torch.isnan(scores) | torch.isposinf(scores)).any():
                raise self.error()
        return scores

    def error(self) -> ValueError:
        tensors = (*self.model.named_parameters(), *self.model.named_buffers())
        broken = [
            name for name, tensor in tensors
            if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all()
        ]
        if broken:
            listed = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
            cause = f"the weights {listed} hold NaN or infinite values (a corrupt or diverged checkpoint?)"
        else:
            cause = f"the weights are finite, so the {self.model.dtype} arithmetic overflowed (try float32 or bfloat16)"
        return ValueError(
            f"The model's logits are NaN or infinite: {cause}. No transcript is returned; expected a checkpoint with "
            "finite weights."
        )
