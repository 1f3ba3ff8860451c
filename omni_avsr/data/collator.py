"""Batch dataset rows into Omni-AVSR model inputs."""

from dataclasses import dataclass

from transformers import BatchFeature

from ..media import SAMPLING_RATE
from ..processing_omni_avsr import OmniAVSRProcessor


@dataclass
class OmniAVSRDataCollator:
    """Turn rows of `load_lrs_dataset` (`audio`, `frames`, `text`) into one padded batch through the processor.

    The processor pads audio to Whisper's window with `input_features_mask`, pads videos with `video_mask`, and
    builds `labels` (transcript + EOS, -100 padding); the model derives each task's sequence from them. A modality
    the dataset did not decode (`None` in every row) is left out of the batch.
    """

    processor: OmniAVSRProcessor

    def __call__(self, rows: list[dict]) -> BatchFeature:
        audio = [row["audio"] for row in rows]
        frames = [row["frames"] for row in rows]
        for name, values in (("audio", audio), ("frames", frames)):
            if any(value is None for value in values) and any(value is not None for value in values):
                raise ValueError(f"Some rows of the batch have {name} and others do not; expected all or none.")
        return self.processor(
            audio=audio if audio[0] is not None else None,
            videos=frames if frames[0] is not None else None,
            text=[row["text"] for row in rows],
            sampling_rate=SAMPLING_RATE,
        )
