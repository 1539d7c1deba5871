"""Readers for the annotation files of the text-video retrieval benchmarks, as they are distributed.

Each reader takes the directory holding the annotation files, the directory holding the videos, and a split, and
returns `VideoRecord`s. File names and layouts follow the CLIP4Clip / X-Pool releases:

| benchmark | split names | files read |
|---|---|---|
| `msrvtt` | `train_9k`, `train_7k`, `test` (1k-A) | `MSRVTT_data.json`, `MSRVTT_train.9k.csv` / `MSRVTT_train.7k.csv`, `MSRVTT_JSFUSION_test.csv` |
| `msvd` | `train`, `val`, `test` | `{split}_list.txt` and `raw-captions.pkl` (CLIP4Clip), `captions_msvd.json` (X-Pool) or `AllVideoDescriptions.txt` |
| `didemo` | `train`, `val`, `test` | `{split}_data.json` (and `{split}_list.txt` when present) |
| `activitynet` | `train`, `val_1` | `train.json` / `val_1.json` (and `train_ids.json` / `val_ids.json` when present) |
| `lsmdc` | `train`, `val`, `test` (1,000 clips) | `LSMDC16_annos_training.csv`, `LSMDC16_annos_val.csv`, `LSMDC16_challenge_1000_publictect.csv` |

DiDeMo and ActivityNet are evaluated as paragraph retrieval: a video's sentences are joined, in annotation order,
into one caption. Videos are looked up in the video directory (searched recursively) by file name or by stem, so
re-encoded copies (`.mp4` instead of `.avi`) are found too; a video that is not there gets its expected path, and
the decoding error policy reports it by that path.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass

from .records import VideoRecord, check_unique_ids


class _VideoFinder:
    """Index of the files under a video directory, by file name and by stem."""

    def __init__(self, video_dir: str | os.PathLike, default_extension: str):
        self.video_dir = os.fspath(video_dir)
        if not os.path.isdir(self.video_dir):
            raise FileNotFoundError(f"Video directory not found: {self.video_dir}")
        self.default_extension = default_extension
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, str] = {}
        for root, _, files in os.walk(self.video_dir):
            for name in sorted(files):
                path = os.path.join(root, name)
                self.by_name.setdefault(name, path)
                self.by_stem.setdefault(os.path.splitext(name)[0], path)

    def find(self, *names: str, expected: str | None = None) -> str:
        """The first file named (or with the stem) `names[i]`; else `expected`, or `<dir>/<names[0]><ext>`."""
        for name in names:
            path = self.by_name.get(name) or self.by_stem.get(name)
            if path is not None:
                return path
        return expected or os.path.join(self.video_dir, names[0] + self.default_extension)


def _require(directory: str | os.PathLike, name: str) -> str:
    path = os.path.join(os.fspath(directory), name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Annotation file not found: {path}")
    return path


def _check_split(benchmark: str, split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise ValueError(f"`split` for {benchmark} must be one of {splits}; got {split!r}.")


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as file:
        return [line.strip() for line in file if line.strip()]


def _read_json(path: str):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _finish(records: list[VideoRecord]) -> list[VideoRecord]:
    check_unique_ids(records)
    return records


# --- MSR-VTT -------------------------------------------------------------------------------------------------


def read_msrvtt(
    annotations_dir: str | os.PathLike, video_dir: str | os.PathLike, split: str = "test"
) -> list[VideoRecord]:
    """Read MSR-VTT: the 9k or 7k training videos with their 20 captions each, or the 1k-A test set.

    Args:
        annotations_dir (`str` or `os.PathLike`):
            Holds `MSRVTT_data.json` and the CLIP4Clip split files `MSRVTT_train.9k.csv`, `MSRVTT_train.7k.csv`
            (column `video_id`) and `MSRVTT_JSFUSION_test.csv` (columns `key,vid_key,video_id,sentence`).
        video_dir (`str` or `os.PathLike`):
            Holds `video0.mp4` ... `video9999.mp4` (any sub-directory).
        split (`str`, *optional*, defaults to `"test"`):
            `"train_9k"`, `"train_7k"` or `"test"` (1k-A: 1,000 videos, one caption each).

    Returns:
        `list[VideoRecord]`.
    """
    _check_split("msrvtt", split, ("train_9k", "train_7k", "test"))
    finder = _VideoFinder(video_dir, ".mp4")
    if split == "test":
        with open(_require(annotations_dir, "MSRVTT_JSFUSION_test.csv"), newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
        return _finish(
            [VideoRecord(finder.find(row["video_id"]), (row["sentence"],), row["video_id"], "test") for row in rows]
        )
    split_file = "MSRVTT_train.9k.csv" if split == "train_9k" else "MSRVTT_train.7k.csv"
    with open(_require(annotations_dir, split_file), newline="", encoding="utf-8") as file:
        video_ids = list(dict.fromkeys(row["video_id"] for row in csv.DictReader(file)))
    captions: dict[str, list[str]] = {}
    for sentence in _read_json(_require(annotations_dir, "MSRVTT_data.json"))["sentences"]:
        captions.setdefault(sentence["video_id"], []).append(sentence["caption"])
    missing = [video_id for video_id in video_ids if video_id not in captions]
    if missing:
        raise ValueError(f"MSRVTT_data.json has no captions for {len(missing)} videos of {split_file}: {missing[:5]}")
    return _finish(
        [VideoRecord(finder.find(video_id), tuple(captions[video_id]), video_id, "train") for video_id in video_ids]
    )


# --- MSVD ----------------------------------------------------------------------------------------------------


class _CaptionsUnpickler(pickle.Unpickler):
    """`raw-captions.pkl` holds only dicts, lists and strings: refuse anything that would import code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"raw-captions.pkl must hold plain data; it references {module}.{name}.")


def read_msvd(
    annotations_dir: str | os.PathLike, video_dir: str | os.PathLike, split: str = "test"
) -> list[VideoRecord]:
    """Read MSVD, a multi-caption benchmark (about 40 captions per video).

    Args:
        annotations_dir (`str` or `os.PathLike`):
            Holds `train_list.txt` / `val_list.txt` / `test_list.txt` (one video id per line) and the captions:
            CLIP4Clip's `raw-captions.pkl` (video id -> list of tokenised captions), X-Pool's `captions_msvd.json`
            (video id -> list of caption strings), or the corpus' `AllVideoDescriptions.txt` (`<video id>
            <caption>` per line, `#` comments), looked for in that order.
        video_dir (`str` or `os.PathLike`):
            Holds `<video id>.avi` (the YouTubeClips folder).
        split (`str`, *optional*, defaults to `"test"`):
            `"train"`, `"val"` or `"test"`.

    Returns:
        `list[VideoRecord]`, every caption of every video.
    """
    _check_split("msvd", split, ("train", "val", "test"))
    video_ids = _read_lines(_require(annotations_dir, f"{split}_list.txt"))
    pickle_path = os.path.join(os.fspath(annotations_dir), "raw-captions.pkl")
    json_path = os.path.join(os.fspath(annotations_dir), "captions_msvd.json")
    text_path = os.path.join(os.fspath(annotations_dir), "AllVideoDescriptions.txt")
    if os.path.isfile(pickle_path):
        with open(pickle_path, "rb") as file:
            raw = _CaptionsUnpickler(file).load()
        captions = {video_id: [" ".join(tokens) for tokens in caption_list] for video_id, caption_list in raw.items()}
    elif os.path.isfile(json_path):
        captions = _read_json(json_path)
    elif os.path.isfile(text_path):
        captions = {}
        for line in _read_lines(text_path):
            if not line.startswith("#"):  # "<video id> <caption>", after a commented header
                video_id, _, caption = line.partition(" ")
                captions.setdefault(video_id, []).append(caption.strip())
    else:
        raise FileNotFoundError(
            f"MSVD captions not found: expected {pickle_path} (CLIP4Clip), {json_path} (X-Pool) or {text_path} "
            "(the corpus' own file)."
        )
    missing = [video_id for video_id in video_ids if not captions.get(video_id)]
    if missing:
        raise ValueError(f"No MSVD captions for {len(missing)} videos of {split}_list.txt: {missing[:5]}")
    finder = _VideoFinder(video_dir, ".avi")
    return _finish(
        [VideoRecord(finder.find(video_id), tuple(captions[video_id]), video_id, split) for video_id in video_ids]
    )


# --- DiDeMo --------------------------------------------------------------------------------------------------


def read_didemo(
    annotations_dir: str | os.PathLike, video_dir: str | os.PathLike, split: str = "test"
) -> list[VideoRecord]:
    """Read DiDeMo for paragraph retrieval: each video's descriptions joined into one caption.

    Args:
        annotations_dir (`str` or `os.PathLike`):
            Holds `{split}_data.json` (a list of moments with `video` and `description`) and, optionally,
            `{split}_list.txt` (the videos to keep, one file name per line, as CLIP4Clip ships it).
        video_dir (`str` or `os.PathLike`):
            Holds the videos, named as in the annotations (e.g. `<id>.mov`, or re-encoded `<id>.mp4`).
        split (`str`, *optional*, defaults to `"test"`):
            `"train"`, `"val"` or `"test"`.

    Returns:
        `list[VideoRecord]`, one paragraph caption per video.
    """
    _check_split("didemo", split, ("train", "val", "test"))
    paragraphs: dict[str, list[str]] = {}
    for moment in _read_json(_require(annotations_dir, f"{split}_data.json")):
        paragraphs.setdefault(moment["video"], []).append(moment["description"].strip())
    list_path = os.path.join(os.fspath(annotations_dir), f"{split}_list.txt")
    video_ids = _read_lines(list_path) if os.path.isfile(list_path) else list(paragraphs)
    finder = _VideoFinder(video_dir, "")
    return _finish(
        [
            VideoRecord(
                finder.find(video_id, os.path.splitext(video_id)[0]),
                (" ".join(paragraphs[video_id]),),
                video_id,
                split,
            )
            for video_id in video_ids
            if video_id in paragraphs
        ]
    )


# --- ActivityNet Captions ------------------------------------------------------------------------------------


def read_activitynet(
    annotations_dir: str | os.PathLike, video_dir: str | os.PathLike, split: str = "val_1"
) -> list[VideoRecord]:
    """Read ActivityNet Captions for paragraph retrieval (evaluated on `val_1`).

    Args:
        annotations_dir (`str` or `os.PathLike`):
            Holds `train.json` / `val_1.json` (video key such as `v_QOlSCBRmfWY` -> `{"duration", "timestamps",
            "sentences"}`) and, optionally, `train_ids.json` / `val_ids.json` (the keys to keep).
        video_dir (`str` or `os.PathLike`):
            Holds the videos, named by key (`v_QOlSCBRmfWY.mp4`) or by YouTube id (`QOlSCBRmfWY.mp4`).
        split (`str`, *optional*, defaults to `"val_1"`):
            `"train"` or `"val_1"`.

    Returns:
        `list[VideoRecord]`, one paragraph caption per video (its sentences joined).
    """
    _check_split("activitynet", split, ("train", "val_1"))
    annotations = _read_json(_require(annotations_dir, f"{split}.json"))
    ids_path = os.path.join(os.fspath(annotations_dir), "train_ids.json" if split == "train" else "val_ids.json")
    keys = list(dict.fromkeys(_read_json(ids_path))) if os.path.isfile(ids_path) else list(annotations)
    finder = _VideoFinder(video_dir, ".mp4")
    records = []
    for key in keys:
        if key not in annotations:
            continue
        youtube_id = key[2:] if key.startswith("v_") else key
        paragraph = " ".join(sentence.strip() for sentence in annotations[key]["sentences"])
        records.append(
            VideoRecord(finder.find(key, youtube_id), (paragraph,), key, "train" if split == "train" else "val")
        )
    return _finish(records)


# --- LSMDC ---------------------------------------------------------------------------------------------------

_LSMDC_FILES = {
    "train": "LSMDC16_annos_training.csv",
    "val": "LSMDC16_annos_val.csv",
    "test": "LSMDC16_challenge_1000_publictect.csv",
}


def read_lsmdc(
    annotations_dir: str | os.PathLike, video_dir: str | os.PathLike, split: str = "test"
) -> list[VideoRecord]:
    """Read LSMDC (movie description); the test split is the 1,000-clip challenge set.

    Args:
        annotations_dir (`str` or `os.PathLike`):
            Holds the tab-separated files `LSMDC16_annos_training.csv`, `LSMDC16_annos_val.csv` and
            `LSMDC16_challenge_1000_publictect.csv`: `clip_id, start_aligned, end_aligned, start_extracted,
            end_extracted, sentence` on each line, no header.
        video_dir (`str` or `os.PathLike`):
            Holds `<movie>/<clip_id>.avi` (e.g. `1001_Flight/1001_Flight_00.00.45.153-00.00.50.427.avi`).
        split (`str`, *optional*, defaults to `"test"`):
            `"train"`, `"val"` or `"test"`.

    Returns:
        `list[VideoRecord]`; a clip that appears on several lines gets all their sentences.
    """
    _check_split("lsmdc", split, tuple(_LSMDC_FILES))
    path = _require(annotations_dir, _LSMDC_FILES[split])
    captions: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t", 5)
            if len(fields) != 6:
                raise ValueError(
                    f"{path}, line {line_number}: expected 6 tab-separated fields (clip id, 4 times, sentence); "
                    f"got {len(fields)}."
                )
            captions.setdefault(fields[0], []).append(fields[5].strip())
    finder = _VideoFinder(video_dir, ".avi")
    records = []
    for clip_id, sentences in captions.items():
        movie = clip_id.rsplit("_", 1)[0]
        expected = os.path.join(finder.video_dir, movie, clip_id + ".avi")
        records.append(VideoRecord(finder.find(clip_id, expected=expected), tuple(sentences), clip_id, split))
    return _finish(records)


# --- registry ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    """A benchmark reader with the split names it accepts.

    Args:
        name (`str`):
            Short name, as the `vop` command line takes it.
        reader (`Callable`):
            `reader(annotations_dir, video_dir, split) -> list[VideoRecord]`.
        splits (`tuple[str, ...]`):
            Accepted split names.
        test_split (`str`):
            The split papers report retrieval results on.
    """

    name: str
    reader: Callable[..., list[VideoRecord]]
    splits: tuple[str, ...]
    test_split: str


BENCHMARKS: dict[str, Benchmark] = {
    benchmark.name: benchmark
    for benchmark in (
        Benchmark("msrvtt", read_msrvtt, ("train_9k", "train_7k", "test"), "test"),
        Benchmark("msvd", read_msvd, ("train", "val", "test"), "test"),
        Benchmark("didemo", read_didemo, ("train", "val", "test"), "test"),
        Benchmark("activitynet", read_activitynet, ("train", "val_1"), "val_1"),
        Benchmark("lsmdc", read_lsmdc, ("train", "val", "test"), "test"),
    )
}


def read_benchmark(
    name: str, annotations_dir: str | os.PathLike, video_dir: str | os.PathLike, split: str | None = None
) -> list[VideoRecord]:
    """Read a benchmark by name (`msrvtt`, `msvd`, `didemo`, `activitynet`, `lsmdc`).

    Args:
        name (`str`):
            Benchmark name.
        annotations_dir (`str` or `os.PathLike`):
            Directory with the benchmark's annotation files.
        video_dir (`str` or `os.PathLike`):
            Directory with its videos.
        split (`str`, *optional*):
            Split name; defaults to the benchmark's test split.

    Returns:
        `list[VideoRecord]`.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}.")
    benchmark = BENCHMARKS[name]
    return benchmark.reader(annotations_dir, video_dir, split or benchmark.test_split)
