"""`vop search`: query an index built by `vop index` with text, or with a video (`--like`).

Example::

    vop search my_index "a dog catches a frisbee" -k 10
    vop search my_index --like my_videos/dog.mp4 --json
"""

from __future__ import annotations

import argparse
import json
import sys

from .arguments import spellings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `vop search` options."""
    parser.add_argument("index", metavar="INDEX", help="index directory built by `vop index`")
    parser.add_argument("query", nargs="?", metavar="QUERY", help="text query")
    parser.add_argument("--like", metavar="VIDEO", help="find videos similar to this video file instead")
    parser.add_argument("-k", *spellings("top_k"), dest="k", type=int, default=10, help="number of results")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        *spellings("model_name_or_path", "--model"),
        dest="model_name_or_path",
        metavar="PATH_OR_ID",
        help="must be the index's model (checked; default: the index's)",
    )
    parser.add_argument(
        *spellings("adapter_name_or_path", "--adapter"),
        dest="adapter_name_or_path",
        metavar="PATH_OR_ID",
        help="must be the index's adapter (checked)",
    )
    parser.add_argument("--backend", choices=("exact", "faiss"), default="exact", help="exact or approximate FAISS")
    parser.add_argument("--nprobe", type=int, default=32, help="FAISS clusters visited per query")
    parser.add_argument("--device", help="torch device for the query (default: cuda if available)")


def run(args: argparse.Namespace) -> int:
    """Print the ranked results."""
    from ..search import VideoIndex

    if (args.query is None) == (args.like is None):
        print("vop search: error: give a text QUERY or --like VIDEO (exactly one)", file=sys.stderr)
        return 2
    try:
        index = VideoIndex.load(
            args.index,
            backend=args.backend,
            nprobe=args.nprobe,
            model=args.model_name_or_path,
            adapter=args.adapter_name_or_path,
            device=args.device,
        )
        hits = index.search(text=args.query, video=args.like, k=args.k)
    except (ValueError, OSError, ImportError) as error:
        print(f"vop search: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=2))
        return 0
    for hit in hits:
        window = "" if hit.entry.start is None else f"  [{hit.entry.start:.1f}s - {hit.entry.end:.1f}s]"
        print(f"{hit.rank:>3}  {hit.score:+.4f}  {hit.entry.path}{window}")
    return 0
