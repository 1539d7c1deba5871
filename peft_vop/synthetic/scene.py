"""The objects of the synthetic world and how one frame of them is drawn.

A frame is a flat black square on which up to a few objects are drawn. An object is a shape of one colour and one
of two sizes; every attribute has a single English word, so a caption names an object as "a small red circle".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 100, 235),
    "yellow": (235, 215, 40),
    "purple": (155, 70, 210),
    "white": (235, 235, 235),
}
"""Colour name -> RGB. Chosen to stay apart after the 4:2:0 chroma subsampling of the videos."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""The shapes an object can have."""

SIZES: dict[str, float] = {"small": 0.16, "large": 0.28}
"""Size name -> side of the object's bounding square, as a fraction of the frame side."""

BACKGROUND: tuple[int, int, int] = (0, 0, 0)
"""RGB of the empty frame."""

# Objects closer than this many pixels count as touching; layouts keep them apart so none hides another.
MIN_GAP = 2.0


@dataclass(frozen=True)
class SceneObject:
    """One object of the world: a shape, a colour and a size.

    Args:
        shape (`str`): One of `SHAPES`.
        colour (`str`): One of the keys of `COLOURS`.
        size (`str`): One of the keys of `SIZES`.
    """

    shape: str
    colour: str
    size: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"`shape` must be one of {SHAPES}; got {self.shape!r}.")
        if self.colour not in COLOURS:
            raise ValueError(f"`colour` must be one of {tuple(COLOURS)}; got {self.colour!r}.")
        if self.size not in SIZES:
            raise ValueError(f"`size` must be one of {tuple(SIZES)}; got {self.size!r}.")

    @property
    def phrase(self) -> str:
        """The noun phrase that names the object in captions, e.g. `"a small red circle"`."""
        return f"a {self.size} {self.colour} {self.shape}"

    def extent(self, image_size: int) -> float:
        """Side in pixels of the square that bounds the object in an `image_size` frame."""
        return SIZES[self.size] * image_size


@dataclass(frozen=True)
class Placement:
    """An object drawn with its centre at pixel coordinates `(x, y)`; `x` grows rightwards, `y` downwards.

    Args:
        object (`SceneObject`): What is drawn.
        x (`float`): Horizontal coordinate of the centre, in pixels from the left edge.
        y (`float`): Vertical coordinate of the centre, in pixels from the top edge.
    """

    object: SceneObject
    x: float
    y: float


def sample_objects(rng: np.random.Generator, count: int) -> list[SceneObject]:
    """Draw `count` objects with pairwise different colours, so every object of a scene is named unambiguously.

    Args:
        rng (`numpy.random.Generator`): Source of randomness.
        count (`int`): How many objects; at most the number of colours.

    Returns:
        `list[SceneObject]`: The objects, in drawing order.
    """
    if not 0 <= count <= len(COLOURS):
        raise ValueError(f"`count` must be between 0 and {len(COLOURS)} (one colour per object); got {count}.")
    colours = rng.choice(list(COLOURS), size=count, replace=False)
    return [
        SceneObject(shape=str(rng.choice(SHAPES)), colour=str(colour), size=str(rng.choice(list(SIZES))))
        for colour in colours
    ]


def placements_collide(placements: Sequence[Placement], image_size: int) -> bool:
    """Whether the bounding squares of any two placements come closer than `MIN_GAP` pixels.

    Args:
        placements (`Sequence[Placement]`): The objects of one frame and where they are.
        image_size (`int`): Side of the frame in pixels (object sizes are fractions of it).

    Returns:
        `bool`: `True` if two objects touch or overlap.
    """
    for i, first in enumerate(placements):
        for second in placements[i + 1 :]:
            reach = (first.object.extent(image_size) + second.object.extent(image_size)) / 2 + MIN_GAP
            if abs(first.x - second.x) < reach and abs(first.y - second.y) < reach:
                return True
    return False


def centre_range(obj: SceneObject, image_size: int) -> tuple[float, float]:
    """The interval of centre coordinates that keeps an object entirely inside the frame, with a pixel to spare.

    Args:
        obj (`SceneObject`): The object.
        image_size (`int`): Side of the frame in pixels.

    Returns:
        `tuple[float, float]`: Lowest and highest centre coordinate, the same on both axes.
    """
    half = obj.extent(image_size) / 2 + 1
    return half, image_size - half


def shape_mask(shape: str, extent: float, x: float, y: float, image_size: int) -> np.ndarray:
    """Boolean mask `[image_size, image_size]` of the pixels whose centres fall inside the shape.

    Args:
        shape (`str`): One of `SHAPES`.
        extent (`float`): Side of the bounding square in pixels.
        x (`float`): Horizontal centre in pixels.
        y (`float`): Vertical centre in pixels.
        image_size (`int`): Side of the frame in pixels.
    """
    coords = np.arange(image_size, dtype=np.float64) + 0.5
    dx = coords[None, :] - x  # [1, W]
    dy = coords[:, None] - y  # [H, 1]
    half = extent / 2
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    if shape == "square":
        # A square of the same side as the circle's diameter looks bigger; shrink it to a similar area.
        side = 0.9 * half
        return (np.abs(dx) <= side) & (np.abs(dy) <= side)
    if shape == "triangle":
        # Pointing up: the half-width grows linearly from the apex at the top to `half` at the base.
        depth = (dy + half) / (2 * half)  # 0 at the apex, 1 at the base
        return (depth >= 0) & (depth <= 1) & (np.abs(dx) <= depth * half)
    if shape == "cross":
        arm = half / 3
        return ((np.abs(dx) <= half) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= half) & (np.abs(dx) <= arm))
    raise ValueError(f"`shape` must be one of {SHAPES}; got {shape!r}.")


def render_frame(placements: Sequence[Placement], image_size: int) -> np.ndarray:
    """Draw the placements, in order, on an empty frame.

    Args:
        placements (`Sequence[Placement]`): The visible objects and where they are.
        image_size (`int`): Side of the square frame in pixels.

    Returns:
        `numpy.ndarray` of shape `[image_size, image_size, 3]` and dtype `uint8`: the RGB frame.
    """
    frame = np.empty((image_size, image_size, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    for placement in placements:
        obj = placement.object
        mask = shape_mask(obj.shape, obj.extent(image_size), placement.x, placement.y, image_size)
        frame[mask] = COLOURS[obj.colour]
    return frame
