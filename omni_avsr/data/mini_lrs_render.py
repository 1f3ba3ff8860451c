"""Drawing the 96×96 mouth region of a speaker, one frame per mouth shape, and writing it as an H.264 mp4.

The face is a flat patch of skin, lit from above, with a nose shadow at the top and the chin crease below the
lower lip; the mouth is two lips around an aperture that shows the dark mouth cavity, the tongue and the teeth.
All frames of a clip are drawn at once with array arithmetic. The head drifts, tilts and changes scale a little,
the light flickers and the sensor adds noise, so that a lip reader must learn shapes, not pixel positions.
"""

import av
import numpy as np

from ..media import VIDEO_FPS
from .mini_lrs_speakers import Speaker
from .mini_lrs_visemes import MOUTH_PARAMETERS


FRAME_SIZE = 96
FPS = round(VIDEO_FPS)  # the rate the model reads, whole for the MP4 encoder
_TEETH_COLOUR = np.array([226.0, 221.0, 204.0], np.float32)
_CAVITY_COLOUR = np.array([38.0, 12.0, 16.0], np.float32)
_TONGUE_COLOUR = np.array([176.0, 84.0, 90.0], np.float32)
_SHADOW_COLOUR = np.zeros(3, np.float32)
_NOISE_SPAN = np.float32(3.0 * np.sqrt(12))  # uniform noise over this span has a standard deviation of 3


def render_mouth_frames(trajectory: np.ndarray, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """RGB frames (len(trajectory), 96, 96, 3) uint8 for mouth shapes `trajectory` (frames × MOUTH_PARAMETERS)."""
    num_frames = len(trajectory)
    pose = _head_motion(num_frames, rng)
    grid = np.arange(FRAME_SIZE, dtype=np.float32)
    # Light falls from above, on a face that moves with the head; the nose casts a shadow at the top.
    face_x = grid[None, None, :] - pose["dx"] - FRAME_SIZE / 2
    face_y = grid[None, :, None] - pose["dy"]
    face_light = 1.06 - 0.0022 * face_y - 0.16 * np.exp(-np.square((face_y - 2) / 7)) - 0.00004 * np.square(face_x)

    # The mouth and the chin crease below it stay inside this box in every frame; only it is drawn in detail.
    centre_x, centre_y = speaker.mouth_centre
    reach_x = 1.2 * speaker.mouth_half_width + 8
    reach_up = 0.6 * speaker.max_opening + 1.6 * speaker.upper_lip_thickness + 7
    reach_down = 0.75 * speaker.max_opening + 1.7 * speaker.lower_lip_thickness + 18
    columns = slice(max(0, int(centre_x - reach_x)), min(FRAME_SIZE, int(centre_x + reach_x) + 1))
    rows = slice(max(0, int(centre_y - reach_up)), min(FRAME_SIZE, int(centre_y + reach_down) + 1))
    layers = _mouth_layers(trajectory, speaker, pose, grid[columns], grid[rows])
    skin = np.asarray(speaker.skin_colour, np.float32)
    layers.append((np.float32(1), face_light[:, rows, columns], skin))

    # Composite front to back: a layer shows where no layer in front of it covers the pixel.
    remaining = np.float32(1)
    weights = []
    for coverage, shade, _ in layers:
        weights.append(np.broadcast_to(coverage * remaining * shade, layers[0][0].shape))
        remaining = remaining * (1 - coverage)
    colours = np.stack([colour for _, _, colour in layers])
    # Channels first while drawing, so that every operation runs over long contiguous rows.
    image = skin[:, None, None, None] * face_light
    image[:, :, rows, columns] = np.einsum("lc,lthw->cthw", colours, np.stack(weights))  # no BLAS threads
    image *= pose["brightness"]
    # Sensor noise, uniform (a quarter of the cost of Gaussian noise), plus the 0.5 that makes the conversion to
    # integers below round to nearest.
    noise = rng.random((num_frames, FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    image += _NOISE_SPAN * noise + (0.5 - _NOISE_SPAN / 2)
    np.clip(image, 0, 255, out=image)
    return np.moveaxis(image, 0, -1).astype(np.uint8)


def _mouth_layers(
    trajectory: np.ndarray, speaker: Speaker, pose: dict[str, np.ndarray], columns: np.ndarray, rows: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray | float, np.ndarray]]:
    """`(coverage, shade, colour)` of each part of the mouth, front to back, on the pixel grid `rows` × `columns`;
    the part shows `shade · colour` where it covers a pixel."""
    shape = dict(zip(MOUTH_PARAMETERS, trajectory.astype(np.float32).T[:, :, None, None]))
    x = columns[None, None, :] - (speaker.mouth_centre[0] + pose["dx"])
    y = rows[None, :, None] - (speaker.mouth_centre[1] + pose["dy"])
    # Head tilt as a vertical shear: for a few degrees it looks like a rotation, and it keeps every outline a
    # function of the column alone, computed once per column (frames, 1, columns) rather than once per pixel.
    u = x / pose["scale"]  # across the mouth
    v = (y - pose["tilt"] * x) / pose["scale"]  # down the face

    rounding = shape["rounding"]
    half_width = speaker.mouth_half_width * shape["width"] * (1 - 0.22 * rounding)
    half_opening = 0.5 * speaker.max_opening * np.clip(shape["opening"] * speaker.articulation, 0, 1.1)
    exponent = 2.0 + 1.6 * (1 - rounding)  # rounded lips make an ellipse, spread lips a flatter rectangle
    across = np.abs(u) / half_width
    across_inner = across / 0.86
    profile = _superellipse(across, exponent)
    inner_profile = _superellipse(across_inner, exponent)
    taper = np.sqrt(profile)  # lips thin towards the corners
    upper_thickness = speaker.upper_lip_thickness * (1 + 0.35 * rounding) * (1 - 0.35 * shape["lip_press"])
    lower_thickness = speaker.lower_lip_thickness * (1 + 0.3 * rounding) * (1 - 0.3 * shape["lip_press"])
    lower_thickness = lower_thickness * (1 + 0.25 * shape["lip_tuck"])
    # Cupid's bow: the upper lip rises either side of the middle and dips in it.
    bow = 0.15 * np.exp(-np.square((across - 0.3) / 0.15)) - 0.2 * np.exp(-np.square(across / 0.1))

    aperture_top = -half_opening * inner_profile
    aperture_bottom = half_opening * inner_profile - shape["lip_tuck"]
    lips_top = aperture_top - upper_thickness * taper * (1 + bow)
    lips_bottom = aperture_bottom + shape["lip_tuck"] + lower_thickness * taper
    lips = _coverage(v - lips_top) * _coverage(lips_bottom - v) * _coverage((1 - across) * half_width)
    # A closed mouth still shows the seam between the lips, fainter when they are pressed together.
    seam = 0.6 * (1 - 0.5 * shape["lip_press"])
    aperture = _coverage(np.minimum(v - aperture_top, aperture_bottom - v) + seam)
    aperture *= _coverage((1 - across_inner) * half_width * 0.86)
    depth = np.clip(half_opening / 2.5, 0, 1)  # a narrow slit looks like shadowed lip, not like the cavity

    front = _coverage((0.7 - across_inner) * half_width)
    gaps = np.square(np.square(np.square(np.cos(np.float32(np.pi / 1.8) * u))))
    gaps = 1 - 0.22 * gaps  # the dark lines between the teeth
    upper_teeth = _coverage(aperture_top + 3.6 * shape["upper_teeth"] - v) * front
    upper_teeth *= np.clip(5 * shape["upper_teeth"], 0, 1)
    lower_teeth = _coverage(v - (aperture_bottom - 2.6 * shape["lower_teeth"])) * front
    lower_teeth *= np.clip(5 * shape["lower_teeth"], 0, 1)
    tongue_height = 0.7 * half_opening * inner_profile * np.sqrt(np.clip(1 - np.square(across_inner / 0.85), 0, 1))
    tongue_body = _coverage(v - (aperture_bottom - tongue_height)) * depth
    tongue_tip = np.square(u / (0.3 * half_width)) + np.square(v / (0.5 * half_opening + 1.2))
    tongue_tip = _coverage(1 - np.sqrt(tongue_tip)) * shape["tongue"]

    lip_colour = np.asarray(speaker.lip_colour, np.float32)
    lower_lip_highlight = np.exp(
        -np.square((v - aperture_bottom - 0.45 * lower_thickness) / (0.35 * lower_thickness + 0.5))
    )
    lip_shade = np.where(v < aperture_top, np.float32(0.86), np.float32(1.0)) + 0.12 * lower_lip_highlight
    chin_crease = np.exp(-np.square((v - lips_bottom - 6 - 0.3 * half_opening) / 2.5))
    chin_crease *= np.exp(-np.square(np.square(u / 20)))
    return [
        (tongue_tip * aperture, 1.0, _TONGUE_COLOUR),
        (upper_teeth * aperture, gaps, _TEETH_COLOUR),
        (lower_teeth * aperture, 0.78 * gaps, _TEETH_COLOUR),  # in the shadow of the upper lip
        (tongue_body * aperture, 0.85, _TONGUE_COLOUR),
        (aperture * depth, 1.0, _CAVITY_COLOUR),
        (aperture, 0.45, lip_colour),  # the rest of a slit: the shadowed inner side of the lips
        (lips, lip_shade, lip_colour),
        (0.1 * chin_crease, 1.0, _SHADOW_COLOUR),
    ]


def write_mp4(path, frames: np.ndarray, fps: int = FPS) -> None:
    """Encode RGB frames as H.264 (yuv420p) in an mp4: x264's fastest preset with its deblocking filter back on,
    which at these 96×96 frames is as faithful as slower presets at under half their time.

    The same frames give the same bytes: x264 runs one thread and without macroblock-tree rate control, whose
    decisions were seen to change with the process's memory layout (e.g. after espeak-ng was loaded).
    """
    options = {"crf": "23", "preset": "ultrafast", "threads": "1", "x264-params": "deblock=0,0:mbtree=0"}
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def _head_motion(num_frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame head pose and light: a fixed offset per clip plus slow drift (smoothed noise), each (frames,1,1)."""
    kernel = np.exp(-0.5 * np.square(np.arange(-9, 10) / 3.0))
    kernel /= np.sqrt(np.sum(np.square(kernel)))  # unit gain for white noise, so `spread` is the drift's std

    def drift(offset: float, spread: float) -> np.ndarray:
        noise = rng.standard_normal(num_frames + len(kernel) - 1)
        return (offset + spread * np.convolve(noise, kernel, mode="valid")).astype(np.float32)[:, None, None]

    return {
        "dx": drift(rng.normal(0, 1.5), 0.6),
        "dy": drift(rng.normal(0, 1.5), 0.6),
        "tilt": drift(rng.normal(0, 0.035), 0.012),
        "scale": drift(1 + rng.normal(0, 0.03), 0.008),
        "brightness": drift(1 + rng.normal(0, 0.05), 0.012),
    }


def _superellipse(across: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Height of the unit superellipse |a|^p + |b|^p = 1 at |a| = `across` (0 outside)."""
    return np.clip(1 - np.clip(across, 0, 1) ** exponent, 0, 1) ** (1 / exponent)


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """How much of a pixel lies inside an edge, from its distance to it (px, positive inside): antialiasing."""
    return np.clip(signed_distance + 0.5, 0, 1)
