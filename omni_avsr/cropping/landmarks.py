"""Face landmarks per frame: dlib's HOG face detector and its 68-point shape predictor, both offline.

dlib (the `dlib-bin` wheels, Python 3.10–3.14) runs on the CPU next to numpy 2; the predictor's weights come in the
`face_recognition_models` package, so nothing is downloaded at run time. The predictor was trained on the iBUG
300-W faces, whose terms restrict commercial use: projects that need otherwise pass landmarks of their own to
`MouthCropper` (any detector with the 68-point markup) instead.

A landmark detector is any callable that takes one uint8 frame, (height, width) or (height, width, 3) RGB, and
returns the (68, 2) float32 (x, y) pixel landmarks of the largest face in it, or `None` when it finds no face.
"""

import importlib.util
import os

import cv2
import numpy as np

from ..media import CROP_EXTRA


PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def face_recognition_model_path(name: str) -> str:
    """The path of a model file shipped in `face_recognition_models`.

    Found without importing the package: its `__init__` imports `pkg_resources`, which setuptools ≥ 81 no longer
    ships, so the import fails on current Python environments although the files are there.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"The face landmark model (face_recognition_models) is not installed; {CROP_EXTRA}.")
    path = os.path.join(spec.submodule_search_locations[0], "models", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing from the face_recognition_models package; reinstall it.")
    return path


class DlibLandmarkDetector:
    """The 68 landmarks of the largest face a frame shows (dlib's HOG detector + 68-point shape predictor).

    Args:
        upsample: times the detector doubles the frame before searching. The HOG detector finds faces of about
            80×80 pixels and larger; 1 finds faces half that size, at four times the cost.
    """

    def __init__(self, upsample: int = 0):
        try:
            import dlib
        except ImportError as error:
            raise ImportError(f"Face detection needs dlib; {CROP_EXTRA}.") from error
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(face_recognition_model_path(PREDICTOR_FILE))

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else np.ascontiguousarray(frame)
        faces = self._detector(gray, self.upsample)
        if len(faces) == 0:
            return None
        largest = max(faces, key=lambda face: face.area())
        shape = self._predictor(gray, largest)
        return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float32)
