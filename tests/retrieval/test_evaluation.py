import weakref

import pytest
import torch
from helpers.clip import tiny_clip, tiny_text_batch
from helpers.tiny_checkpoint import tiny_tokenizer
from helpers.video_factory import write_video
from peft import get_peft_model

import peft_vop
from peft_vop.data import VideoRecord, VideoTextCollator, VideoTextDataset
from peft_vop.pooling import mean_pool_frames
from peft_vop.retrieval import (
    compute_retrieval_metrics,
    embed_texts,
    embed_videos,
    encode_texts,
    encode_videos,
    evaluate_retrieval,
    is_vop_model,
)


NUM_FRAMES = 3


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    captions = [("a cat", "the cat"), ("a dog",), ("an owl", "the owl", "a bird"), ("a fish",), ("the sea",)]
    return [
        VideoRecord(write_video(folder / f"v{i}.mp4", 12 + 5 * i), caption, f"v{i}")
        for i, caption in enumerate(captions)
    ]


def test_plain_clip_mean_pools_its_frames():
    clip = tiny_clip()
    videos = torch.randn(2, NUM_FRAMES, 3, 32, 32)
    frames = clip.get_image_features(pixel_values=videos.flatten(0, 1)).pooler_output.view(2, NUM_FRAMES, -1)
    torch.testing.assert_close(embed_videos(clip, videos), mean_pool_frames(frames))
    assert not is_vop_model(clip)
    with pytest.raises(ValueError, match=r"\[B, F, 3, H, W\]"):
        embed_videos(clip, videos[0])


def test_vop_model_takes_whole_clips():
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop", num_frames=NUM_FRAMES))
    assert is_vop_model(model)
    videos = torch.randn(2, NUM_FRAMES, 3, 32, 32)
    embeddings = embed_videos(model, videos)
    torch.testing.assert_close(embeddings, model.get_image_features(pixel_values=videos).pooler_output)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2))


def test_embeddings_follow_the_grad_mode_and_encoding_runs_without_gradients():
    """`embed_*` serve training losses (gradients reach the prompts); `encode_*` never build a graph."""
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop", num_frames=NUM_FRAMES))
    videos = torch.randn(2, NUM_FRAMES, 3, 32, 32)
    input_ids, attention_mask = tiny_text_batch(batch_size=2)
    loss = embed_videos(model, videos).sum() + embed_texts(model, input_ids, attention_mask).sum()
    loss.backward()
    prompts = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert prompts and all(grad is not None and grad.abs().sum() > 0 for grad in prompts.values())
    with torch.no_grad():
        assert not embed_videos(model, videos).requires_grad
    encoded = encode_videos(model, [{"pixel_values": videos, "video_index": torch.arange(2)}], progress=False)
    assert not encoded.embeddings.requires_grad


def test_only_one_batch_of_frames_is_alive_at_a_time():
    clip = tiny_clip()
    alive = []

    def batches():
        for index in range(4):
            # The previous batch's frames must be gone before the next batch is made.
            assert all(reference() is None for reference in alive)
            pixel_values = torch.randn(2, NUM_FRAMES, 3, 32, 32)
            alive.append(weakref.ref(pixel_values))
            yield {"pixel_values": pixel_values, "video_index": torch.tensor([2 * index, 2 * index + 1])}
            del pixel_values

    encoded = encode_videos(clip, batches(), progress=False)
    assert encoded.embeddings.shape == (8, 24) and encoded.video_indices.tolist() == list(range(8))


def brute_force(model, tokenizer, dataset, records):
    """Embed every video and caption one by one, then compute the metrics on the whole matrix."""
    collator = VideoTextCollator(dataset.preprocessor)
    videos = torch.cat([embed_videos(model, collator([dataset[i]])["pixel_values"]) for i in range(len(records))])
    captions = [caption for record in records for caption in record.captions]
    targets = torch.tensor([i for i, record in enumerate(records) for _ in record.captions])
    texts = encode_texts(model, tokenizer, captions, batch_size=1, progress=False)
    return compute_retrieval_metrics(texts, videos, targets, chunk_size=10_000)


def test_evaluation_matches_a_one_by_one_computation(records, preprocessor):
    clip, tokenizer = tiny_clip(), tiny_tokenizer()
    dataset = VideoTextDataset(records, preprocessor, num_frames=NUM_FRAMES)
    report = evaluate_retrieval(clip, tokenizer, dataset, batch_size=2, num_workers=2, chunk_size=2, progress=False)
    expected = brute_force(clip, tokenizer, dataset, records)
    assert (report.num_videos, report.num_texts) == (5, 8)
    ours = report.results[0]
    assert ours.text_to_video.to_dict() == pytest.approx(expected.text_to_video.to_dict())
    assert ours.video_to_text.to_dict() == pytest.approx(expected.video_to_text.to_dict())
    assert report.to_dict()["results"][0]["dsl"] is False and report.skipped == []


def test_dsl_results_are_added_and_labelled(records, preprocessor):
    dataset = VideoTextDataset(records, preprocessor, num_frames=NUM_FRAMES)
    report = evaluate_retrieval(tiny_clip(), tiny_tokenizer(), dataset, dsl=True, dsl_temperature=50.0, progress=False)
    plain, dsl = report.to_dict()["results"]
    assert (plain["dsl"], dsl["dsl"], dsl["dsl_temperature"]) == (False, True, 50.0)
    table = report.format_table()
    assert "t2v (DSL)" in table and "v2t (DSL)" in table and table.count("t2v") == 2


def test_vop_model_is_evaluated_and_disabling_it_gives_zero_shot(records, preprocessor):
    tokenizer = tiny_tokenizer()
    dataset = VideoTextDataset(records, preprocessor, num_frames=NUM_FRAMES)
    zero_shot = evaluate_retrieval(tiny_clip(), tokenizer, dataset, progress=False).to_dict()["results"]
    model = get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_p", num_frames=NUM_FRAMES))
    report = evaluate_retrieval(model, tokenizer, dataset, batch_size=2, progress=False)
    expected = brute_force(model, tokenizer, dataset, records).to_dict()
    ours = report.to_dict()["results"][0]
    assert ours["t2v"] == pytest.approx(expected["t2v"]) and ours["v2t"] == pytest.approx(expected["v2t"])
    assert ours["t2v"]["queries"] == 8
    with model.disable_adapter():
        assert evaluate_retrieval(model, tokenizer, dataset, progress=False).to_dict()["results"] == zero_shot


def test_skipped_videos_leave_with_their_captions(records, preprocessor, tmp_path):
    broken = [*records[:2], VideoRecord(str(tmp_path / "gone.mp4"), ("a ghost", "a shadow"), "gone"), *records[2:]]
    dataset = VideoTextDataset(broken, preprocessor, num_frames=NUM_FRAMES, on_error="skip")
    with pytest.warns(UserWarning, match="gone.mp4"):
        report = evaluate_retrieval(tiny_clip(), tiny_tokenizer(), dataset, batch_size=2, progress=False)
    assert (report.num_videos, report.num_texts, report.dropped_captions) == (5, 8, 2)
    assert [entry["name"] for entry in report.skipped] == [str(tmp_path / "gone.mp4")]
    assert report.to_dict()["skipped_videos"] == 1
    assert "1 videos could not be decoded and were left out, with their 2 captions" in report.format_table()
