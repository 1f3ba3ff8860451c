"""Babble noise for Mini-LRS: many voices talking at once, for noise augmentation and noisy evaluation.

The talkers are speakers that the corpus does not contain, so a model cannot learn to ignore the babble by
recognising the voices. Each talks continuously (random sentences, short pauses) from a random point of its
stream, so the mix has no silent stretch and all talkers overlap everywhere.
"""

import numpy as np
import soxr

from .mini_lrs_espeak import EspeakSynthesizer
from .mini_lrs_grammar import GRID_SIZE, free_text_sentence, grid_sentence
from .mini_lrs_speakers import make_speaker


_TARGET_RMS = 0.1  # -20 dBFS


def make_babble(
    synthesizer: EspeakSynthesizer,
    seconds: float,
    num_talkers: int,
    first_speaker_index: int,
    rng: np.random.Generator,
    sample_rate: int = 16000,
) -> np.ndarray:
    """`seconds` of babble (float32 at `sample_rate`) from speakers `first_speaker_index` onwards."""
    if seconds <= 0 or num_talkers < 1:
        raise ValueError(f"Babble needs seconds > 0 and at least one talker, got {seconds} s and {num_talkers}.")
    length = round(seconds * sample_rate)
    mix = np.zeros(length, np.float64)
    for talker in range(num_talkers):
        voice = make_speaker(first_speaker_index + talker).voice
        skip = int(rng.integers(0, 3 * sample_rate))
        pieces, total = [], 0
        while total < skip + length:
            use_grid = rng.random() < 0.5
            sentence = grid_sentence(int(rng.integers(GRID_SIZE))) if use_grid else free_text_sentence(rng)
            utterance = synthesizer.synthesize(sentence.spoken_text, voice, seed=int(rng.integers(2**31 - 1)))
            speech = soxr.resample(utterance.samples.astype(np.float32) / 32768, utterance.sample_rate, sample_rate)
            pause = np.zeros(int(rng.uniform(0.05, 0.4) * sample_rate), np.float32)
            pieces += [speech, pause]
            total += len(speech) + len(pause)
        stream = np.concatenate(pieces)[skip : skip + length]
        mix += stream * 10 ** (rng.uniform(-6, 0) / 20)
    mix *= _TARGET_RMS / np.sqrt(np.mean(np.square(mix)))
    return np.clip(mix, -1, 1).astype(np.float32)
