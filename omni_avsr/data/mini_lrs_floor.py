"""The lip-reading floor: the lowest word error rate any lip reader can expect on a Mini-LRS split.

The video shows visemes, not phonemes, so words of one grammar slot with the same viseme sequence ("b" and "p",
both a lip closure then /iː/) look identical. A lip reader that knows the grammar and sees every viseme perfectly
still has to guess among them; since the generator draws the words of a slot uniformly, every guess is right
with probability 1/|group|. The floor is the expected error of that ideal lip reader:

    floor WER = 100 · Σ_words (1 − 1/|G(word)|) / number of words

where G(word) is the set of words of the word's slot (GRID slot, or the whole free-text vocabulary) whose viseme
sequence equals the word's, in the accent of the clip's speaker, taken from espeak-ng's pronunciation of each
word said on its own. All its errors are substitutions. It is a bound under the viseme model: timing cues (a /p/
is a little longer than an /m/) are ignored, and free text is credited with known word boundaries.
"""

from collections import defaultdict

from .mini_lrs_clip import ClipSpec
from .mini_lrs_espeak import EspeakSynthesizer
from .mini_lrs_grammar import slot_vocabulary
from .mini_lrs_visemes import VISEME_SYMBOLS, viseme_sequence


DEFINITION = (
    "Expected WER (%) of a lip reader that knows the grammar and sees every viseme perfectly: each word of a "
    "slot is one of the slot's words with the same viseme sequence (in the speaker's accent, from espeak-ng's "
    "pronunciation of the word said alone), all equally likely, so it is wrong with probability 1 - 1/|group|; "
    "the floor is the sum of these over the split's words divided by their number, times 100."
)


def lip_reading_floor(clips: list[ClipSpec], synthesizer: EspeakSynthesizer) -> dict:
    """The floor of `clips` (one split) as a JSON-ready dict; see the module docstring for the definition."""
    accents = {clip.speaker.speaker_id: _accent(clip.speaker.voice.name) for clip in clips}
    slots_by_accent = defaultdict(set)
    for clip in clips:
        slots_by_accent[accents[clip.speaker.speaker_id]].update(clip.sentence.slots)

    group_sizes, confusable_groups = {}, {}
    for accent, slots in sorted(slots_by_accent.items()):
        confusable_groups[accent] = {}
        for slot in sorted(slots):
            vocabulary = slot_vocabulary(slot)
            groups = defaultdict(list)
            for word, phonemes in zip(vocabulary, synthesizer.phonemize(list(vocabulary), accent)):
                groups[viseme_sequence(phonemes.split())].append(word)
            for group in groups.values():
                for word in group:
                    group_sizes[accent, slot, word] = len(group)
            confusable = sorted(sorted(group) for group in groups.values() if len(group) > 1)
            if confusable:
                confusable_groups[accent][slot] = confusable

    errors, counts = defaultdict(float), defaultdict(int)
    for clip in clips:
        accent = accents[clip.speaker.speaker_id]
        for word, slot in zip(clip.sentence.words, clip.sentence.slots):
            errors[slot] += 1 - 1 / group_sizes[accent, slot, word]
            counts[slot] += 1
    num_words = sum(counts.values())
    expected_errors = sum(errors.values())
    return {
        "wer_percent": round(100 * expected_errors / max(num_words, 1), 4),
        "expected_word_errors": round(expected_errors, 4),
        "num_words": num_words,
        "num_clips": len(clips),
        "per_slot_wer_percent": {slot: round(100 * errors[slot] / counts[slot], 4) for slot in sorted(counts)},
        "confusable_groups": confusable_groups,
        "speaker_accents": dict(sorted(accents.items())),
        "viseme_classes": {viseme: list(symbols) for viseme, symbols in VISEME_SYMBOLS.items()},
        "definition": DEFINITION,
    }


def _accent(voice_name: str) -> str:
    """The language part of an espeak voice name ("en-us+f2" → "en-us"): it alone decides pronunciation."""
    return voice_name.split("+")[0]
