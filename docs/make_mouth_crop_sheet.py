"""Draw docs/images/mouth_crops_lrs3_test_clip.png: every 8th frame of a face video, with the square each crop is
cut from drawn on the face, above its 96×96 crop (a green cross marks the crop's centre).

    python docs/make_mouth_crop_sheet.py [FACE_VIDEO] [OUT.png]      # default: the shared LRS3 test clip
"""

import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from omni_avsr import load_clip
from omni_avsr.cropping import MouthCropper


TILE = 112
DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "lrs3_test_clip.mp4"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "images" / "mouth_crops_lrs3_test_clip.png"


def tile(frame: np.ndarray, crop: np.ndarray, transform: np.ndarray, index: int) -> np.ndarray:
    size = crop.shape[0]
    to_frame = cv2.invertAffineTransform(transform.astype(np.float64))
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], float) @ to_frame[:, :2].T + to_frame[:, 2]
    face = cv2.polylines(frame.copy(), [corners.round().astype(np.int32)], True, (255, 255, 0), 2)
    face = cv2.resize(face, (TILE, TILE), interpolation=cv2.INTER_AREA)
    crop = cv2.resize(crop, (TILE, TILE), interpolation=cv2.INTER_LINEAR)
    centre = TILE // 2
    cv2.line(crop, (centre, centre - 6), (centre, centre + 6), (0, 255, 0), 1)
    cv2.line(crop, (centre - 6, centre), (centre + 6, centre), (0, 255, 0), 1)
    label = np.full((14, TILE, 3), 255, np.uint8)
    cv2.putText(label, f"frame {index}", (4, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([label, face, crop])


def main():
    video = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_VIDEO
    output = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_OUTPUT
    frames = load_clip(video, audio=False, grayscale=False, crop_mouth=False).frames
    crops = MouthCropper()(frames, source=str(video))
    tiles = [tile(frames[i], crops.frames[i], crops.transforms[i], i) for i in range(0, len(frames), 8)[:20]]
    rows = [np.concatenate(tiles[start : start + 10], axis=1) for start in range(0, len(tiles), 10)]
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    sheet = np.concatenate([part for row in rows for part in (row, gap)][:-1])
    Image.fromarray(sheet).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)


if __name__ == "__main__":
    main()
