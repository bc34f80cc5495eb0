"""Drawing the shapes of the shapes data set: signed distances and
anti-aliased coverage masks (numpy only)."""

import numpy as np

# Shapes defined in `_signed_distance`; all fit in a circle of the shape's
# radius and stay distinguishable at 32x32 (smallest radius ~4 px).
SHAPE_NAMES = ("circle", "square", "triangle", "cross", "ring")
_RING_INNER = 0.55  # inner radius of a ring, relative to its radius


def _signed_distance(shape_id, u, v):
    """Signed distance (in radius units) to the shape; < 0 inside.

    `u`, `v` are coordinates relative to the centre, divided by the radius
    (image convention: v grows downwards). Union / intersection are max/min
    of distances (exact inside, a close approximation outside).
    """
    shape = SHAPE_NAMES[shape_id]
    if shape == "circle":
        return np.sqrt(u * u + v * v) - 1.0
    if shape == "ring":
        d = np.sqrt(u * u + v * v)
        return np.maximum(d - 1.0, _RING_INNER - d)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8
    if shape == "cross":
        arm = 0.3
        vertical = np.maximum(np.abs(u) - arm, np.abs(v) - 0.95)
        horizontal = np.maximum(np.abs(v) - arm, np.abs(u) - 0.95)
        return np.minimum(vertical, horizontal)
    if shape == "triangle":
        # Equilateral, pointing up, circumradius 1, inradius 0.5.
        s = np.sqrt(3.0) / 2.0
        d_bottom = v
        d_left = -s * u - 0.5 * v
        d_right = s * u - 0.5 * v
        return np.maximum(np.maximum(d_bottom, d_left), d_right) - 0.5
    raise ValueError(f"Unknown shape id {shape_id}.")


def _coverage(shape_id, centers, radii, xs, ys):
    """Anti-aliased coverage in [0, 1] of a window, (n, h, w) float32.

    centers: (n, 2) float (x, y) in pixels; radii: (n,) float pixels;
    xs: (n, w) and ys: (n, h) integer pixel columns / rows of the window.
    """
    radii = radii.astype(np.float32)[:, None, None]
    u = (xs[:, None, :] + 0.5 - centers[:, 0, None, None]) / radii  # (n, 1, w)
    v = (ys[:, :, None] + 0.5 - centers[:, 1, None, None]) / radii  # (n, h, 1)
    distance_px = _signed_distance(shape_id, u, v) * radii  # (n, h, w)
    return np.clip(0.5 - distance_px, 0.0, 1.0).astype(np.float32)


def shape_mask(shape, center, radius, image_size):
    """Boolean (H, W) mask of a shape, as drawn by `ShapesDataset`.

    Args:
        shape: str (one of `SHAPE_NAMES`) or its index.
        center: (x, y) in pixels (x to the right, y downwards).
        radius: float, pixels.
        image_size: int.
    """
    shape_id = SHAPE_NAMES.index(shape) if isinstance(shape, str) else shape
    pixels = np.arange(int(image_size), dtype=np.float32)[None]
    coverage = _coverage(
        int(shape_id),
        np.asarray(center, np.float32).reshape(1, 2),
        np.asarray([radius], np.float32),
        pixels,
        pixels,
    )
    return coverage[0] >= 0.5
