"""Still frames of the synthetic world and their descriptions, the image-text pairs the default CLIP learns from.

A still shows up to three objects, each in a different cell of a 3x3 grid, and its description names every object
with its place: "a small red circle at the top left and a large blue cross on the right". Descriptions say what is
where, never what happens, so a CLIP trained on them knows objects, colours, sizes and positions but nothing of time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .scene import (
    COLOURS,
    SHAPES,
    SIZES,
    Placement,
    SceneObject,
    centre_range,
    placements_collide,
    render_frame,
    sample_objects,
)


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


def sample_still(
    rng: np.random.Generator,
    *,
    image_size: int = 64,
    objects: Sequence[SceneObject] | None = None,
    cells: Sequence[tuple[int, int]] | None = None,
) -> StillSpec:
    """Draw a still of zero to three objects with pairwise different colours, each in its own grid cell.

    Each centre is uniform over the part of its cell where the object fits inside the frame, so the description's
    position is exact; objects never touch.

    Args:
        rng (`numpy.random.Generator`): Source of randomness; the same state gives the same still.
        image_size (`int`, *optional*, defaults to 64): Side of the square frame in pixels.
        objects (`Sequence[SceneObject]`, *optional*): Place these objects (at most three, pairwise different
            colours) instead of drawing new ones.
        cells (`Sequence[tuple[int, int]]`, *optional*): The `(row, column)` of each of `objects`, pairwise
            different; drawn at random when not given.

    Returns:
        `StillSpec`: The still.
    """
    if objects is None:
        count = int(rng.choice(len(_OBJECT_COUNT_WEIGHTS), p=_OBJECT_COUNT_WEIGHTS))
        objects = sample_objects(rng, count)
    else:
        count = len(objects)
        colours = [obj.colour for obj in objects]
        if count > MAX_STILL_OBJECTS or len(set(colours)) < count:
            raise ValueError(
                f"`objects` must hold at most {MAX_STILL_OBJECTS} objects of different colours; got colours {colours}."
            )
    if cells is not None and (
        len(cells) != count or len(set(cells)) < count or not set(cells) <= set(POSITION_PHRASES)
    ):
        raise ValueError(f"`cells` must give {count} different (row, column) cells of the 3x3 grid; got {cells}.")
    cell_side = image_size / 3
    for _ in range(_MAX_LAYOUT_ATTEMPTS):
        # Cells are drawn again with the centres: three large objects in neighbouring cells rarely fit.
        chosen = cells or [divmod(int(cell), 3) for cell in rng.choice(9, size=count, replace=False)]
        placements = []
        for obj, (row, column) in zip(objects, chosen):
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


def sample_position_batch(rng: np.random.Generator, count: int, *, image_size: int = 64) -> list[StillSpec]:
    """Draw a batch that only positions can tell apart: one-object stills, each object shown in all nine cells.

    Colours, shapes and sizes are learned long before positions, and once a model matches descriptions by them it
    has little reason to read where things are. In this batch every object appears in every cell, so only the
    position words and where the object is drawn distinguish the nine stills of a group.

    Args:
        rng (`numpy.random.Generator`): Source of randomness.
        count (`int`): Stills in the batch (groups of nine, the last one cut short); at most 9 x 48 distinct objects.
        image_size (`int`, *optional*, defaults to 64): Side of the frames in pixels.

    Returns:
        `list[StillSpec]`: `count` stills with unique descriptions.
    """
    if not 0 < count <= 9 * len(COLOURS) * len(SHAPES) * len(SIZES):
        raise ValueError(f"`count` must be between 1 and {9 * len(COLOURS) * len(SHAPES) * len(SIZES)}; got {count}.")
    stills: list[StillSpec] = []
    used: set[SceneObject] = set()
    while len(stills) < count:
        objects = sample_objects(rng, 1)
        if objects[0] in used:
            continue
        used.add(objects[0])
        stills += [
            sample_still(rng, image_size=image_size, objects=objects, cells=[cell]) for cell in POSITION_PHRASES
        ]
    return stills[:count]


def sample_still_batch(
    rng: np.random.Generator,
    count: int,
    *,
    image_size: int = 64,
    moved_fraction: float = 0.5,
    reshaped_fraction: float = 0.25,
) -> list[StillSpec]:
    """Draw the stills of one contrastive batch, with hard negatives that differ from another still in one respect.

    In a batch of independent stills, two stills rarely share their objects, so a model can match descriptions by
    colours and shapes alone and never learn where things are. Here a still is followed, with probability
    `moved_fraction`, by a partner showing the same objects in other cells, and, with probability
    `reshaped_fraction`, by a partner in which one object has another shape; only the differing words then tell the
    two apart. Descriptions within a batch stay unique.

    Args:
        rng (`numpy.random.Generator`): Source of randomness.
        count (`int`): Stills in the batch.
        image_size (`int`, *optional*, defaults to 64): Side of the frames in pixels.
        moved_fraction (`float`, *optional*, defaults to 0.5): Chance that a still gets a moved partner.
        reshaped_fraction (`float`, *optional*, defaults to 0.25): Chance that a still gets a reshaped partner.

    Returns:
        `list[StillSpec]`: `count` stills, each partner right after its still.
    """
    for name, value in (("moved_fraction", moved_fraction), ("reshaped_fraction", reshaped_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"`{name}` must be in [0, 1]; got {value}.")
    stills: list[StillSpec] = []
    seen: set[str] = set()

    def add(still: StillSpec) -> None:
        if len(stills) < count and still.description not in seen:
            stills.append(still)
            seen.add(still.description)

    while len(stills) < count:
        still = sample_still(rng, image_size=image_size)
        add(still)
        objects = [placement.object for placement in still.placements]
        if objects and rng.random() < moved_fraction:
            add(sample_still(rng, image_size=image_size, objects=objects))
        if objects and rng.random() < reshaped_fraction:
            index = int(rng.integers(len(objects)))
            shape = str(rng.choice([shape for shape in SHAPES if shape != objects[index].shape]))
            placements = list(still.placements)
            placements[index] = replace(placements[index], object=replace(objects[index], shape=shape))
            add(StillSpec(image_size, tuple(placements)))
    return stills
