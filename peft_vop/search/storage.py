"""The files of an index: the chunks of a running build, and the committed generation."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._atomic import write_bytes
from .videos import IndexEntry


FORMAT_VERSION = 1
PARTIAL = ".partial"


def write_part(directory: Path, fingerprint_hash: str, rows: list[dict], vectors: list[torch.Tensor], rank: int):
    """A finished chunk of a running build, one safetensors file (rows in its header), written atomically."""
    from safetensors.torch import save

    tensors = {"embeddings": torch.stack(vectors) if vectors else torch.empty(0)}
    metadata = {"fingerprint": fingerprint_hash, "rows": json.dumps(rows)}
    name = f"part-{rank:03d}-{time.time_ns()}-{uuid.uuid4().hex[:6]}.safetensors"
    write_bytes(directory / name, save(tensors, metadata=metadata))


def read_parts(directory: Path, fingerprint_hash: str) -> tuple[dict[tuple, tuple[IndexEntry, torch.Tensor]], dict]:
    """Entries (and skipped videos) finished by this build or an interrupted one with the same fingerprint."""
    from safetensors import safe_open

    done: dict[tuple, tuple[IndexEntry, torch.Tensor]] = {}
    skipped: dict[tuple, dict] = {}
    if not directory.is_dir():
        return done, skipped
    for part in sorted(directory.glob("part-*.safetensors")):
        with safe_open(part, framework="pt") as file:
            metadata = file.metadata()
            if metadata.get("fingerprint") != fingerprint_hash:
                continue
            rows = json.loads(metadata["rows"])
            embeddings = file.get_tensor("embeddings")
        position = 0
        for row in rows:
            if "reason" in row:
                skipped[(row["path"], row["size"], row["mtime_ns"])] = row
                continue
            entry = IndexEntry(**row)
            done[entry.key] = (entry, embeddings[position])
            position += 1
    return done, skipped


def write_index(
    output: Path,
    generation: int,
    entries: list[IndexEntry],
    embeddings: torch.Tensor,
    fingerprint: dict[str, Any],
    source: str | os.PathLike,
) -> None:
    """Commit a generation: its embeddings and metadata files, then `index.json` (the atomic switch), then delete the
    files of older generations."""
    from safetensors.torch import save

    embeddings_name = f"embeddings-{generation:06d}.safetensors"
    metadata_name = f"metadata-{generation:06d}.jsonl"
    write_bytes(output / embeddings_name, save({"embeddings": embeddings.contiguous()}))
    write_bytes(output / metadata_name, "".join(json.dumps(asdict(entry)) + "\n" for entry in entries).encode())
    info = {
        "format": FORMAT_VERSION,
        "generation": generation,
        "count": len(entries),
        "embedding_dim": int(embeddings.shape[1]),
        "embeddings": embeddings_name,
        "metadata": metadata_name,
        "source": os.path.abspath(source),
        "fingerprint": fingerprint,
    }
    write_bytes(output / "index.json", (json.dumps(info, indent=2) + "\n").encode())  # the commit point
    for stale in (*output.glob("embeddings-*.safetensors"), *output.glob("metadata-*.jsonl")):
        if stale.name not in (embeddings_name, metadata_name):
            stale.unlink()
