"""Glyphs: a procedurally generated, Omniglot-like many-class image data set (nothing downloaded).

A glyph is built from the 20 unit strokes between neighbouring points of a 3x3 grid (`STROKES`):
6 horizontal, 6 vertical and the 2 diagonals of each of the 4 small squares. A class is a connected
set of 3 to 5 strokes (connected through shared end points, like a character drawn without lifting
the whole hand). Classes are distinct even up to translation inside the grid, and each glyph is
drawn centred on its bounding box, so no class is a shifted copy of another. There are `NUM_GLYPHS`
such glyphs; a data set draws `num_classes` of them, with 3-, 4- and 5-stroke glyphs taking turns
(`choose_classes`), so every third class has 3 strokes.

Every example is its own distorted rendering, as if drawn by a different hand: a random affine map of
the grid (rotation within +-15 degrees, scale 0.8-1.15, shear +-0.15, translation +-2 px at 28x28),
independent jitter of each grid point (std 0.04 of the glyph size), a stroke width of 1.2-2.2 px,
anti-aliased rendering by the distance from each pixel centre to each stroke, and pixel noise.

Class attributes are the 20-d binary stroke-membership vectors (the generating parameters of the
class), for zero-shot learning: a class is described by which strokes it has.

Randomness is per class (`default_rng([seed, stream, class])`), so the first k classes and the first
m examples of each are the same whatever `num_classes` and `per_class` are.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from dlcore.config import check
from dlcore.data import episodes
from dlcore.data.cache import cache_path, load_npz, save_npz

VERSION = "v1"  # part of the cache name: bump it whenever the generator's output changes


def _grid_strokes() -> tuple[tuple[int, int], ...]:
    """The 20 strokes as pairs of grid point indices (point = 3 * row + column)."""
    p = lambda r, c: 3 * r + c  # noqa: E731
    horizontal = [(p(r, c), p(r, c + 1)) for r in range(3) for c in range(2)]
    vertical = [(p(r, c), p(r + 1, c)) for r in range(2) for c in range(3)]
    diagonal = [d for r in range(2) for c in range(2)
                for d in ((p(r, c), p(r + 1, c + 1)), (p(r, c + 1), p(r + 1, c)))]
    return tuple(horizontal + vertical + diagonal)


STROKES = _grid_strokes()  # attribute j of a class is 1 when it has stroke STROKES[j]
NUM_STROKES = len(STROKES)  # 20
MIN_STROKES, MAX_STROKES = 3, 5
NUM_GLYPHS = 6624  # len(glyph_table()); a constant so that checking a config enumerates nothing


# --- which glyphs exist ---------------------------------------------------------------------------

def _connected(strokes: tuple[int, ...]) -> bool:
    """Whether the strokes (indices into STROKES) form one piece through shared end points."""
    reached = set(STROKES[strokes[0]])
    left = list(strokes[1:])
    grew = True
    while left and grew:
        touching = [s for s in left if reached & set(STROKES[s])]
        reached.update(p for s in touching for p in STROKES[s])
        left = [s for s in left if s not in touching]
        grew = bool(touching)
    return not left


def _touches_top_left(strokes: tuple[int, ...]) -> bool:
    """The one translate of a shape that reaches grid row 0 and column 0 (so shapes are distinct)."""
    points = {p for s in strokes for p in STROKES[s]}
    return min(p // 3 for p in points) == 0 and min(p % 3 for p in points) == 0


def glyph_table() -> np.ndarray:
    """Every possible glyph as a stroke-membership row, in a fixed order: bool [NUM_GLYPHS, 20]."""
    rows = [subset for k in range(MIN_STROKES, MAX_STROKES + 1)
            for subset in itertools.combinations(range(NUM_STROKES), k)
            if _connected(subset) and _touches_top_left(subset)]
    table = np.zeros((len(rows), NUM_STROKES), bool)
    for i, subset in enumerate(rows):
        table[i, list(subset)] = True
    return table


def choose_classes(table: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Indices of `num_classes` distinct rows of `table`: [num_classes] int.

    Stroke counts take turns (3, 4, 5, 3, 4, 5, ...), each turn taking the next glyph of that count in
    a random order, and a count that has run out is skipped. Uniform drawing would give nearly only
    5-stroke glyphs, which far outnumber the others. The order is a prefix: more classes never
    changes the first ones.
    """
    rng = np.random.default_rng([seed, 0])
    counts = table.sum(1)
    rank = np.zeros(len(table), int)  # position of each glyph in its own count's random order
    for k in range(MIN_STROKES, MAX_STROKES + 1):
        members = rng.permutation(np.flatnonzero(counts == k))
        rank[members] = np.arange(len(members))
    turn = rank * (MAX_STROKES - MIN_STROKES + 1) + counts - MIN_STROKES
    return np.argsort(turn, kind="stable")[:num_classes]


# --- drawing --------------------------------------------------------------------------------------

def _grid_points(strokes: np.ndarray) -> np.ndarray:
    """The 9 grid points in grid units, centred on the glyph's bounding box: [9, 2] as (x, y)."""
    xy = np.array([(p % 3, p // 3) for p in range(9)], np.float64)
    used = np.unique(np.array(STROKES)[strokes].ravel())
    centre = (xy[used].min(0) + xy[used].max(0)) / 2
    return xy - centre


def _padded_strokes(strokes: np.ndarray) -> np.ndarray:
    """The glyph's stroke indices, padded to MAX_STROKES by repeating the first: [5] int.

    Repeating a stroke draws nothing new (pixels take the max over strokes), so every glyph has the
    same number of segments and all examples render in one vectorised pass.
    """
    idx = np.flatnonzero(strokes)
    return np.concatenate([idx, np.full(MAX_STROKES - len(idx), idx[0])])


def _distortions(num: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random per-example drawing parameters, lengths in pixels; each array has leading axis [num]."""
    u = rng.random((num, 6))  # one draw, so the first examples do not depend on `num`
    px = size / 28.0  # the ranges are quoted for 28x28 images
    return {"angle": np.deg2rad(-15 + 30 * u[:, 0]), "scale": 0.8 + 0.35 * u[:, 1],
            "shear": -0.15 + 0.3 * u[:, 2], "shift": (-2 + 4 * u[:, 3:5]) * px,
            "width": (1.2 + 1.0 * u[:, 5]) * px}


def _affine(angle: np.ndarray, scale: np.ndarray, shear: np.ndarray) -> np.ndarray:
    """Rotation @ shear @ scale for each example: [n, 2, 2]."""
    c, s, one, zero = np.cos(angle), np.sin(angle), np.ones_like(angle), np.zeros_like(angle)
    rotation = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    shearing = np.stack([np.stack([one, shear], -1), np.stack([zero, one], -1)], -2)
    return rotation @ shearing * scale[:, None, None]


def _example_points(strokes: np.ndarray, num: int, size: int, seed: int,
                    cls: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions of the 9 grid points for `num` drawings: ([num, 9, 2], widths [num])."""
    params = _distortions(num, size, np.random.default_rng([seed, 1, cls]))
    grid = _grid_points(strokes)
    # std 0.04 of the glyph size, which is 2 grid units
    jitter = np.random.default_rng([seed, 2, cls]).normal(0.0, 0.04 * 2, (num, 9, 2))
    # a glyph spans 2 cells, 0.56 of the image: under 1% of the drawings touch the border
    cell = size / 3.6
    mapped = np.einsum("nij,nkj->nki", _affine(params["angle"], params["scale"], params["shear"]),
                       grid + jitter)
    return size / 2.0 + cell * mapped + params["shift"][:, None, :], params["width"]


def render(points: np.ndarray, segments: np.ndarray, widths: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased strokes: [n, size, size] float in [0, 1].

    points: [n, 9, 2] pixel (x, y) of the grid points; segments: [n, S] stroke indices;
    widths: [n] line widths in pixels. A pixel's value falls linearly from 1 to 0 over the pixel
    that straddles the stroke's edge, which is what anti-aliasing by coverage approximates.
    """
    ends = np.array(STROKES)[segments]  # [n, S, 2] point indices
    rows = np.arange(len(points))[:, None]
    a, b = points[rows, ends[..., 0]], points[rows, ends[..., 1]]  # [n, S, 2] stroke end points
    a, ab = a[..., None].astype(np.float32), (b - a)[..., None].astype(np.float32)  # [n, S, 2, 1]
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    px, py = np.meshgrid(grid, grid)  # x varies along columns, y along rows
    # x and y kept apart (not a trailing axis of 2): the [n, S, P] arrays are the whole cost
    apx, apy = px.ravel() - a[:, :, 0], py.ravel() - a[:, :, 1]  # [n, S, P]
    abx, aby = ab[:, :, 0], ab[:, :, 1]  # [n, S, 1]
    t = np.clip((apx * abx + apy * aby) / np.maximum(abx * abx + aby * aby, 1e-9), 0.0, 1.0)
    dist = np.sqrt(((apx - t * abx) ** 2 + (apy - t * aby) ** 2).min(1))  # [n, P]: nearest stroke
    ink = np.clip(widths[:, None] / 2 + 0.5 - dist, 0.0, 1.0)
    return ink.reshape(-1, size, size)


def _render_class(strokes: np.ndarray, per_class: int, size: int, seed: int, cls: int) -> np.ndarray:
    """All examples of one class, with pixel noise, quantised: uint8 [per_class, size, size]."""
    points, widths = _example_points(strokes, per_class, size, seed, cls)
    segments = np.broadcast_to(_padded_strokes(strokes), (per_class, MAX_STROKES))
    ink = render(points, segments, widths, size)
    noise = np.random.default_rng([seed, 3, cls]).normal(0.0, 0.03, ink.shape)
    return np.round(np.clip(ink + noise, 0.0, 1.0) * 255).astype(np.uint8)


def generate_uint8(num_classes: int = 400, per_class: int = 20, size: int = 28,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """The data set as stored: {'x': uint8 [C, M, size, size] (255 = ink),
    'attributes': uint8 [C, 20]}."""
    table = glyph_table()
    attributes = table[choose_classes(table, num_classes, seed)]
    x = np.stack([_render_class(a, per_class, size, seed, c) for c, a in enumerate(attributes)])
    return {"x": x, "attributes": attributes.astype(np.uint8)}


def to_float(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stored uint8 arrays -> {'x': float32 [C, M, H, W, 1] in [0, 1],
    'attributes': float32 [C, 20]}."""
    return {"x": (arrays["x"].astype(np.float32) / 255.0)[..., None],
            "attributes": arrays["attributes"].astype(np.float32)}


def generate(num_classes: int = 400, per_class: int = 20, size: int = 28,
             seed: int = 0) -> dict[str, np.ndarray]:
    """A fresh data set (no cache): {'x': float32 [C, M, size, size, 1] in [0, 1], 'attributes':
    float32 [C, 20]}. Pixels are quantised to multiples of 1/255, exactly as the cache stores them."""
    return to_float(generate_uint8(num_classes, per_class, size, seed))


# --- cached loading -------------------------------------------------------------------------------

def cache_name(num_classes: int, per_class: int, size: int, seed: int) -> str:
    """Every generation parameter and the version are in the name: no stale file is ever read."""
    return f"glyphs-{VERSION}-c{num_classes}-m{per_class}-s{size}-seed{seed}.npz"


def cached(num_classes: int, per_class: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """`generate(...)`, read from the cache when it is there, written to it when not."""
    path = cache_path(cache_name(num_classes, per_class, size, seed))
    if path.exists():
        try:
            return to_float(load_npz(path, ("x", "attributes")))
        except ValueError:
            path.unlink()  # a torn cache file: regenerate rather than fail
    arrays = generate_uint8(num_classes, per_class, size, seed)
    save_npz(path, arrays)
    return to_float(arrays)


def _int_in(cfg: dict, key: str, default: int, low: int, high: int) -> int:
    value = cfg.get(key, default)
    check(type(value) is int and low <= value <= high, f"data.{key}",
          f"must be an integer in [{low}, {high}]; got {value!r}")
    return value


def defaults() -> dict:
    """Episodes (dlcore.data.episodes) and the generator's keys (see `splits`)."""
    return {**episodes.defaults(), "num_classes": 400, "per_class": 20, "image_size": 28,
            "data_seed": 0, "test_classes": 100, "validation_classes": 0}


def load(cfg: dict):
    """Episodes of glyph classes: {'support', 'query', 'classes', 'attributes'} batches."""
    return episodes.episodic(splits(cfg), cfg)


def splits(cfg: dict) -> dict[str, dict[str, np.ndarray]]:
    """Class-major splits: {'train': {'x': f32 [C_tr, M, H, W, 1], 'attributes': f32 [C_tr, 20]},
    'test': {...}, and 'validation': {...} when `validation_classes` > 0}.

    The split is fixed: of the `num_classes` classes (default 400) the LAST `test_classes` (default
    100) are the test classes, the `validation_classes` (default 0) before them the validation
    classes, and the rest the training classes. Other keys: per_class (M, default 20), image_size
    (H = W, default 28), data_seed (default 0). Keys not named here are ignored.
    """
    n = _int_in(cfg, "num_classes", 400, 3, NUM_GLYPHS)
    per_class = _int_in(cfg, "per_class", 20, 2, 10_000)
    size = _int_in(cfg, "image_size", 28, 8, 256)
    seed = _int_in(cfg, "data_seed", 0, 0, 2**32 - 1)
    n_test = _int_in(cfg, "test_classes", 100, 1, n - 1)
    n_val = _int_in(cfg, "validation_classes", 0, 0, n - 1)
    check(n_test + n_val < n, "data.validation_classes",
          f"{n_val} validation + {n_test} test classes leave no training classes of {n}")
    arrays = cached(n, per_class, size, seed)
    bounds = {"train": (0, n - n_test - n_val), "validation": (n - n_test - n_val, n - n_test),
              "test": (n - n_test, n)}
    return {name: {k: v[lo:hi] for k, v in arrays.items()}
            for name, (lo, hi) in bounds.items() if hi > lo}


# --- a picture ------------------------------------------------------------------------------------

def picture(path: str | Path, num_classes: int = 10, per_class: int = 8, size: int = 28,
            seed: int = 0) -> Path:
    """A PNG grid of the first classes (rows) and their examples (columns); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # not pyplot: no global figure state, no window

    x = generate(num_classes, per_class, size, seed)["x"][..., 0]
    fig = Figure(figsize=(per_class * 0.9, num_classes * 0.9))
    FigureCanvasAgg(fig)
    axes = fig.subplots(num_classes, per_class, squeeze=False)
    for c in range(num_classes):
        for m in range(per_class):
            axes[c, m].imshow(x[c, m], cmap="gray_r", vmin=0.0, vmax=1.0)
            axes[c, m].set_axis_off()
    fig.suptitle(f"glyphs: {num_classes} classes (rows) x {per_class} examples")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
