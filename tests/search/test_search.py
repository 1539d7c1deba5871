"""`VideoIndex.search` / `vop search`: exact scores, video queries, the model check, exact and FAISS backends."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import CLIPModel

from peft_vop.cli.main import main
from peft_vop.retrieval import encode_texts
from peft_vop.search import ExactBackend, FaissBackend, SearchHit, VideoIndex, load_model


TAIL = "Queries must be embedded by the index's own model and adapter."


@pytest.fixture
def built(video_folder, tmp_path, checkpoint, adapter):
    index = VideoIndex.build(video_folder, tmp_path / "index", model=checkpoint, adapter=adapter, progress=False)
    return index, tmp_path / "index"


def test_text_search_scores_are_cosine_similarities_with_the_index_model(built, checkpoint, adapter, capsys):
    index, directory = built
    assert main(["search", str(directory), "a man rides a bike", "-k", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)

    loaded = load_model(checkpoint, adapter, device="cpu")
    query = encode_texts(loaded.model, loaded.tokenizer, ["a man rides a bike"], progress=False)[0]
    scores = index.embeddings @ torch.nn.functional.normalize(query, dim=0)
    expected = scores.argsort(descending=True)[:3]
    assert [row["path"] for row in results] == [index.entries[row].path for row in expected.tolist()]
    assert [row["rank"] for row in results] == [1, 2, 3]
    assert [row["score"] for row in results] == pytest.approx(scores[expected].tolist(), abs=1e-6)
    assert set(results[0]) == {"rank", "score", "id", "path", "start", "end", "duration", "size", "mtime_ns"}

    hits = index.search(text="a man rides a bike", k=10)
    assert all(isinstance(hit, SearchHit) for hit in hits) and len(hits) == len(index) == 4


def test_a_video_query_finds_the_video_itself_first(built, video_folder, capsys):
    _, directory = built
    assert main(["search", str(directory), "--like", str(video_folder / "bikes.mp4"), "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1" and lines[0].endswith("bikes.mp4")
    assert float(lines[0].split()[1]) == pytest.approx(1.0, abs=1e-5)


def test_a_query_with_another_model_or_adapter_is_refused_naming_both(built, checkpoint, adapter, tmp_path, capsys):
    _, directory = built
    other = tmp_path / "other_clip"
    shutil.copytree(checkpoint, other)
    model = CLIPModel.from_pretrained(other)
    with torch.no_grad():
        model.logit_scale.add_(1.0)
    model.save_pretrained(other)

    assert main(["search", str(directory), "a bike", "--model", str(other), "--adapter", adapter]) == 2
    error = capsys.readouterr().err
    assert f"built with model {checkpoint}" in error and f"asks for model {other}" in error
    assert f"and adapter {adapter}" in error
    # The same model without the adapter is refused too, and the same files elsewhere are accepted.
    assert main(["search", str(directory), "a bike", "--model", checkpoint]) == 2
    error = capsys.readouterr().err
    assert f"and adapter {adapter}" in error and error.rstrip().endswith("and adapter none. " + TAIL)
    copy = tmp_path / "adapter_copy"
    shutil.copytree(adapter, copy)
    assert main(["search", str(directory), "a bike", "--model", checkpoint, "--adapter", str(copy), "-k", "1"]) == 0


def test_search_arguments_are_checked(built, capsys):
    index, directory = built
    assert main(["search", str(directory)]) == 2
    assert "give a text QUERY or --like VIDEO" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`k` must be a positive integer; got 0"):
        index.search(text="a bike", k=0)
    with pytest.raises(ValueError, match="Give exactly one of `text`, `video` and `embedding`"):
        index.search(text="a bike", video="x.mp4")
    assert main(["search", str(directory.parent / "nowhere"), "a bike"]) == 2
    assert "is not a video index" in capsys.readouterr().err


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_exact_search_is_the_full_ranking_whatever_the_chunk(chunk_size):
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(300, 16, generator=generator), dim=1)
    embeddings[17] = embeddings[5]  # a tie: the lower row comes first
    queries = torch.cat([embeddings[5:6], torch.randn(4, 16, generator=generator)])
    scores, rows = ExactBackend(embeddings, chunk_size=chunk_size).search(queries, k=10)
    full = queries @ embeddings.T
    order = torch.stack(
        [torch.tensor(sorted(range(300), key=lambda r, q=q: (-full[q, r].item(), r))) for q in range(5)]
    )
    assert torch.equal(rows, order[:, :10])
    # Matrix products of other shapes may round the last bit differently.
    torch.testing.assert_close(scores, full.gather(1, order[:, :10]), rtol=0, atol=1e-6)
    assert rows[0, 0] == 5 and rows[0, 1] == 17


def test_faiss_visiting_every_cluster_is_exact_and_fewer_clusters_trade_recall():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(4000, 32, generator=generator), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(50, 32, generator=generator), dim=1)
    _, exact_rows = ExactBackend(embeddings).search(queries, k=10)

    def recall(nprobe: int) -> float:
        _, rows = FaissBackend(embeddings, nlist=16, nprobe=nprobe).search(queries, k=10)
        return sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(rows, exact_rows)) / exact_rows.numel()

    _, rows = FaissBackend(embeddings, nlist=16, nprobe=16).search(queries, k=10)
    assert torch.equal(rows, exact_rows)
    assert 0.0 < recall(1) < recall(4) < 1.0


def test_the_faiss_backend_through_the_index(built, video_folder):
    index, directory = built
    approximate = VideoIndex.load(directory, backend="faiss")
    for row in range(len(index)):
        assert approximate.search(embedding=index.embeddings[row], k=1)[0].entry == index.entries[row]
