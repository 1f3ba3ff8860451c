"""From espeak-ng's IPA phonemes to visemes, and from timed visemes to a co-articulated mouth shape per video frame.

A viseme is a class of speech sounds that look the same on the lips (/p b m/ all close them). The mouth drawn for
a phoneme depends only on its viseme, so two words with the same viseme sequence are indistinguishable in the
video by construction; `mini_lrs_floor` counts those words. Diphthongs are two visemes in turn; /h/ and the
glottal stop are invisible (the lips keep the neighbouring shapes).
"""

import unicodedata

import numpy as np


REST = "rest"
VISEME_SYMBOLS = {
    "bilabial": "pbm",
    "labiodental": "fvɱ",
    "dental": "θð",
    "alveolar": "tdnlszɾɫɬ",
    "postalveolar": "ʃʒʧʤ",
    "velar": "kɡgŋxɣ",
    "rhotic": "ɹrɻɚɝʁ",
    "open": "aæɑɐʌɒɶ",
    "mid_front": "eɛ",
    "close_front": "iɪjᵻyɨʏ",
    "mid_central": "əɜɵɘ",
    "mid_back_rounded": "oɔøœ",
    "close_back_rounded": "uʊʉɯwʍ",
}
INVISIBLE_SYMBOLS = "hɦʔ"
_SYMBOL_TO_VISEME = {symbol: viseme for viseme, symbols in VISEME_SYMBOLS.items() for symbol in symbols}
# Stress, length and tie marks carry no lip shape.
_IGNORED_SYMBOLS = set("ˈˌːˑ:‿͡-_ ")
# The lips are closed (or nearly) before these sounds release; espeak reports the release, so the closure seen
# as silence just before it is given to the stop.
_STOP_SYMBOLS = set("pbtdkɡgʧʤ")

MOUTH_PARAMETERS = ("opening", "width", "rounding", "upper_teeth", "lower_teeth", "tongue", "lip_tuck", "lip_press")
# Target mouth shape of each viseme, in MOUTH_PARAMETERS order: opening (0 closed, 1 widest), width (1 neutral),
# rounding/protrusion, visibility of the upper and lower teeth and of the tongue tip, the lower lip tucked under
# the upper teeth (/f v/), the lips pressed together (/p b m/).
VISEME_TARGETS = {
    REST: (0.02, 1.00, 0.10, 0.0, 0.0, 0.0, 0.0, 0.0),
    "bilabial": (0.00, 0.97, 0.10, 0.0, 0.0, 0.0, 0.0, 1.0),
    "labiodental": (0.14, 1.00, 0.00, 1.0, 0.0, 0.0, 1.0, 0.0),
    "dental": (0.30, 1.03, 0.00, 0.9, 0.6, 1.0, 0.0, 0.0),
    "alveolar": (0.24, 1.06, 0.00, 0.8, 0.6, 0.0, 0.0, 0.0),
    "postalveolar": (0.28, 0.80, 0.80, 0.8, 0.7, 0.0, 0.0, 0.0),
    "velar": (0.42, 1.00, 0.10, 0.5, 0.3, 0.0, 0.0, 0.0),
    "rhotic": (0.30, 0.88, 0.55, 0.5, 0.2, 0.0, 0.0, 0.0),
    "open": (1.00, 1.02, 0.10, 0.5, 0.3, 0.0, 0.0, 0.0),
    "mid_front": (0.60, 1.10, 0.00, 0.6, 0.4, 0.0, 0.0, 0.0),
    "close_front": (0.26, 1.16, 0.00, 0.8, 0.6, 0.0, 0.0, 0.0),
    "mid_central": (0.45, 1.00, 0.15, 0.4, 0.2, 0.0, 0.0, 0.0),
    "mid_back_rounded": (0.62, 0.80, 0.75, 0.2, 0.1, 0.0, 0.0, 0.0),
    "close_back_rounded": (0.18, 0.66, 1.00, 0.0, 0.0, 0.0, 0.0, 0.0),
}
# Co-articulation (after Cohen & Massaro): each viseme pulls the mouth towards its target with full `dominance`
# while it lasts and with dominance·exp(-(distance/reach)²) before and after. Closures that must be seen
# (/p b m/, /f v/) dominate their neighbours; tongue-only sounds (/k g/) yield to them.
_DOMINANCE_AND_REACH = {
    REST: (2.0, 0.040),
    "bilabial": (20.0, 0.018),
    "labiodental": (12.0, 0.020),
    "dental": (6.0, 0.020),
    "alveolar": (2.0, 0.025),
    "postalveolar": (6.0, 0.030),
    "velar": (1.0, 0.025),
    "rhotic": (3.0, 0.030),
    "open": (2.0, 0.040),
    "mid_front": (2.0, 0.040),
    "close_front": (2.0, 0.040),
    "mid_central": (2.0, 0.040),
    "mid_back_rounded": (2.0, 0.040),
    "close_back_rounded": (4.0, 0.040),
}
_TIME_STEP = 0.005
_MAX_CLOSURE = 0.08


def phoneme_visemes(ipa: str) -> list[str]:
    """The visemes of one espeak phoneme, in order ("ˈaɪ" → open, close_front); none for /h/ and "ʔ", `[REST]`
    for a pause. Symbols outside the table (rare in English) count as a neutral vowel, `mid_central`."""
    visemes = []
    for symbol in unicodedata.normalize("NFD", ipa):
        if symbol in _IGNORED_SYMBOLS or symbol in INVISIBLE_SYMBOLS or unicodedata.combining(symbol):
            continue
        visemes.append(_SYMBOL_TO_VISEME.get(symbol, "mid_central"))
    if not visemes and not any(symbol in INVISIBLE_SYMBOLS for symbol in ipa):
        visemes.append(REST)
    return visemes


def viseme_sequence(phonemes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """What a perfect lip reader sees of a word: its visemes without pauses, repeats merged (the lips cannot show
    that /t/ and /n/ in "tn" are two sounds)."""
    sequence = []
    for phoneme in phonemes:
        for viseme in phoneme_visemes(phoneme):
            if viseme != REST and (not sequence or sequence[-1] != viseme):
                sequence.append(viseme)
    return tuple(sequence)


def mouth_trajectory(
    phonemes: tuple[tuple[str, float], ...], audio: np.ndarray, sample_rate: int, fps: int = 25
) -> np.ndarray:
    """The mouth shape in each video frame: (len(audio)·fps/sample_rate frames, len(MOUTH_PARAMETERS)).

    `phonemes` are `(ipa, start_seconds)` on the clip's time axis; `audio` is the clip's waveform, used to find
    the silent closure before each stop. The shape is computed every 5 ms and averaged over each frame's 40 ms,
    as a camera integrates over its exposure, so frame i shows exactly the audio samples it is paired with.
    """
    duration = len(audio) / sample_rate
    num_frames = round(duration * fps)
    steps_per_frame = round(1 / (fps * _TIME_STEP))
    times = (np.arange(num_frames * steps_per_frame) + 0.5) * _TIME_STEP
    segments = _viseme_segments(phonemes, _silent_steps(audio, sample_rate), duration)

    starts = np.array([start for start, _, _ in segments])[:, None]
    ends = np.array([end for _, end, _ in segments])[:, None]
    dominance, reach = np.array([_DOMINANCE_AND_REACH[viseme] for _, _, viseme in segments]).T
    targets = np.array([VISEME_TARGETS[viseme] for _, _, viseme in segments])
    distance = np.maximum(np.maximum(starts - times, times - ends), 0.0)
    weights = dominance[:, None] * np.exp(-np.square(distance / reach[:, None])) + 1e-9
    shape = (weights.T @ targets) / weights.sum(axis=0)[:, None]
    return shape.reshape(num_frames, steps_per_frame, -1).mean(axis=1)


def _silent_steps(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Whether each 5 ms step of `audio` is quiet (below a tenth of the loud end of the utterance's level)."""
    step = round(sample_rate * _TIME_STEP)
    frames = audio[: len(audio) // step * step].reshape(-1, step).astype(np.float64)
    level = np.sqrt(np.mean(np.square(frames), axis=1))
    return level < 0.1 * np.percentile(level, 95)


def _viseme_segments(
    phonemes: tuple[tuple[str, float], ...], silent: np.ndarray, duration: float
) -> list[tuple[float, float, str]]:
    """`(start, end, viseme)` covering the clip: rest around the speech, each phoneme's span shared among its
    visemes, and each stop starting where the silence of its closure starts (at most 80 ms earlier)."""
    starts = [time for _, time in phonemes]
    for index, (name, time) in enumerate(phonemes):
        if index and set(name) & _STOP_SYMBOLS and not set(phonemes[index - 1][0]) & _STOP_SYMBOLS:
            step = int(time / _TIME_STEP)
            earliest = max(starts[index - 1] + 2 * _TIME_STEP, time - _MAX_CLOSURE)
            while step > 0 and silent[min(step - 1, len(silent) - 1)] and (step - 1) * _TIME_STEP >= earliest:
                step -= 1
            starts[index] = min(time, step * _TIME_STEP)
    ends = starts[1:] + [duration]
    segments = [(0.0, starts[0] if starts else duration, REST)]
    for (name, _), start, end in zip(phonemes, starts, ends):
        visemes = phoneme_visemes(name)
        bounds = np.linspace(start, end, len(visemes) + 1)
        segments += [(bounds[i], bounds[i + 1], viseme) for i, viseme in enumerate(visemes)]
    return segments
