"""Mouth cropping for face videos: the optional `crop` extra (`pip install 'omni-avsr[crop]'`).

Not copied into Hub repositories: the Hub-exported files (`media.py`, ...) import it by name, inside the function
that needs it, so a model loads and runs on mouth-crop clips without this extra.
"""

import functools

import numpy as np

from .landmarks import CROP_EXTRA, DlibLandmarkDetector
from .mouth_cropper import MouthCropConfig, MouthCropper, MouthCrops, NoFaceFoundError
from .reference_face import REFERENCE_FACE, REFERENCE_SIZE
from .streaming import StreamingMouthCropper


@functools.cache
def default_cropper() -> MouthCropper:
    """One cropper per process: loading the 68-point predictor (100 MB) takes longer than cropping a clip."""
    return MouthCropper()


def crop_mouths(frames: np.ndarray, source: str = "the video") -> np.ndarray:
    """The 96×96 mouth crops of a face video's frames, with the default cropper (see `MouthCropper`)."""
    return default_cropper()(frames, source=source).frames


__all__ = [
    "CROP_EXTRA",
    "DlibLandmarkDetector",
    "MouthCropConfig",
    "MouthCropper",
    "MouthCrops",
    "NoFaceFoundError",
    "REFERENCE_FACE",
    "REFERENCE_SIZE",
    "StreamingMouthCropper",
    "crop_mouths",
    "default_cropper",
]
