"""A search page for a `VideoIndex` (Gradio; the optional `app` extra): a query box, a text->video or video->video
switch, and a grid of hits, each with a thumbnail of its segment and a player that plays that segment."""

from __future__ import annotations

import base64
import bisect
import functools
import html
import io
import os
from typing import Any
from urllib.parse import quote

from ..data.decoding import VideoDecodeError, VideoReader
from .index import IndexEntry, SearchHit, VideoIndex


THUMBNAIL_WIDTH = 240
_STYLE = """
<style>
#results .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
#results .hit { border: 1px solid #ddd; border-radius: 8px; padding: 8px; }
#results .hit img.thumb { width: 100%; border-radius: 4px; display: block; }
#results .hit video { width: 100%; margin-top: 6px; }
#results .hit .caption { font-size: 0.85em; word-break: break-all; margin-top: 4px; }
</style>
"""


@functools.lru_cache(maxsize=1024)
def thumbnail(path: str, start: float | None, end: float | None, mtime_ns: int) -> str:
    """A JPEG data URL of the frame in the middle of the entry's segment (`mtime_ns` keys the cache)."""
    from PIL import Image

    with VideoReader(path) as reader:
        times = reader.frame_times
        middle = (start + end) / 2 if start is not None else reader.duration / 2
        position = min(bisect.bisect_left(times, middle), len(times) - 1)
        frames, _ = reader.read_frames([position], on_unreadable="repeat")
    image = Image.fromarray(frames[0])
    image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def segment_url(entry: IndexEntry) -> str:
    """The URL that plays the entry's segment: the video file served by Gradio with a media fragment `#t=`."""
    fragment = "" if entry.start is None else f"#t={entry.start:g},{entry.end:g}"
    return f"/gradio_api/file={quote(entry.path)}{fragment}"


def render_hits(hits: list[SearchHit], query: str) -> str:
    """The results grid as HTML: one card per hit with its thumbnail, score, file, times and a player."""
    cards = []
    for hit in hits:
        entry = hit.entry
        try:
            image = f'<img class="thumb" alt="thumbnail" src="{thumbnail(entry.path, entry.start, entry.end, entry.mtime_ns)}">'
        except (VideoDecodeError, OSError) as error:
            image = f'<div class="thumb-missing">no thumbnail ({html.escape(str(error))})</div>'
        times = "" if entry.start is None else f" [{entry.start:.1f}s - {entry.end:.1f}s]"
        cards.append(
            f'<div class="hit" data-rank="{hit.rank}">{image}'
            f'<div class="caption"><b>#{hit.rank}</b> {hit.score:+.3f} {html.escape(entry.id)}{times}</div>'
            f'<video controls preload="metadata" src="{html.escape(segment_url(entry))}"></video></div>'
        )
    count = f'<p class="count">{len(hits)} results for {html.escape(query)}</p>'
    return _STYLE + count + '<div class="grid">' + "".join(cards) + "</div>"


def build_app(index: VideoIndex, k: int = 12) -> Any:
    """The Gradio page for `index`.

    Args:
        index (`VideoIndex`):
            The index to search.
        k (`int`, *optional*, defaults to 12):
            Default number of results.

    Returns:
        `gradio.Blocks`; serve it with `.launch(allowed_paths=video_folders(index))`.
    """
    try:
        import gradio as gr
    except ImportError as error:
        raise ImportError(
            "The search page needs gradio: `pip install peft-vop[app]` (or `pip install gradio`)."
        ) from error

    def search(query: str, video_mode: bool, upload: str | None, count: float) -> str:
        count = int(count)
        if video_mode:
            path = upload or (query or "").strip()
            if not path or not os.path.isfile(path):
                return f'<p class="error">Video not found: {html.escape(path or "(none)")}</p>'
            return render_hits(index.search(video=path, k=count), f"videos like {os.path.basename(path)}")
        if not (query or "").strip():
            return '<p class="error">Type a query.</p>'
        return render_hits(index.search(text=query, k=count), f'"{query.strip()}"')

    with gr.Blocks(title="peft-vop video search") as page:
        gr.Markdown(f"## Search {len(index)} indexed videos\nIndex: `{index.directory}`")
        with gr.Row():
            query = gr.Textbox(label="Query (text, or a video path in video → video mode)", elem_id="query", scale=4)
            count = gr.Number(value=k, minimum=1, maximum=100, precision=0, label="Results", elem_id="count", scale=1)
        with gr.Row():
            video_mode = gr.Checkbox(label="video → video (find videos like a video)", elem_id="video-mode")
            upload = gr.File(label="Query video (video → video)", file_types=["video"], type="filepath")
        button = gr.Button("Search", variant="primary", elem_id="search")
        results = gr.HTML(elem_id="results")
        inputs = [query, video_mode, upload, count]
        button.click(search, inputs, results)
        query.submit(search, inputs, results)
    return page


def video_folders(index: VideoIndex) -> list[str]:
    """The folders holding the indexed videos, which the page must be allowed to serve."""
    return sorted({os.path.dirname(entry.path) for entry in index.entries})
