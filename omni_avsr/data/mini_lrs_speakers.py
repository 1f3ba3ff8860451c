"""The speakers of Mini-LRS: an espeak-ng voice and a face (skin, lips, mouth size and place) for each.

Speaker `i` is the same person in every corpus: it depends on its index only, not on the corpus seed, so corpora
generated with different seeds or sizes share their speakers.
"""

from dataclasses import dataclass

import numpy as np

from .mini_lrs_espeak import Voice


# espeak-ng's English accents paired with its standard male (m1-m7) and female (f1-f5) voice variants, so that
# neighbouring speakers differ in both and the first eight cover seven accents, four male and four female voices.
_VOICE_NAMES = (
    "en-us+m3", "en+f2", "en-gb-scotland+m1", "en-us+f4", "en-gb-x-rp+m4", "en-029+f1", "en-us-nyc+m6",
    "en-gb-x-gbclan+f5", "en+m7", "en-us+f3", "en-gb-x-rp+m2", "en-gb-scotland+f4", "en-029+m5", "en+f1",
    "en-us+m1", "en-gb-x-gbcwmd+f2",
)  # fmt: skip
_LIGHT_SKIN = np.array([228.0, 186.0, 160.0])
_DARK_SKIN = np.array([92.0, 60.0, 45.0])


@dataclass(frozen=True)
class Speaker:
    """A voice and a face. Colours are RGB in 0-255; lengths in pixels of the 96×96 mouth crop; `articulation`
    scales how far the speaker opens the mouth (about 0.85 for a mumbler to 1.15 for a clear speaker)."""

    speaker_id: str
    voice: Voice
    skin_colour: tuple[float, float, float]
    lip_colour: tuple[float, float, float]
    mouth_centre: tuple[float, float]
    mouth_half_width: float
    max_opening: float
    upper_lip_thickness: float
    lower_lip_thickness: float
    articulation: float


def make_speaker(index: int) -> Speaker:
    """Speaker `index` (0-based, named `s01`, `s02`, ...); beyond the 16 voice pairings, pairings repeat with
    other speaking rates, pitches and faces."""
    rng = np.random.default_rng([0x4D4C5253, index])  # "MLRS": a stream of its own, apart from corpus seeds
    voice_name = _VOICE_NAMES[index % len(_VOICE_NAMES)]
    is_female = "+f" in voice_name
    voice = Voice(
        name=voice_name,
        rate=int(rng.integers(140, 196)),
        pitch=int(rng.integers(45, 80) if is_female else rng.integers(20, 56)),
        pitch_range=int(rng.integers(35, 80)),
    )
    skin = _LIGHT_SKIN + rng.uniform(0, 1) * (_DARK_SKIN - _LIGHT_SKIN) + rng.uniform(-8, 8, size=3)
    redness = rng.uniform(0.0, 1.0)
    lip = skin * np.array([0.80 + 0.08 * redness, 0.55, 0.58]) + np.array([18.0, 0.0, 4.0]) * redness
    return Speaker(
        speaker_id=f"s{index + 1:02d}",
        voice=voice,
        skin_colour=tuple(np.clip(skin, 0, 255).round(1).tolist()),
        lip_colour=tuple(np.clip(lip, 0, 255).round(1).tolist()),
        mouth_centre=(float(rng.uniform(43.0, 53.0)), float(rng.uniform(50.0, 60.0))),
        mouth_half_width=float(rng.uniform(20.0, 26.0)),
        max_opening=float(rng.uniform(18.0, 25.0)),
        upper_lip_thickness=float(rng.uniform(4.5, 7.0)),
        lower_lip_thickness=float(rng.uniform(6.0, 9.0)),
        articulation=float(rng.uniform(0.85, 1.15)),
    )
