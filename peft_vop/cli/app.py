"""`vop app`: serve a search page for an index built by `vop index` (needs the `app` extra: gradio).

Example::

    vop app my_index --port 7860
"""

from __future__ import annotations

import argparse
import os
import sys

from .arguments import spellings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `vop app` options."""
    parser.add_argument("index", metavar="INDEX", help="index directory built by `vop index`")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7860, help="port")
    parser.add_argument("-k", *spellings("top_k"), dest="k", type=int, default=12, help="default number of results")
    parser.add_argument(
        "--backend", choices=("exact", "faiss"), default="exact", help="exact (default) or approximate FAISS"
    )
    parser.add_argument("--device", help="torch device for queries (default: cuda if available)")


def run(args: argparse.Namespace) -> int:
    """Serve the page until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page works offline; send nothing out
    try:
        from ..search import VideoIndex
        from ..search.app import build_app, video_folders

        index = VideoIndex.load(args.index, backend=args.backend, device=args.device)
        page = build_app(index, k=args.k)
    except (ValueError, ImportError) as error:
        print(f"vop app: error: {error}", file=sys.stderr)
        return 2
    print(f"Serving {len(index)} entries of {args.index} on http://{args.host}:{args.port}", flush=True)
    page.launch(server_name=args.host, server_port=args.port, allowed_paths=video_folders(index), show_error=True)
    return 0
