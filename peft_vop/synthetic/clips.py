"""Clips of the synthetic world: objects that move, appear and disappear, one event after another.

A clip is a list of tracks (where each object is, and whether it is visible, at every frame) and a list of events
that happen in consecutive, disjoint windows of frames. Its caption tells the events in order: "a small red circle
moves left, then a large blue square appears". Every action has an opposite (left/right, up/down,
appears/disappears), so playing a clip backwards is again a valid clip, whose caption tells the opposite actions in
the opposite order; `ClipSpec.reversed` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import Placement, SceneObject, centre_range, placements_collide, render_frame, sample_objects


OPPOSITE_ACTIONS: dict[str, str] = {
    "moves left": "moves right",
    "moves right": "moves left",
    "moves up": "moves down",
    "moves down": "moves up",
    "appears": "disappears",
    "disappears": "appears",
}
"""Every action of the world and the action that the same frames show when played backwards."""

ACTIONS: tuple[str, ...] = tuple(OPPOSITE_ACTIONS)

# Direction of motion of each move, as (dx, dy) signs in image coordinates (y grows downwards).
_MOVE_DIRECTIONS: dict[str, tuple[int, int]] = {
    "moves left": (-1, 0),
    "moves right": (1, 0),
    "moves up": (0, -1),
    "moves down": (0, 1),
}

MIN_EVENT_FRAMES = 4
"""Fewest frames an event window may have: a move needs a start, an end and some frames between."""

# How many events a clip tells, and how often (for up to three events).
_EVENT_COUNT_WEIGHTS = (0.3, 0.45, 0.25)
# How far a move carries its object, as a fraction of the frame side.
_MOVE_DISTANCE = (0.35, 0.6)
_MAX_LAYOUT_ATTEMPTS = 50
_MAX_DRAWS = 100


@dataclass(frozen=True)
class Track:
    """Where one object is at every frame of a clip.

    Args:
        object (`SceneObject`): The object.
        x (`tuple[float, ...]`): Horizontal centre per frame, in pixels.
        y (`tuple[float, ...]`): Vertical centre per frame, in pixels.
        visible (`tuple[bool, ...]`): Whether the object is drawn, per frame.
    """

    object: SceneObject
    x: tuple[float, ...]
    y: tuple[float, ...]
    visible: tuple[bool, ...]

    def reversed(self) -> Track:
        """The same track played backwards."""
        return Track(self.object, self.x[::-1], self.y[::-1], self.visible[::-1])


@dataclass(frozen=True)
class Event:
    """One thing that happens in a clip: an object performs an action within a window of frames.

    Args:
        action (`str`): One of `ACTIONS`.
        track (`int`): Index of the acting object in `ClipSpec.tracks`.
        start (`int`): First frame of the window.
        end (`int`): One past the last frame of the window.
    """

    action: str
    track: int
    start: int
    end: int


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to draw and caption one clip.

    Args:
        image_size (`int`): Side of the square frames in pixels.
        tracks (`tuple[Track, ...]`): One track per object, in drawing order; objects no event names are static
            distractors.
        events (`tuple[Event, ...]`): The events in the order they happen; their windows do not overlap.
    """

    image_size: int
    tracks: tuple[Track, ...]
    events: tuple[Event, ...]

    @property
    def num_frames(self) -> int:
        """Number of frames of the clip."""
        return len(self.tracks[0].x)

    @property
    def caption(self) -> str:
        """The events told in order, e.g. `"a small red circle moves left, then a large blue square appears"`."""
        return ", then ".join(f"{self.tracks[event.track].object.phrase} {event.action}" for event in self.events)

    def placements(self, frame: int) -> list[Placement]:
        """The visible objects of frame `frame` and where they are."""
        return [
            Placement(track.object, track.x[frame], track.y[frame]) for track in self.tracks if track.visible[frame]
        ]

    def render(self) -> np.ndarray:
        """Draw the clip.

        Returns:
            `numpy.ndarray` of shape `[T, H, W, 3]` and dtype `uint8`: the RGB frames.
        """
        return np.stack([render_frame(self.placements(t), self.image_size) for t in range(self.num_frames)])

    def reversed(self) -> ClipSpec:
        """The clip played backwards: the same frames in reverse order, told as the opposite actions in reverse order.

        `spec.reversed().render()` equals `spec.render()[::-1]`, and its caption differs from `spec.caption` because
        no action is its own opposite.
        """
        last = self.num_frames
        events = tuple(
            Event(OPPOSITE_ACTIONS[event.action], event.track, last - event.end, last - event.start)
            for event in reversed(self.events)
        )
        return ClipSpec(self.image_size, tuple(track.reversed() for track in self.tracks), events)


def sample_clip(
    rng: np.random.Generator,
    *,
    image_size: int = 64,
    min_frames: int = 12,
    max_frames: int = 24,
    max_events: int = 3,
    distractor_probability: float = 0.5,
) -> ClipSpec:
    """Draw a random clip of one to `max_events` events, each by a different object, plus maybe a static distractor.

    The frame count is drawn uniformly from `[min_frames, max_frames]` and split into one equal window per event. A
    move carries its object across 35-60% of the frame during its window (still before and after); an appearing
    object pops in at a random frame inside its window (a disappearing one pops out). A distractor, added with
    probability `distractor_probability` when fewer than three events leave room for it, sits still throughout and
    is not mentioned by the caption. Objects never touch.

    Args:
        rng (`numpy.random.Generator`): Source of randomness; the same state gives the same clip.
        image_size (`int`, *optional*, defaults to 64): Side of the square frames in pixels.
        min_frames (`int`, *optional*, defaults to 12): Fewest frames of a clip.
        max_frames (`int`, *optional*, defaults to 24): Most frames of a clip.
        max_events (`int`, *optional*, defaults to 3): Most events of a clip, 1 to 3.
        distractor_probability (`float`, *optional*, defaults to 0.5): Chance of a static distractor object.

    Returns:
        `ClipSpec`: The clip.
    """
    if not 1 <= max_events <= len(_EVENT_COUNT_WEIGHTS):
        raise ValueError(f"`max_events` must be between 1 and {len(_EVENT_COUNT_WEIGHTS)}; got {max_events}.")
    if not max_events * MIN_EVENT_FRAMES <= min_frames <= max_frames:
        raise ValueError(
            f"`min_frames` must be at least {MIN_EVENT_FRAMES} per event ({max_events * MIN_EVENT_FRAMES} for "
            f"`max_events={max_events}`) and at most `max_frames`; got min_frames={min_frames}, "
            f"max_frames={max_frames}."
        )
    if not 0.0 <= distractor_probability <= 1.0:
        raise ValueError(f"`distractor_probability` must be in [0, 1]; got {distractor_probability}.")

    for _ in range(_MAX_DRAWS):
        num_frames = int(rng.integers(min_frames, max_frames + 1))
        weights = np.array(_EVENT_COUNT_WEIGHTS[:max_events])
        num_events = int(rng.choice(np.arange(1, max_events + 1), p=weights / weights.sum()))
        num_distractors = int(num_events < 3 and rng.random() < distractor_probability)
        objects = sample_objects(rng, num_events + num_distractors)
        actions = [str(action) for action in rng.choice(ACTIONS, size=num_events)]
        bounds = [round(k * num_frames / num_events) for k in range(num_events + 1)]
        events = tuple(Event(actions[k], k, bounds[k], bounds[k + 1]) for k in range(num_events))
        # A few crowded draws (three large objects sweeping across) have no room; those are drawn again.
        for _ in range(_MAX_LAYOUT_ATTEMPTS):
            tracks = [_event_track(rng, objects[event.track], event, num_frames, image_size) for event in events]
            tracks += [_static_track(rng, obj, num_frames, image_size) for obj in objects[num_events:]]
            spec = ClipSpec(image_size, tuple(tracks), events)
            if not any(placements_collide(spec.placements(t), image_size) for t in range(num_frames)):
                return spec
    raise RuntimeError(
        f"Could not lay out a clip without collisions in {_MAX_DRAWS} draws at image_size={image_size}; use a "
        "larger `image_size`."
    )


def _static_track(rng: np.random.Generator, obj: SceneObject, num_frames: int, image_size: int) -> Track:
    low, high = centre_range(obj, image_size)
    x, y = rng.uniform(low, high, size=2)
    return Track(obj, (float(x),) * num_frames, (float(y),) * num_frames, (True,) * num_frames)


def _event_track(rng: np.random.Generator, obj: SceneObject, event: Event, num_frames: int, image_size: int) -> Track:
    low, high = centre_range(obj, image_size)
    frames = np.arange(num_frames)
    if event.action in _MOVE_DIRECTIONS:
        distance = min(rng.uniform(*_MOVE_DISTANCE) * image_size, high - low)
        # The coordinate along the move starts where the whole move stays inside the frame.
        along_start = rng.uniform(low, high - distance)
        across = float(rng.uniform(low, high))
        sign = sum(_MOVE_DIRECTIONS[event.action])
        if sign < 0:
            along_start += distance
        # Still before the window, linear from its first to its last frame, still after.
        progress = np.clip((frames - event.start) / (event.end - 1 - event.start), 0.0, 1.0)
        along = tuple(float(v) for v in along_start + sign * distance * progress)
        horizontal = _MOVE_DIRECTIONS[event.action][0] != 0
        x, y = (along, (across,) * num_frames) if horizontal else ((across,) * num_frames, along)
        return Track(obj, x, y, (True,) * num_frames)
    # Appears or disappears at a frame strictly inside the window, so both states are seen within it.
    switch = int(rng.integers(event.start + 1, event.end))
    x, y = (float(v) for v in rng.uniform(low, high, size=2))
    after = frames >= switch
    visible = after if event.action == "appears" else ~after
    return Track(obj, (x,) * num_frames, (y,) * num_frames, tuple(bool(v) for v in visible))
