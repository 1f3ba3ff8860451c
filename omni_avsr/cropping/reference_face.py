"""The reference face the mouth crops are aligned to: 68 landmarks in a 256×256 frame.

What the coordinates are: `MEAN_SHAPE` is the mean 68-point face (iBUG 300-W markup: jaw 0–16, brows 17–26, nose
27–35, eyes 36–47, mouth 48–67) in the units of the face detector's box, (0, 0) its top-left corner and (1, 1) its
bottom-right. Where they come from: dlib's 68-point shape predictor (`shape_predictor_68_face_landmarks.dat`, shipped
by the `face_recognition_models` package) starts its regression cascade from the mean shape of its training faces,
and stores it at the head of the model file; `read_dlib_mean_shape` reads it back (rounded here to 4 decimals,
0.01 px at the scale below). It is left-right symmetric because dlib trains on mirrored faces too.

`REFERENCE_FACE` places that shape in the 256×256 frame: the detector box becomes a `FACE_BOX_SIZE`-pixel square
centred in the frame. The size is the one calibrated number: the published Omni-AVSR / auto-avsr models were
trained on crops aligned to auto-avsr's own mean face (not redistributable, in no package), whose stable points
(the ones the alignment fits, `STABLE_POINTS`) lie at an RMS distance of 35.5 px from their centroid. `FACE_BOX_SIZE`
gives ours the same spread, so a face is scaled as it was for those models. Its mouth centre then lies at
(128.0, 164.9), the nose tip at (128.0, 146.3) and the chin at (128.0, 205.9): a 96×96 crop around the mouth spans
from just above the nose tip to just below the chin.
"""

import numpy as np


REFERENCE_SIZE = 256
STABLE_POINTS = (28, 33, 36, 39, 42, 45, 48, 54)  # nose ridge and tip, eye corners, mouth corners: rigid enough to fit
MOUTH_POINTS = slice(48, 68)
STABLE_POINTS_RMS_RADIUS = 35.5  # px, measured on auto-avsr's reference face (see the module docstring)

MEAN_SHAPE = np.array(
    [
        (0.0294, 0.3219), (0.0326, 0.4464), (0.0459, 0.5704), (0.0718, 0.6920),
        (0.1203, 0.8050), (0.1947, 0.9029), (0.2858, 0.9846), (0.3863, 1.0502),
        (0.5000, 1.0697), (0.6137, 1.0502), (0.7142, 0.9846), (0.8053, 0.9029),
        (0.8797, 0.8050), (0.9282, 0.6920), (0.9541, 0.5704), (0.9674, 0.4464),
        (0.9706, 0.3219), (0.1192, 0.2309), (0.1775, 0.1784), (0.2598, 0.1627),
        (0.3451, 0.1749), (0.4249, 0.2081), (0.5751, 0.2081), (0.6550, 0.1749),
        (0.7402, 0.1627), (0.8225, 0.1784), (0.8809, 0.2309), (0.5000, 0.3055),
        (0.5000, 0.3857), (0.5000, 0.4652), (0.5000, 0.5470), (0.4045, 0.6023),
        (0.4504, 0.6192), (0.5000, 0.6337), (0.5497, 0.6192), (0.5955, 0.6023),
        (0.2139, 0.3156), (0.2647, 0.2863), (0.3259, 0.2872), (0.3794, 0.3276),
        (0.3221, 0.3378), (0.2612, 0.3370), (0.6207, 0.3276), (0.6742, 0.2872),
        (0.7353, 0.2863), (0.7862, 0.3156), (0.7388, 0.3370), (0.6780, 0.3378),
        (0.3171, 0.7511), (0.3844, 0.7242), (0.4525, 0.7103), (0.5000, 0.7220),
        (0.5475, 0.7103), (0.6156, 0.7242), (0.6829, 0.7511), (0.6178, 0.8169),
        (0.5516, 0.8460), (0.5000, 0.8515), (0.4484, 0.8460), (0.3823, 0.8169),
        (0.3452, 0.7547), (0.4519, 0.7499), (0.5000, 0.7550), (0.5481, 0.7499),
        (0.6548, 0.7547), (0.5490, 0.7857), (0.5000, 0.7916), (0.4510, 0.7857),
    ],
    dtype=np.float64,
)


def _stable_points_rms_radius(shape: np.ndarray) -> float:
    points = shape[list(STABLE_POINTS)]
    return float(np.sqrt(np.mean(np.sum(np.square(points - points.mean(axis=0)), axis=1))))


FACE_BOX_SIZE = STABLE_POINTS_RMS_RADIUS / _stable_points_rms_radius(MEAN_SHAPE)  # ≈ 136.7 px
REFERENCE_FACE = ((MEAN_SHAPE - 0.5) * FACE_BOX_SIZE + REFERENCE_SIZE / 2).astype(np.float32)


def read_dlib_mean_shape(model_path: str) -> np.ndarray:
    """The (68, 2) mean shape stored in a dlib shape-predictor file, in face-box units.

    Hand-written because dlib's Python API does not expose it. The file starts with dlib's serialisation of the
    predictor: a version number, then the initial shape as a column matrix (its dimensions stored negated) of
    (x, y) pairs, each float as an integer mantissa and a power-of-two exponent. dlib writes every integer as one
    byte (bit 7: sign, bits 0–3: byte count) followed by that many little-endian bytes.
    """
    with open(model_path, "rb") as file:
        data = file.read(8192)
    position = 0

    def read_int() -> int:
        nonlocal position
        header, position = data[position], position + 1
        size = header & 0x0F
        value = int.from_bytes(data[position : position + size], "little")
        position += size
        return -value if header & 0x80 else value

    version, rows, columns = read_int(), -read_int(), -read_int()
    if version != 1 or columns != 1 or rows % 2:
        raise ValueError(
            f"{model_path} is not a dlib shape predictor of the known format (version {version}, a {rows}×{columns} "
            "initial shape)."
        )
    values = [read_int() * 2.0 ** read_int() for _ in range(rows)]
    return np.array(values).reshape(-1, 2)
