"""Still frames of the synthetic world and their descriptions, the image-text pairs the default CLIP learns from.

A still shows up to three objects, each in a different cell of a 3x3 grid, and its description names every object
with its place: "a small red circle at the top left and a large blue cross on the right". Descriptions say what is
where, never what happens, so a CLIP trained on them knows objects, colours, sizes and positions but nothing of time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import Placement, centre_range, placements_collide, render_frame, sample_objects


# (row, column) of the 3x3 grid -> how a description says where an object is.
POSITION_PHRASES: dict[tuple[int, int], str] = {
    (0, 0): "at the top left",
    (0, 1): "at the top",
    (0, 2): "at the top right",
    (1, 0): "on the left",
    (1, 1): "in the center",
    (1, 2): "on the right",
    (2, 0): "at the bottom left",
    (2, 1): "at the bottom",
    (2, 2): "at the bottom right",
}
"""Where an object is, by grid cell, in the words of a description."""

EMPTY_DESCRIPTION = "an empty scene"
"""The description of a still without objects (clips have such frames before something appears)."""

MAX_STILL_OBJECTS = 3
# Chance of a still showing 0, 1, 2 or 3 objects.
_OBJECT_COUNT_WEIGHTS = (0.04, 0.32, 0.34, 0.30)
_MAX_LAYOUT_ATTEMPTS = 200


def grid_cell(x: float, y: float, image_size: int) -> tuple[int, int]:
    """The cell of the 3x3 grid that holds a point.

    Args:
        x (`float`): Horizontal coordinate in pixels from the left edge.
        y (`float`): Vertical coordinate in pixels from the top edge.
        image_size (`int`): Side of the frame in pixels.

    Returns:
        `tuple[int, int]`: `(row, column)`, each 0 to 2; the key of `POSITION_PHRASES`.
    """
    return min(int(3 * y / image_size), 2), min(int(3 * x / image_size), 2)


@dataclass(frozen=True)
class StillSpec:
    """One still frame: objects and their places.

    Args:
        image_size (`int`): Side of the square frame in pixels.
        placements (`tuple[Placement, ...]`): The objects, in the order the description names them.
    """

    image_size: int
    placements: tuple[Placement, ...]

    @property
    def description(self) -> str:
        """What the still shows, e.g. `"a small red circle at the top left and a large blue cross on the right"`."""
        phrases = [
            f"{p.object.phrase} {POSITION_PHRASES[grid_cell(p.x, p.y, self.image_size)]}" for p in self.placements
        ]
        if not phrases:
            return EMPTY_DESCRIPTION
        if len(phrases) == 1:
            return phrases[0]
        return ", ".join(phrases[:-1]) + " and " + phrases[-1]

    def render(self) -> np.ndarray:
        """Draw the still as an RGB `uint8` array `[H, W, 3]`."""
        return render_frame(self.placements, self.image_size)


def sample_still(rng: np.random.Generator, *, image_size: int = 64) -> StillSpec:
    """Draw a still of zero to three objects with pairwise different colours, each in its own grid cell.

    Each centre is uniform over the part of its cell where the object fits inside the frame, so the description's
    position is exact; objects never touch.

    Args:
        rng (`numpy.random.Generator`): Source of randomness; the same state gives the same still.
        image_size (`int`, *optional*, defaults to 64): Side of the square frame in pixels.

    Returns:
        `StillSpec`: The still.
    """
    count = int(rng.choice(len(_OBJECT_COUNT_WEIGHTS), p=_OBJECT_COUNT_WEIGHTS))
    objects = sample_objects(rng, count)
    cell_side = image_size / 3
    for _ in range(_MAX_LAYOUT_ATTEMPTS):
        # Cells are drawn again with the centres: three large objects in neighbouring cells rarely fit.
        cells = [divmod(int(cell), 3) for cell in rng.choice(9, size=count, replace=False)]
        placements = []
        for obj, (row, column) in zip(objects, cells):
            low, high = centre_range(obj, image_size)
            # Stay a hair inside the cell so `grid_cell` cannot round a centre into the next one.
            x = rng.uniform(max(low, column * cell_side), min(high, (column + 1) * cell_side - 1e-6))
            y = rng.uniform(max(low, row * cell_side), min(high, (row + 1) * cell_side - 1e-6))
            placements.append(Placement(obj, float(x), float(y)))
        if not placements_collide(placements, image_size):
            return StillSpec(image_size, tuple(placements))
    raise RuntimeError(
        f"Could not lay out {count} objects without collisions in {_MAX_LAYOUT_ATTEMPTS} attempts at "
        f"image_size={image_size}; use a larger `image_size`."
    )
