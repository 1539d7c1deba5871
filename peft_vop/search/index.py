"""A searchable index of your own videos, embedded exactly as `vop eval` embeds them.

Building: SOURCE (a folder, searched recursively, or an annotation file) -> one `VideoRecord` per video -> one entry
per video, or per window of `window` seconds every `stride` seconds -> `VideoTextDataset` (the same sampling,
decoding and center crop as `vop eval`) -> `VideoTextCollator` -> `embed_videos` -> unit-norm rows `[N, P]`.

An index is a directory::

    index.json                         format, fingerprint (model + adapter + frame settings), row count, file names
    embeddings-000003.safetensors      "embeddings": float32 [N, P], unit norm
    metadata-000003.jsonl              one row per entry: id, path, start, end, duration, size, mtime_ns
    .partial/                          only while a build runs: finished chunks, so an interrupted build resumes

`index.json` is the commit point: the data files of a new generation are written first, then `index.json` is
replaced atomically, then the old generation is deleted. A reader therefore never sees half an index.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .._atomic import clean_up
from ..data.decoding import VideoDecodeError, VideoReader
from ..families import embedding_size
from ..retrieval.encoding import encode_texts
from .backends import ExactBackend, FaissBackend
from .model import (
    LoadedModel,
    checkpoint_identity,
    comparable_fingerprint,
    describe_checkpoint,
    fingerprint_hash_of,
    load_model,
    same_checkpoint,
)
from .storage import FORMAT_VERSION, PARTIAL, read_parts, write_index, write_part
from .videos import IndexEntry, collect_videos, embed_entries, embedding_batches, window_bounds


BACKENDS: tuple[str, ...] = ("exact", "faiss")


@dataclass(frozen=True)
class SearchHit:
    """One result of `VideoIndex.search`.

    Args:
        rank (`int`):
            1 for the best match.
        score (`float`):
            Cosine similarity between the query and the entry.
        entry (`IndexEntry`):
            The matching video or window.
    """

    rank: int
    score: float
    entry: IndexEntry

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form: rank, score and the entry's fields."""
        return {"rank": self.rank, "score": self.score, **asdict(self.entry)}


@dataclass
class BuildReport:
    """What a build did.

    Args:
        embedded (`int`):
            Entries embedded in this run.
        reused (`int`):
            Entries kept from the previous index (their video is unchanged).
        resumed (`int`):
            Entries taken from the saved chunks of an interrupted build.
        removed (`int`):
            Entries dropped because their video changed or is gone.
        skipped (`list[dict]`):
            Videos that could not be read (`path`, `reason`), left out of the index.
        seconds (`float`):
            Wall time of the build.
    """

    embedded: int = 0
    reused: int = 0
    resumed: int = 0
    removed: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One paragraph for the command line."""
        lines = [
            f"{self.embedded} entries embedded, {self.reused} unchanged, {self.resumed} resumed from an interrupted "
            f"build, {self.removed} removed in {self.seconds:.1f} s."
        ]
        if self.skipped:
            lines.append(f"{len(self.skipped)} videos could not be read and were skipped:")
            lines.extend(f"  {item['path']}: {item['reason']}" for item in self.skipped)
        return "\n".join(lines)


class VideoIndex:
    """Video embeddings with one metadata row each, searchable by text or by video.

    Build one with `VideoIndex.build` (or `vop index`), open one with `VideoIndex.load` (or `vop search`).

    Args:
        directory (`str` or `os.PathLike`):
            Where the index lives.
        entries (`list[IndexEntry]`):
            One per row of `embeddings`.
        embeddings (`torch.FloatTensor` of shape `[N, P]`):
            Unit-norm video embeddings.
        info (`dict`):
            The contents of `index.json` (fingerprint, settings).
        backend (`str`, *optional*, defaults to `"exact"`):
            `"exact"` (chunked matrix product) or `"faiss"` (approximate, IVF; needs `faiss-cpu`).
        nprobe (`int`, *optional*, defaults to 32):
            With `backend="faiss"`: inverted lists visited per query (more: better recall, slower).

    Example:

    ```python
    >>> from peft_vop.search import VideoIndex
    >>> index = VideoIndex.build("my_videos/", "my_index", model="openai/clip-vit-base-patch32")  # doctest: +SKIP
    >>> for hit in index.search(text="a dog catches a frisbee", k=5):  # doctest: +SKIP
    ...     print(hit.rank, round(hit.score, 3), hit.entry.path, hit.entry.start, hit.entry.end)
    ```
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        entries: list[IndexEntry],
        embeddings: torch.Tensor,
        info: dict[str, Any],
        *,
        backend: str = "exact",
        nprobe: int = 32,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"`backend` must be one of {BACKENDS}; got {backend!r}.")
        if len(entries) != embeddings.shape[0]:
            raise ValueError(f"{len(entries)} metadata rows for {embeddings.shape[0]} embeddings in {directory}.")
        self.directory = Path(directory)
        self.entries = entries
        self.embeddings = embeddings
        self.info = info
        self.build_report: BuildReport | None = None
        self._backend = FaissBackend(embeddings, nprobe=nprobe) if backend == "faiss" else ExactBackend(embeddings)
        self._loaded: LoadedModel | None = None
        self._device: str | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def fingerprint(self) -> dict[str, Any]:
        """Model, adapter, frame settings and windows the index was built with."""
        return self.info["fingerprint"]

    # --- loading --------------------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        *,
        backend: str = "exact",
        nprobe: int = 32,
        model: str | None = None,
        adapter: str | None = None,
        device: str | None = None,
    ) -> VideoIndex:
        """Open an index.

        Args:
            directory (`str` or `os.PathLike`):
                An index written by `VideoIndex.build` / `vop index`.
            backend (`str`, *optional*, defaults to `"exact"`):
                `"exact"` or `"faiss"`.
            nprobe (`int`, *optional*, defaults to 32):
                FAISS inverted lists visited per query.
            model (`str`, *optional*):
                The model to embed queries with; must be the index's own (refused otherwise, naming both).
                Defaults to the index's.
            adapter (`str`, *optional*):
                Likewise for the adapter. With `model` given and `adapter` left out, the query has no adapter.
            device (`str`, *optional*):
                Device for query embeddings; defaults to CUDA when available.

        Returns:
            `VideoIndex`.
        """
        from safetensors.torch import load_file

        directory = Path(directory)
        info_path = directory / "index.json"
        if not info_path.is_file():
            raise ValueError(
                f"`directory` {directory} is not a video index (no index.json; build one with vop index)."
            )
        info = json.loads(info_path.read_text())
        if info.get("format") != FORMAT_VERSION:
            raise ValueError(f"{directory}: index format {info.get('format')} is not {FORMAT_VERSION}.")
        embeddings = load_file(directory / info["embeddings"])["embeddings"]
        with open(directory / info["metadata"], encoding="utf-8") as file:
            entries = [IndexEntry(**json.loads(line)) for line in file if line.strip()]
        index = cls(directory, entries, embeddings, info, backend=backend, nprobe=nprobe)
        if model is not None or adapter is not None:
            index._check_query_model(model or info["fingerprint"]["model"]["reference"], adapter)
        index._device = device
        return index

    def _check_query_model(self, model: str, adapter: str | None) -> None:
        ours = self.fingerprint
        theirs = {"model": checkpoint_identity(model), "adapter": checkpoint_identity(adapter)}
        if not (
            same_checkpoint(ours["model"], theirs["model"]) and same_checkpoint(ours["adapter"], theirs["adapter"])
        ):
            raise ValueError(
                f"This index was built with model {describe_checkpoint(ours['model'])} and adapter "
                f"{describe_checkpoint(ours['adapter'])}; the query asks for model {describe_checkpoint(theirs['model'])} and adapter "
                f"{describe_checkpoint(theirs['adapter'])}. Queries must be embedded by the index's own model and adapter."
            )

    def _query_model(self) -> LoadedModel:
        if self._loaded is None:
            fingerprint = self.fingerprint
            adapter = fingerprint["adapter"]
            self._loaded = load_model(
                fingerprint["model"]["reference"],
                adapter["reference"] if adapter else None,
                num_frames=fingerprint["frames"]["num_frames"],
                device=self._device,
                dtype=fingerprint["dtype"],
            )
            # The checkpoint at the recorded place may have changed since the build.
            self._check_query_model(fingerprint["model"]["reference"], adapter["reference"] if adapter else None)
        return self._loaded

    # --- searching ------------------------------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm query embeddings `[Q, P]` of captions, by the index's own model."""
        loaded = self._query_model()
        embeddings = encode_texts(
            loaded.model, loaded.tokenizer, list(texts), max_length=loaded.max_length, progress=False
        )
        return torch.nn.functional.normalize(embeddings, dim=-1)

    def embed_video(self, path: str | os.PathLike) -> torch.Tensor:
        """The embedding `[P]` of a whole video file, by the index's own model and frame settings."""
        loaded = self._query_model()
        stat = os.stat(path)
        entry = IndexEntry(str(path), os.path.abspath(path), None, None, 0.0, stat.st_size, stat.st_mtime_ns)
        embeddings, skipped = embed_entries(loaded, [entry], batch_size=1, num_workers=0, on_error="raise")
        return embeddings[0]

    def search(
        self,
        text: str | None = None,
        video: str | os.PathLike | None = None,
        k: int = 10,
        *,
        embedding: torch.Tensor | None = None,
    ) -> list[SearchHit]:
        """The `k` entries closest to a query, best first.

        Exactly one of `text`, `video` and `embedding` is given.

        Args:
            text (`str`, *optional*):
                A caption-like query, embedded by the index's model and adapter.
            video (`str` or `os.PathLike`, *optional*):
                A video file: finds similar videos (the file itself, when indexed, comes first).
            k (`int`, *optional*, defaults to 10):
                Number of results (fewer when the index is smaller).
            embedding (`torch.FloatTensor` of shape `[P]`, *optional*):
                A query embedding computed elsewhere, by the same model.

        Returns:
            `list[SearchHit]`.
        """
        given = [
            name for name, value in (("text", text), ("video", video), ("embedding", embedding)) if value is not None
        ]
        if len(given) != 1:
            raise ValueError(f"Give exactly one of `text`, `video` and `embedding`; got {given or 'none'}.")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive integer; got {k!r}.")
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"`text` must be a non-empty string; got {text!r}.")
            query = self.embed_text([text])[0]
        elif video is not None:
            query = self.embed_video(video)
        else:
            query = torch.nn.functional.normalize(embedding.float().flatten(), dim=-1)
        if query.shape[-1] != self.embeddings.shape[1]:
            raise ValueError(f"The query has {query.shape[-1]} dimensions; the index has {self.embeddings.shape[1]}.")
        scores, rows = self._backend.search(query[None], min(k, len(self.entries)))
        return [
            SearchHit(rank + 1, float(score), self.entries[row])
            for rank, (score, row) in enumerate(zip(scores[0].tolist(), rows[0].tolist()))
            if row >= 0
        ]

    # --- building -------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        source: str | os.PathLike,
        output: str | os.PathLike,
        *,
        model: str,
        adapter: str | None = None,
        num_frames: int | None = None,
        window: float | None = None,
        stride: float | None = None,
        split: str | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        device: str | None = None,
        dtype: str = "float32",
        on_error: str = "skip",
        overwrite: bool = False,
        flush_every: int = 64,
        progress: bool = True,
    ) -> VideoIndex:
        """Embed every video of `source` into an index at `output`, reusing what an earlier build left there.

        Unchanged videos (same size and modification time) keep their embeddings, changed ones are embedded again,
        deleted ones are dropped, and chunks finished by an interrupted build are reused. Under `accelerate launch`
        every process embeds its share of the new entries and the main process writes the index.

        Args:
            source (`str` or `os.PathLike`):
                A folder of videos (searched recursively) or an annotation file in the generic format.
            output (`str` or `os.PathLike`):
                The index directory (created if needed).
            model (`str`):
                CLIP checkpoint directory or Hub id.
            adapter (`str`, *optional*):
                VoP adapter; none: zero-shot CLIP.
            num_frames (`int`, *optional*):
                Frames per entry; defaults to the adapter's, else 12 (as `vop eval`).
            window (`float`, *optional*):
                Index windows of this many seconds instead of whole videos.
            stride (`float`, *optional*):
                Seconds between window starts; defaults to `window`.
            split (`str`, *optional*):
                With an annotation file, index only this split.
            batch_size (`int`, *optional*, defaults to 16):
                Entries per forward pass.
            num_workers (`int`, *optional*, defaults to 0):
                DataLoader workers decoding videos.
            device (`str`, *optional*):
                Defaults to the process's accelerator device (CUDA when available).
            dtype (`str`, *optional*, defaults to `"float32"`):
                Model weights.
            on_error (`str`, *optional*, defaults to `"skip"`):
                `"skip"` leaves unreadable videos out (listed in the report); `"repair"` repeats the last good frame
                for unreadable frames; `"raise"` stops at the first one.
            overwrite (`bool`, *optional*, defaults to `False`):
                Replace an index built with other settings instead of refusing.
            flush_every (`int`, *optional*, defaults to 64):
                Entries per saved chunk: at most this much work is lost when a build is interrupted.
            progress (`bool`, *optional*, defaults to `True`):
                Show a progress bar (main process only).

        Returns:
            `VideoIndex`, with `build_report` set (on the main process; other processes return `None`).
        """
        from accelerate import PartialState

        started = time.perf_counter()
        if window is None and stride is not None:
            raise ValueError(f"`stride` ({stride}) needs `window`.")
        if window is not None:
            stride = window if stride is None else stride
            window_bounds(window, window, stride)  # checks both are positive
        for name, value in (("batch_size", batch_size), ("flush_every", flush_every)):
            if value < 1:
                raise ValueError(f"`{name}` must be at least 1; got {value}.")
        # Without CUDA, processes started by `accelerate launch` / `torchrun` form a gloo group only when asked to
        # run on the CPU; otherwise each would build the whole index on its own.
        state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
        loaded = load_model(model, adapter, num_frames=num_frames, device=device or state.device, dtype=dtype)
        fingerprint = {**loaded.fingerprint, "window": {"window": window, "stride": stride}}
        fingerprint_hash = fingerprint_hash_of(comparable_fingerprint(fingerprint))
        output = Path(output)
        partial = output / PARTIAL
        if state.is_main_process:
            # Temporary files of writes that a killed build left behind.
            clean_up(output)
            clean_up(partial)
        state.wait_for_everyone()

        previous: dict[tuple, tuple[IndexEntry, torch.Tensor]] = {}
        generation = 0
        if (output / "index.json").is_file():
            old = cls.load(output)
            generation = old.info["generation"]
            if comparable_fingerprint(old.fingerprint) == comparable_fingerprint(fingerprint):
                previous = {entry.key: (entry, vector) for entry, vector in zip(old.entries, old.embeddings)}
            elif not overwrite:
                raise ValueError(
                    f"`output` {output} holds an index built with other settings ({_settings_difference(old.fingerprint, fingerprint)}); "
                    "pass overwrite=True (--overwrite_output_dir) to replace it."
                )
        elif output.exists() and any(name != PARTIAL for name in os.listdir(output)) and not overwrite:
            raise ValueError(f"`output` {output} exists and is not a video index; choose an empty or new directory.")
        state.wait_for_everyone()  # every process has read the old index before the main one may replace it
        if state.is_main_process:
            partial.mkdir(parents=True, exist_ok=True)
        state.wait_for_everyone()
        finished, known_skipped = read_parts(partial, fingerprint_hash)

        # Plan: which entries the index will hold, and which of them need embedding. Every process plans the same.
        records = collect_videos(source, split)
        planned: list[IndexEntry] = []
        todo: list[IndexEntry] = []
        skipped: list[dict[str, Any]] = []
        durations = {(entry.path, entry.size, entry.mtime_ns): entry.duration for entry, _ in previous.values()}
        durations.update({(entry.path, entry.size, entry.mtime_ns): entry.duration for entry, _ in finished.values()})
        for record in records:
            try:
                stat = os.stat(record.video)
            except OSError as error:
                skipped.append({"path": record.video, "reason": f"cannot be read ({error.strerror})"})
                continue
            version = (record.video, stat.st_size, stat.st_mtime_ns)
            if version in known_skipped:
                skipped.append({"path": record.video, "reason": known_skipped[version]["reason"]})
                continue
            duration = durations.get(version)
            # A new or changed video is opened here only to place its windows; a whole video's length is read by
            # the worker that decodes it (an unreadable video is reported where it is opened).
            if duration is None and window is not None:
                try:
                    with VideoReader(record.video, name=record.video) as reader:
                        duration = round(reader.duration, 6)
                except VideoDecodeError as error:
                    skipped.append({"path": record.video, "reason": error.reason})
                    continue
            bounds = [(None, None)] if window is None else window_bounds(duration, window, stride)
            entries = [
                IndexEntry(record.id, record.video, start, end, duration, stat.st_size, stat.st_mtime_ns)
                for start, end in bounds
            ]
            planned.extend(entries)
            todo.extend(entry for entry in entries if entry.key not in previous and entry.key not in finished)

        # Embed this process's share, saving a part every `flush_every` entries.
        mine = todo[state.process_index :: state.num_processes]
        _embed_and_save(
            loaded, mine, partial, fingerprint_hash, state.process_index,
            batch_size=batch_size, num_workers=num_workers, on_error=on_error, flush_every=flush_every,
            progress=progress and state.is_main_process,
        )  # fmt: skip
        state.wait_for_everyone()
        if not state.is_main_process:
            return None

        resumable = set(finished)
        finished, new_skipped = read_parts(partial, fingerprint_hash)
        skipped_keys = {(row["path"], row["size"], row["mtime_ns"]) for row in new_skipped.values()}
        for row in new_skipped.values():
            if not any(item["path"] == row["path"] for item in skipped):
                skipped.append({"path": row["path"], "reason": row["reason"]})
        rows, vectors = [], []
        for entry in planned:
            found = finished.get(entry.key) or previous.get(entry.key)
            if found is None:
                if (entry.path, entry.size, entry.mtime_ns) in skipped_keys:
                    continue
                raise RuntimeError(f"No embedding was produced for {entry.path} [{entry.start}, {entry.end}].")
            rows.append(found[0])
            vectors.append(found[1])
        embeddings = torch.stack(vectors) if vectors else torch.empty(0, embedding_size(loaded.model.config))
        kept = {entry.key for entry in rows}
        report = BuildReport(
            embedded=sum(entry.key not in previous and entry.key not in resumable for entry in rows),
            reused=sum(entry.key in previous for entry in rows),
            resumed=sum(entry.key in resumable and entry.key not in previous for entry in rows),
            removed=sum(key not in kept for key in previous),
            skipped=sorted(skipped, key=lambda item: item["path"]),
        )
        unchanged = generation > 0 and report.embedded == report.resumed == report.removed == 0
        if not unchanged:
            generation += 1
            write_index(output, generation, rows, embeddings, fingerprint, source)
        for part in partial.glob("*"):
            part.unlink()
        partial.rmdir()
        report.seconds = time.perf_counter() - started
        index = cls.load(output)
        index.build_report = report
        index._loaded = loaded
        return index


def _settings_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    old, new = comparable_fingerprint(old), comparable_fingerprint(new)
    names = [name for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
    return ", ".join(f"{name}: {old.get(name)} -> {new.get(name)}" for name in names)


def _embed_and_save(
    loaded: LoadedModel,
    entries: list[IndexEntry],
    partial: Path,
    fingerprint_hash: str,
    rank: int,
    *,
    batch_size: int,
    num_workers: int,
    on_error: str,
    flush_every: int,
    progress: bool,
) -> None:
    """Embed `entries` and save a part every `flush_every` of them (embedded or skipped) in `partial`."""
    from tqdm.auto import tqdm

    rows: list[dict] = []
    vectors: list[torch.Tensor] = []
    bar = tqdm(total=len(entries), desc="Indexing videos", unit="video", disable=not progress or not entries)
    for video_index, embeddings, skipped, durations in embedding_batches(
        loaded, entries, batch_size=batch_size, num_workers=num_workers, on_error=on_error
    ):
        for position, row, duration in zip(video_index.tolist(), embeddings, durations):
            rows.append(asdict(replace(entries[position], duration=duration)))
            vectors.append(row)
        for item in skipped:
            entry = entries[item["video_index"]]
            rows.append({"path": entry.path, "size": entry.size, "mtime_ns": entry.mtime_ns, "reason": item["reason"]})
        bar.update(len(video_index) + len(skipped))
        if len(rows) >= flush_every:
            write_part(partial, fingerprint_hash, rows, vectors, rank)
            rows, vectors = [], []
    if rows:
        write_part(partial, fingerprint_hash, rows, vectors, rank)
    bar.close()
