"""Speech and phoneme timing from espeak-ng, driven through its C API with ctypes.

The library and its voice data come from the PyPI package `espeakng-loader`. espeak-ng reports, through the
synthesis callback, an event at the start of every phoneme (as IPA) with its position in the audio: that timing
is what the mouth in the video follows.
"""

import _ctypes
import contextlib
import ctypes
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass

import numpy as np


# From espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PHONEMES = 0x100  # read `[[...]]` in the text as espeak phoneme mnemonics
_IPA = 0x02  # espeak_TextToPhonemes: answer in IPA
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAMETER_RATE = 1
_PARAMETER_PITCH = 3
_PARAMETER_RANGE = 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_ubyte * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: `name` is a language with an optional variant ("en-us+f2"); `rate` in words per
    minute (80-450), `pitch` and `pitch_range` on espeak's 0-100 scales."""

    name: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50


@dataclass(frozen=True)
class Utterance:
    """Synthesised speech: int16 samples at `sample_rate`, and `(ipa, start_seconds)` for every phoneme in order
    (pauses have an empty or "_" name)."""

    samples: np.ndarray
    sample_rate: int
    phonemes: tuple[tuple[str, float], ...]


def _espeak_paths() -> tuple[str, str]:
    """The espeak-ng shared library and data folder shipped by `espeakng-loader`."""
    try:
        import espeakng_loader
    except ImportError as error:
        raise ImportError(
            "Mini-LRS speaks with espeak-ng, which comes from the PyPI package `espeakng-loader`: "
            "run `pip install espeakng-loader` (or `pip install omni-avsr[demo]`)."
        ) from error
    library, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    if not os.path.isfile(library):
        raise FileNotFoundError(
            f"espeakng-loader is installed but its espeak-ng library is missing at {library}; "
            "reinstall it with `pip install --force-reinstall espeakng-loader`."
        )
    return library, data


class EspeakSynthesizer:
    """Speaks text with espeak-ng; the same text and voice always give the same samples.

    espeak-ng keeps synthesis state in C statics that no API call resets (pitch-flutter phase, filter memories,
    a random generator seeded from the clock), so a second synthesis of the same text in one process differs.
    Each utterance therefore runs in a fresh instance of the library: a private copy, so that no other user of
    espeak-ng in the process keeps it loaded, is loaded, used and unloaded again (about 5 ms). Processes may
    share a copy: each loads its own instance.
    """

    def __init__(self, library_path: str | None = None):
        """`library_path`: the private copy of another synthesizer (`.library_path`, e.g. of the parent process) to
        use instead of making one; that synthesizer must outlive this one, as it deletes the copy."""
        library, data = _espeak_paths()
        self._data_path = data.encode()
        if library_path is None:
            private_dir = tempfile.mkdtemp(prefix="mini_lrs_espeak_")
            self._finalizer = weakref.finalize(self, shutil.rmtree, private_dir, ignore_errors=True)
            library_path = os.path.join(private_dir, os.path.basename(library))
            shutil.copyfile(library, library_path)
        self.library_path = library_path
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[tuple[str, float]] = []
        self._callback = _SynthCallback(self._on_synth)

    def _on_synth(self, wave, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wave, shape=(num_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                # The IPA name fills up to 8 bytes and is NUL-terminated only when shorter.
                name = bytes(event.id.string).split(b"\0")[0].decode("utf-8", errors="ignore")
                self._phonemes.append((name, event.audio_position / 1000))
            index += 1
        return 0

    def synthesize(self, text: str, voice: Voice, seed: int = 0) -> Utterance:
        """Say `text` (UTF-8; `[[...]]` holds espeak phoneme mnemonics) in `voice`; `seed` drives the noise
        sources of breathy voices."""
        with self._fresh_instance(voice.name, seed) as (library, sample_rate):
            for parameter, value in (
                (_PARAMETER_RATE, voice.rate),
                (_PARAMETER_PITCH, voice.pitch),
                (_PARAMETER_RANGE, voice.pitch_range),
            ):
                library.espeak_SetParameter(parameter, value, 0)
            library.espeak_SetSynthCallback.argtypes = [_SynthCallback]
            library.espeak_SetSynthCallback(self._callback)
            library.espeak_Synth.argtypes = [
                ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
            ]  # fmt: skip
            self._chunks, self._phonemes = [], []
            encoded = text.encode("utf-8")
            flags = _CHARS_UTF8 | _PHONEMES
            status = library.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
            if status != 0:
                raise RuntimeError(f"espeak-ng failed (status {status}) to say {text!r} with voice {voice.name!r}.")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return Utterance(samples, sample_rate, tuple(self._phonemes))

    def phonemize(self, words: list[str], voice_name: str) -> list[str]:
        """The IPA espeak-ng gives each word said on its own (stress marks included) in the language of
        `voice_name`; the variant does not change pronunciation."""
        with self._fresh_instance(voice_name, seed=0) as (library, _):
            library.espeak_TextToPhonemes.restype = ctypes.c_char_p
            library.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
            phonemes = []
            for word in words:
                text = ctypes.create_string_buffer(word.encode("utf-8"))
                position = ctypes.c_void_p(ctypes.addressof(text))
                parts = []
                while position.value:  # espeak advances `position` clause by clause, to NULL at the end
                    parts.append(library.espeak_TextToPhonemes(ctypes.byref(position), _CHARS_UTF8, _IPA).decode())
                phonemes.append(" ".join(parts))
        return phonemes

    @contextlib.contextmanager
    def _fresh_instance(self, voice_name: str, seed: int):
        """A newly loaded, initialised library speaking `voice_name`, with its sample rate; unloaded afterwards."""
        library = ctypes.CDLL(self.library_path, mode=ctypes.RTLD_LOCAL)
        try:
            library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
            sample_rate = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_path, options)
            if sample_rate <= 0:
                raise RuntimeError(
                    f"espeak-ng could not load its data from {self._data_path.decode()}; "
                    "reinstall it with `pip install --force-reinstall espeakng-loader`."
                )
            try:
                library.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
                library.espeak_ng_SetRandSeed(seed)
                library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
                if library.espeak_SetVoiceByName(voice_name.encode()) != 0:
                    raise ValueError(
                        f"espeak-ng has no voice {voice_name!r}; expected a language such as 'en-us', optionally "
                        "with '+variant' where the variant is a file of espeak-ng-data/voices/!v (e.g. 'en-us+f2')."
                    )
                yield library, sample_rate
            finally:
                library.espeak_Terminate()
        finally:
            _unload(library)


def _unload(library: ctypes.CDLL) -> None:
    """Unload a library so that its next load starts from fresh statics (ctypes has no public unload)."""
    unload = _ctypes.FreeLibrary if os.name == "nt" else _ctypes.dlclose
    unload(library._handle)
