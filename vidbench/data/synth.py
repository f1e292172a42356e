"""`vidbench synth`: small synthetic datasets written in the exact layout of their real counterparts.

* sthv1, sthv2, jester: the class is the temporal dynamics (move left/right, up/down, grow/shrink,
  rotate cw/ccw, fade in/out, brighten/darken, two objects approaching/separating); appearance is
  random. Every class has its time-reversed partner, rendered as the reversed frame sequence of a clip
  drawn from the same distribution, so the set of frames of a class and of its partner have exactly
  the same distribution: an order-blind model (TSN) cannot separate them (about 50% on each pair),
  an order-aware one (TSM, LSTM) can. Each frame shows its state (position, size, bar angle, opacity,
  brightness) clearly.
* minikinetics: a Kinetics-400 layout whose class is the appearance (background texture x object
  shape x colour palette); motion is random and independent of the class. A few extra classes and
  videos lie outside the Mini-Kinetics subset lists, so the subset filter is exercised.

Deterministic: the same arguments give byte-identical files. The dataset is generated into a temporary
folder beside ROOT, which is then renamed to ROOT; `ROOT/.complete` (written last) is the contract.
"""
from __future__ import annotations

import colorsys
import json
import os
import shutil
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidbench.data import layouts
from vidbench.errors import InputError

FORMATS = ("sthv1", "sthv2", "jester", "minikinetics")
VERSION = 1
FPS = 12
MIN_LEN, MAX_LEN = 12, 24
HEIGHTS = tuple(range(32, 49, 2))
WIDTHS = tuple(range(40, 65, 2))
JPEG_QUALITY = 90
NOISE_BANK = 8
NOISE_STD = 5.0


# ==================================================================================================
# Drawing primitives
# ==================================================================================================
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Linear interpolation matrix (n_out x n_in) mapping a coarse grid onto n_out samples."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.floor(pos).astype(int).clip(0, n_in - 1)
    hi = (lo + 1).clip(0, n_in - 1)
    w = pos - lo
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1 - w
    m[np.arange(n_out), hi] += w
    return m


def _smooth_noise(rng: np.random.Generator, h: int, w: int, grid=(4, 5), channels=3) -> np.ndarray:
    """Low-frequency noise in [0, 1], shape (h, w, channels)."""
    coarse = rng.random((grid[0], grid[1], channels)).astype(np.float32)
    mh, mw = _interp_matrix(h, grid[0]), _interp_matrix(w, grid[1])
    return np.einsum("hi,ijc,wj->hwc", mh, coarse, mw)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1)), np.float32) * 255


def _random_bright_colour(rng) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.85, 1.0))


def _random_background(rng, h: int, w: int) -> np.ndarray:
    """Random dim textured background (float32 HxWx3, values ~ 15..130): low contrast to the objects."""
    base = _hsv(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.45))
    low = _smooth_noise(rng, h, w, grid=(int(rng.integers(2, 6)), int(rng.integers(2, 7))))
    fine = rng.random((h, w, 1)).astype(np.float32)
    bg = base * (0.55 + 0.6 * low) + 18 * (fine - 0.5)
    return bg.clip(0, 255)


def _mask(shape: str, yy, xx, cy: float, cx: float, r: float, angle: float = 0.0, aspect: float = 0.28):
    """Boolean mask of a shape of radius r centred at (cy, cx); `angle` (radians) rotates bars/crosses."""
    dy, dx = yy - cy, xx - cx
    if shape == "disc":
        return dy * dy + dx * dx <= r * r
    if shape == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if shape == "ring":
        d2 = dy * dy + dx * dx
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "triangle":  # pointing up
        return (dy <= 0.7 * r) & (dy >= -r + 1.7 * np.abs(dx))
    c, s = np.cos(angle), np.sin(angle)
    u, v = dx * c + dy * s, -dx * s + dy * c
    if shape == "bar":
        return (np.abs(u) <= r) & (np.abs(v) <= max(1.2, aspect * r))
    if shape == "cross":
        t = max(1.2, 0.3 * r)
        return ((np.abs(u) <= r) & (np.abs(v) <= t)) | ((np.abs(v) <= r) & (np.abs(u) <= t))
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r * 1.15
    raise ValueError(shape)


@dataclass
class Canvas:
    h: int
    w: int
    yy: np.ndarray
    xx: np.ndarray

    @classmethod
    def make(cls, h: int, w: int) -> "Canvas":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        return cls(h, w, yy, xx)

    @property
    def side(self) -> int:
        return min(self.h, self.w)


class Renderer:
    """Draws videos; holds a bank of per-frame sensor-noise images (cheaper than fresh noise)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.noise = (rng.standard_normal((NOISE_BANK, max(HEIGHTS), max(WIDTHS), 3)) * NOISE_STD).astype(np.float32)

    def finish(self, frames: list[np.ndarray]) -> np.ndarray:
        out = np.empty((len(frames),) + frames[0].shape, np.uint8)
        for t, f in enumerate(frames):
            h, w = f.shape[:2]
            k = int(self.rng.integers(NOISE_BANK))
            out[t] = (f + self.noise[k, :h, :w]).clip(0, 255).astype(np.uint8)
        return out


# ==================================================================================================
# Temporal classes: every generator draws the FORWARD dynamics; the partner class is the same clip
# reversed in time. Progress p goes 0 -> 1 over the whole video.
# ==================================================================================================
def _progress(n: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n, dtype=np.float32)


def _scene(rng, cv: Canvas, with_distractor: bool = True):
    """Random background, optionally with a static distractor shape."""
    bg = _random_background(rng, cv.h, cv.w)
    if with_distractor and rng.random() < 0.5:
        shape = str(rng.choice(["disc", "square", "diamond"]))
        r = rng.uniform(0.06, 0.09) * cv.side
        cy, cx = rng.uniform(r, cv.h - r), rng.uniform(r, cv.w - r)
        colour = _hsv(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.5, 0.7))
        bg[_mask(shape, cv.yy, cv.xx, cy, cx, r)] = colour
    return bg


def _object(rng, cv: Canvas, shapes=("disc", "square", "diamond", "triangle")):
    return str(rng.choice(list(shapes))), _random_bright_colour(rng), rng.uniform(0.12, 0.17) * cv.side


def gen_translate(rng, cv: Canvas, n: int, direction=(1.0, 0.0)) -> list[np.ndarray]:
    """Object moving along `direction` (dx, dy): from the low side to the high side of that axis."""
    bg = _scene(rng, cv)
    shape, colour, r = _object(rng, cv)
    dx, dy = direction
    lo, hi = rng.uniform(0.12, 0.3), rng.uniform(0.7, 0.88)

    def along(extent, d, other):
        if d > 0:
            return extent * lo, extent * hi
        if d < 0:
            return extent * hi, extent * lo
        return (extent * other,) * 2

    x0, x1 = along(cv.w, dx, rng.uniform(0.3, 0.7))
    y0, y1 = along(cv.h, dy, rng.uniform(0.3, 0.7))
    frames = []
    for p in _progress(n):
        img = bg.copy()
        img[_mask(shape, cv.yy, cv.xx, y0 + (y1 - y0) * p, x0 + (x1 - x0) * p, r)] = colour
        frames.append(img)
    return frames


def gen_grow(rng, cv: Canvas, n: int) -> list[np.ndarray]:
    """Object growing from small to large (approaching the camera)."""
    bg = _scene(rng, cv)
    shape, colour, _ = _object(rng, cv, ("disc", "square", "diamond"))
    r0, r1 = rng.uniform(0.05, 0.09) * cv.side, rng.uniform(0.33, 0.42) * cv.side
    cy, cx = rng.uniform(0.4, 0.6) * cv.h, rng.uniform(0.35, 0.65) * cv.w
    frames = []
    for p in _progress(n):
        img = bg.copy()
        img[_mask(shape, cv.yy, cv.xx, cy, cx, r0 + (r1 - r0) * p)] = colour
        frames.append(img)
    return frames


def gen_rotate(rng, cv: Canvas, n: int) -> list[np.ndarray]:
    """Elongated bar turning clockwise on screen (y axis points down) by 100-160 degrees."""
    bg = _scene(rng, cv)
    colour = _random_bright_colour(rng)
    r = rng.uniform(0.32, 0.4) * cv.side
    a0 = rng.uniform(0, np.pi)
    sweep = np.deg2rad(rng.uniform(100, 160))
    cy, cx = rng.uniform(0.45, 0.55) * cv.h, rng.uniform(0.4, 0.6) * cv.w
    shape = "bar"
    frames = []
    for p in _progress(n):
        img = bg.copy()
        img[_mask(shape, cv.yy, cv.xx, cy, cx, r, angle=a0 + sweep * p, aspect=0.22)] = colour
        frames.append(img)
    return frames


def gen_approach(rng, cv: Canvas, n: int, axis_jitter_deg: float = 180.0) -> list[np.ndarray]:
    """Two objects moving towards each other (separation far -> near)."""
    bg = _scene(rng, cv, with_distractor=False)
    shape = str(rng.choice(["disc", "square", "diamond"]))
    c1, c2 = _random_bright_colour(rng), _random_bright_colour(rng)
    r = rng.uniform(0.09, 0.12) * cv.side
    theta = np.deg2rad(rng.uniform(-axis_jitter_deg, axis_jitter_deg) / 2)
    cy, cx = cv.h / 2 + rng.uniform(-2, 2), cv.w / 2 + rng.uniform(-3, 3)
    reach = min(abs(cv.w / 2 / max(abs(np.cos(theta)), 1e-3)), abs(cv.h / 2 / max(abs(np.sin(theta)), 1e-3)))
    far = min(reach - r - 1, 0.42 * cv.w) * rng.uniform(0.85, 1.0)
    near = r * rng.uniform(1.1, 1.4)
    ux, uy = np.cos(theta), np.sin(theta)
    frames = []
    for p in _progress(n):
        d = far + (near - far) * p
        img = bg.copy()
        img[_mask(shape, cv.yy, cv.xx, cy - uy * d, cx - ux * d, r)] = c1
        img[_mask(shape, cv.yy, cv.xx, cy + uy * d, cx + ux * d, r)] = c2
        frames.append(img)
    return frames


def gen_appear(rng, cv: Canvas, n: int) -> list[np.ndarray]:
    """Large object fading in from invisible to fully opaque."""
    bg = _scene(rng, cv)
    shape, colour, _ = _object(rng, cv, ("disc", "square", "diamond"))
    r = rng.uniform(0.25, 0.33) * cv.side
    cy, cx = rng.uniform(0.4, 0.6) * cv.h, rng.uniform(0.35, 0.65) * cv.w
    m = _mask(shape, cv.yy, cv.xx, cy, cx, r)
    frames = []
    for p in _progress(n):
        img = bg.copy()
        img[m] = (1 - p) * img[m] + p * colour
        frames.append(img)
    return frames


def gen_brighten(rng, cv: Canvas, n: int) -> list[np.ndarray]:
    """Whole scene (background + static object) brightening from dark to full light."""
    bg = _scene(rng, cv) * 1.6
    shape, colour, r = _object(rng, cv)
    r *= 1.5
    cy, cx = rng.uniform(0.35, 0.65) * cv.h, rng.uniform(0.3, 0.7) * cv.w
    bg[_mask(shape, cv.yy, cv.xx, cy, cx, r)] = colour
    lo = rng.uniform(0.15, 0.25)
    return [bg * (lo + (1 - lo) * p) for p in _progress(n)]


# (forward name, reversed name, generator, kwargs). Names: forward first.
STHV1_PAIRS = [
    ("Moving something from left to right", "Moving something from right to left", gen_translate, {"direction": (1, 0)}),
    ("Moving something down", "Moving something up", gen_translate, {"direction": (0, 1)}),
    ("Moving something closer to the camera", "Moving something away from the camera", gen_grow, {}),
    ("Turning something clockwise", "Turning something counterclockwise", gen_rotate, {}),
    ("Moving something and something closer to each other", "Moving something and something away from each other",
     gen_approach, {}),
    ("Uncovering something", "Covering something", gen_appear, {}),
]
STHV2_PAIRS = [
    ("Moving [something] from left to right", "Moving [something] from right to left", gen_translate, {"direction": (1, 0)}),
    ("Moving [something] down", "Moving [something] up", gen_translate, {"direction": (0, 1)}),
    ("Pushing [something] from top left to bottom right", "Pulling [something] from bottom right to top left",
     gen_translate, {"direction": (1, 1)}),
    ("Approaching [something] with your camera", "Moving away from [something] with your camera", gen_grow, {}),
    ("Spinning [something] clockwise", "Spinning [something] counterclockwise", gen_rotate, {}),
    ("Turning the light on [something]", "Turning the light off [something]", gen_brighten, {}),
]
JESTER_PAIRS = [
    ("Swiping Right", "Swiping Left", gen_translate, {"direction": (1, 0)}),
    ("Swiping Down", "Swiping Up", gen_translate, {"direction": (0, 1)}),
    ("Zooming Out With Two Fingers", "Zooming In With Two Fingers", gen_approach, {"axis_jitter_deg": 60.0}),
    ("Pulling Hand In", "Pushing Hand Away", gen_grow, {}),
    ("Turning Hand Clockwise", "Turning Hand Counterclockwise", gen_rotate, {}),
]


def temporal_classes(pairs) -> list[tuple[str, object, dict, bool]]:
    """Flat class list [(name, generator, kwargs, reversed)], forward and reversed partners interleaved."""
    out = []
    for fwd, rev, gen, kwargs in pairs:
        out.append((fwd, gen, kwargs, False))
        out.append((rev, gen, kwargs, True))
    return out


def render_temporal(renderer: Renderer, rng, cls, n: int, h: int, w: int) -> np.ndarray:
    _, gen, kwargs, reverse = cls
    frames = gen(rng, Canvas.make(h, w), n, **kwargs)
    if reverse:
        frames = frames[::-1]
    return renderer.finish(frames)


# ==================================================================================================
# Appearance classes (Kinetics): texture x shape x palette; motion is random
# ==================================================================================================
@dataclass(frozen=True)
class Look:
    name: str
    texture: str
    shape: str
    hue: float


KINETICS_LOOKS = [
    # the Mini-Kinetics subset (10 classes)
    Look("abseiling", "hstripes", "disc", 0.00),
    Look("archery", "vstripes", "square", 0.33),
    Look("bowling", "checker", "triangle", 0.62),
    Look("juggling balls", "dots", "ring", 0.15),
    Look("playing drums", "diag", "cross", 0.80),
    Look("riding a bike", "smooth", "disc", 0.50),
    Look("surfing water", "hstripes", "triangle", 0.57),
    Look("tai chi", "vstripes", "ring", 0.05),
    Look("yoga", "checker", "cross", 0.25),
    Look("zumba", "diag", "square", 0.42),
    # Kinetics classes outside the subset
    Look("arm wrestling", "dots", "square", 0.70),
    Look("baking cookies", "smooth", "triangle", 0.10),
    Look("dancing ballet", "hstripes", "cross", 0.45),
]
MINI_SUBSET = 10


def _texture(rng, kind: str, h: int, w: int, hue: float) -> np.ndarray:
    """Background texture of `kind` in a two-colour palette around `hue` (float32 HxWx3)."""
    hue = hue + rng.uniform(-0.03, 0.03)
    dark = _hsv(hue, rng.uniform(0.5, 0.9), rng.uniform(0.2, 0.32))
    light = _hsv(hue, rng.uniform(0.4, 0.8), rng.uniform(0.55, 0.7))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(6, 9)
    py, px = rng.uniform(0, period, 2)
    if kind == "hstripes":
        t = ((yy + py) % period) < period / 2
    elif kind == "vstripes":
        t = ((xx + px) % period) < period / 2
    elif kind == "diag":
        t = ((xx + yy + px) % (period * 1.2)) < period * 0.6
    elif kind == "checker":
        t = (((yy + py) // (period / 1.3)) + ((xx + px) // (period / 1.3))) % 2 == 0
    elif kind == "dots":
        cy, cx = (yy + py) % period - period / 2, (xx + px) % period - period / 2
        t = cy * cy + cx * cx < (period * 0.28) ** 2
    elif kind == "smooth":
        t = _smooth_noise(rng, h, w, grid=(3, 4), channels=1)[..., 0]
        return (dark + (light - dark) * t[..., None]).astype(np.float32)
    else:
        raise ValueError(kind)
    return np.where(t[..., None], light, dark).astype(np.float32)


def render_appearance(renderer: Renderer, rng, look: Look, n: int, h: int, w: int) -> np.ndarray:
    """Class = look; the object wanders randomly and the camera shakes randomly (class-independent)."""
    pad = 3
    big = _texture(rng, look.texture, h + 2 * pad, w + 2 * pad, look.hue)
    cv = Canvas.make(h, w)
    colour = _hsv(look.hue + 0.5 + rng.uniform(-0.05, 0.05), rng.uniform(0.7, 1.0), rng.uniform(0.85, 1.0))
    r = rng.uniform(0.2, 0.26) * cv.side
    y, x = rng.uniform(r, h - r), rng.uniform(r, w - r)
    speed = rng.uniform(0.3, 2.0)
    heading = rng.uniform(0, 2 * np.pi)
    angle = rng.uniform(0, np.pi)
    frames = []
    for _ in range(n):
        heading += rng.normal(0, 0.6)
        y, x = y + speed * np.sin(heading), x + speed * np.cos(heading)
        if not r <= y <= h - r:
            y = float(np.clip(y, r, h - r))
            heading = -heading
        if not r <= x <= w - r:
            x = float(np.clip(x, r, w - r))
            heading = np.pi - heading
        oy, ox = rng.integers(0, 2 * pad + 1, 2)
        img = big[oy:oy + h, ox:ox + w].copy()
        img[_mask(look.shape, cv.yy, cv.xx, y, x, r, angle=angle)] = colour
        frames.append(img)
    return renderer.finish(frames)


# ==================================================================================================
# Writers
# ==================================================================================================
def write_jpeg_folder(folder: Path, frames: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / layouts.frame_name(i), quality=JPEG_QUALITY)


def write_video(path: Path, frames: np.ndarray, codec: str) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    fmt = "webm" if path.suffix == ".webm" else "mp4"
    options = {"libvpx": {"crf": "6", "b": "2M", "deadline": "good", "cpu-used": "5"},
               # x264's SIMD code paths gave run-to-run byte differences here; plain C is deterministic
               "libx264": {"crf": "16", "preset": "ultrafast", "x264-params": "asm=0"}}[codec]
    with av.open(str(path), "w", format=fmt, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.thread_count = 1  # deterministic output
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_lines(path: Path, lines) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def clip_size(rng) -> tuple[int, int, int]:
    """(frames, height, width) of a random clip of the suite (also what `vidbench pretrain` renders)."""
    return int(rng.integers(MIN_LEN, MAX_LEN + 1)), int(rng.choice(HEIGHTS)), int(rng.choice(WIDTHS))


def _plan(rng, num_classes: int, train_per_class: int, val_per_class: int, test_total: int = 0):
    """Shuffled list of (split, class index or None, id) with unique random integer ids."""
    items = [(split, c) for c in range(num_classes)
             for split, k in (("train", train_per_class), ("val", val_per_class)) for _ in range(k)]
    items += [("test", None)] * test_total
    ids = rng.permutation(len(items) * 7)[: len(items)] + 1
    order = rng.permutation(len(items))
    return [(items[j][0], items[j][1], str(int(ids[j]))) for j in order]


_PLACEHOLDERS = ["a pen", "a cup", "a book", "a phone", "a box", "a spoon", "a bottle", "a toy car", "a shoe",
                 "a remote control", "a matchbox", "a coin"]


def _gen_20bn(fmt: str, root: Path, rng, train_per_class: int, val_per_class: int) -> dict:
    pairs = {"sthv1": STHV1_PAIRS, "sthv2": STHV2_PAIRS, "jester": JESTER_PAIRS}[fmt]
    classes = temporal_classes(pairs)
    names = [c[0] for c in classes]
    renderer = Renderer(rng)
    test_total = len(classes)
    plan = _plan(rng, len(classes), train_per_class, val_per_class, test_total)
    rows = {"train": [], "val": [], "test": []}
    for split, c, vid in plan:
        cls = classes[c] if c is not None else classes[int(rng.integers(len(classes)))]
        n, h, w = clip_size(rng)
        frames = render_temporal(renderer, rng, cls, n, h, w)
        if fmt == "sthv2":
            write_video(root / layouts.STHV2_VIDEO_DIR / f"{vid}.webm", frames, "libvpx")
        else:
            video_dir = layouts.STHV1_VIDEO_DIR if fmt == "sthv1" else layouts.JESTER_VIDEO_DIR
            write_jpeg_folder(root / video_dir / vid, frames)
        rows[split].append((vid, c))

    if fmt in ("sthv1", "jester"):
        labels, splits, test = ((layouts.STHV1_LABELS, layouts.STHV1_SPLITS, layouts.STHV1_TEST) if fmt == "sthv1"
                                else (layouts.JESTER_LABELS, layouts.JESTER_SPLITS, layouts.JESTER_TEST))
        _write_lines(root / labels, names)
        for split in ("train", "val"):
            _write_lines(root / splits[split], [f"{vid};{names[c]}" for vid, c in rows[split]])
        _write_lines(root / test, [vid for vid, _ in rows["test"]])
    else:
        labels = {layouts.sthv2_class(t): str(i) for i, t in enumerate(names)}
        (root / layouts.STHV2_LABELS).write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
        for split in ("train", "val"):
            entries = []
            for vid, c in rows[split]:
                template = names[c]
                holders = [str(rng.choice(_PLACEHOLDERS)) for _ in range(template.count("[something]"))]
                label = template
                for holder in holders:
                    label = label.replace("[something]", holder, 1)
                entries.append({"id": vid, "label": label[0].lower() + label[1:], "template": template,
                                "placeholders": holders})
            (root / layouts.STHV2_SPLITS[split]).write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
        (root / layouts.STHV2_TEST).write_text(json.dumps([{"id": vid} for vid, _ in rows["test"]], indent=1) + "\n",
                                               encoding="utf-8")
    return {"classes": [layouts.sthv2_class(n) for n in names] if fmt == "sthv2" else names,
            "train": len(rows["train"]), "val": len(rows["val"]), "test": len(rows["test"])}


def _youtube_id(rng) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(alphabet[k] for k in rng.integers(0, len(alphabet), 11))


def _gen_kinetics(root: Path, rng, train_per_class: int, val_per_class: int) -> dict:
    """Kinetics layout with all KINETICS_LOOKS; the subset lists name the first MINI_SUBSET classes.

    Each subset class also gets one video per split that is NOT in the subset id lists.
    """
    renderer = Renderer(rng)
    items = []
    for c, look in enumerate(KINETICS_LOOKS):
        in_subset = c < MINI_SUBSET
        for split, k in (("train", train_per_class), ("val", val_per_class)):
            items += [(split, c, in_subset)] * k
            if in_subset and k > 0:
                items.append((split, c, False))
    order = rng.permutation(len(items))
    rows = {"train": [], "val": []}
    subset_ids = {"train": [], "val": []}
    used = set()
    for j in order:
        split, c, listed = items[j]
        look = KINETICS_LOOKS[c]
        ytid = _youtube_id(rng)
        while ytid in used:
            ytid = _youtube_id(rng)
        used.add(ytid)
        start = int(rng.integers(0, 300))
        end = start + 10
        n, h, w = clip_size(rng)
        frames = render_appearance(renderer, rng, look, n, h, w)
        write_video(root / split / look.name / f"{layouts.kinetics_stem(ytid, start, end)}.mp4", frames, "libx264")
        rows[split].append((look.name, ytid, start, end))
        if listed:
            subset_ids[split].append(ytid)
    for split in ("train", "val"):
        lines = [",".join(layouts.KINETICS_HEADER)]
        lines += [f"{label},{ytid},{start},{end},{split}" for label, ytid, start, end in rows[split]]
        _write_lines(root / layouts.KINETICS_SPLITS[split], lines)
        _write_lines(root / layouts.MINI_IDS[split], sorted(subset_ids[split]))
    _write_lines(root / layouts.MINI_CLASSES, [look.name for look in KINETICS_LOOKS[:MINI_SUBSET]])
    return {"classes": [look.name for look in KINETICS_LOOKS[:MINI_SUBSET]],
            "kinetics_classes": sorted(look.name for look in KINETICS_LOOKS),
            "train": len(subset_ids["train"]), "val": len(subset_ids["val"]),
            "kinetics_train": len(rows["train"]), "kinetics_val": len(rows["val"])}


# ==================================================================================================
# Public API
# ==================================================================================================
def _format_seed(fmt: str, seed: int) -> int:
    return (int(seed) * 1_000_003 + FORMATS.index(fmt) * 7919 + 17) % (2**63)


def generate(fmt: str, root, *, train_per_class: int = 40, val_per_class: int = 10, seed: int = 0) -> None:
    """Write the synthetic dataset `fmt` into `root` in its real counterpart's layout (atomically)."""
    if fmt not in FORMATS:
        raise InputError("--format", f"unknown synthetic format {fmt!r}", expected=" | ".join(FORMATS))
    if train_per_class < 1 or val_per_class < 1:
        raise InputError("--train-per-class/--val-per-class", "counts must be at least 1", expected="integers >= 1")
    root = Path(root).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a folder", expected="a new or previously generated folder")
    if root.is_dir() and any(root.iterdir()) and not (root / ".complete").exists():
        if not (root / ".vidbench-synth").exists():
            raise InputError(root, "folder is not empty and was not made by `vidbench synth`; refusing to replace it",
                             expected="a new, empty or previously generated folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        (tmp / ".vidbench-synth").write_text(f"{fmt}\n", encoding="utf-8")
        rng = np.random.default_rng(_format_seed(fmt, seed))
        if fmt == "minikinetics":
            info = _gen_kinetics(tmp, rng, train_per_class, val_per_class)
        else:
            info = _gen_20bn(fmt, tmp, rng, train_per_class, val_per_class)
        marker = {"format": fmt, "seed": seed, "train_per_class": train_per_class, "val_per_class": val_per_class,
                  "generator_version": VERSION, **info}
        (tmp / ".complete").write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        if root.exists():
            shutil.rmtree(root)
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def add_arguments(parser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS, help="which real dataset's layout to imitate")
    parser.add_argument("--out", required=True, help="dataset root to create (ROOT/.complete is written last)")
    parser.add_argument("--train-per-class", type=int, default=40, help="training videos per class")
    parser.add_argument("--val-per-class", type=int, default=10, help="validation videos per class")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def run(args) -> int:
    start = time.perf_counter()
    generate(args.format, Path(args.out), train_per_class=args.train_per_class, val_per_class=args.val_per_class,
             seed=args.seed)
    print(f"synth {args.format}: wrote {args.out} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return 0
