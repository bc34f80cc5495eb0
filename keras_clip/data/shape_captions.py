"""Captions of the shapes data set: templates, positions, relations.

Every caption only uses words true of its image: colour, shape, size,
position (only when the centre is clearly in that region) and, for two
shapes, their relation along the axis where they are furthest apart.
"""

import re

import numpy as np

PROMPT_TEMPLATES = (
    "a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a small {}.",
    "a large {}.",
)

_SINGLE_TEMPLATES = (
    "a {obj}",
    "a {size} {obj}",
    "a picture of a {obj}",
    "an image of a {obj}",
    "a {obj} on a dark background",
    "a {size} {obj} on a dark background",
    "a {obj} {where}",
    "a {size} {obj} {where}",
    "a picture of a {size} {obj} {where}",
)
_PAIR_TEMPLATES = (
    "a {a} {rel} a {b}",
    "a {sa} {a} {rel} a {sb} {b}",
    "a picture of a {a} {rel} a {b}",
    "a {a} and a {b}",
    "a {a} and a {b} on a dark background",
)
_INVERSE_RELATION = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "below": "above",
}


def fix_articles(text):
    """Turns "a orange" into "an orange" (and "a image" into "an image")."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def where_phrase(center, image_size):
    """Position phrase for a centre, or None when it is ambiguous."""
    x, y = np.asarray(center, np.float64) / image_size

    def band(value, low_word, high_word):
        if value < 0.4:
            return low_word
        if value > 0.6:
            return high_word
        if abs(value - 0.5) < 0.07:
            return "center"
        return None  # between a side and the centre: say nothing

    horizontal = band(x, "left", "right")
    vertical = band(y, "top", "bottom")
    if vertical in ("top", "bottom") and horizontal in ("left", "right"):
        return f"in the {vertical} {horizontal}"
    if vertical in ("top", "bottom") and horizontal in ("center", None):
        return f"at the {vertical}"
    if horizontal in ("left", "right") and vertical in ("center", None):
        return f"on the {horizontal}"
    if horizontal == "center" and vertical == "center":
        return "in the center"
    return None

def relation_phrase(center_a, center_b):
    """Spatial relation of shape a to shape b along the dominant axis."""
    dx = center_a[0] - center_b[0]
    dy = center_a[1] - center_b[1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"

def sample_captions(rng, layout, class_names, image_size):
    """One caption per image of a `ShapesDataset` layout, drawn with `rng`
    (the draws and their order are part of the data set's definition)."""
    n = layout["radii"].shape[0]
    single_choice = rng.integers(0, len(_SINGLE_TEMPLATES), n)
    pair_choice = rng.integers(0, len(_PAIR_TEMPLATES), n)
    swap = rng.random(n) < 0.5
    captions = []
    for i in range(n):
        names = [class_names[c] if c >= 0 else None for c in layout["class_ids"][i]]
        sizes = ["large" if big else "small" for big in layout["large"][i]]
        if not layout["two_shapes"][i]:
            template = _SINGLE_TEMPLATES[single_choice[i]]
            where = where_phrase(layout["centers"][i, 0], image_size)
            if "{where}" in template and where is None:
                template = template.replace(" {where}", "")
            text = template.format(obj=names[0], size=sizes[0], where=where)
        else:
            a, b = (1, 0) if swap[i] else (0, 1)
            relation = relation_phrase(
                layout["centers"][i, a], layout["centers"][i, b]
            )
            text = _PAIR_TEMPLATES[pair_choice[i]].format(
                a=names[a], b=names[b], sa=sizes[a], sb=sizes[b], rel=relation
            )
        captions.append(fix_articles(text))
    return captions
