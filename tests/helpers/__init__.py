"""Helpers of the test suite, imported as `helpers.<module>` (`tests/` is on `sys.path`, see pyproject.toml).

- `clip`: tiny random CLIPs (`tiny_clip`, `tiny_clip_config`), caption batches for them, `randomize_adapter`.
- `tiny_checkpoint`: a complete tiny checkpoint on disk (model, tokenizer, image processor).
- `video_factory`: real mp4 files whose frames encode their index.
- `tiny_run`: what the training tests share (a tiny world and CLIP on disk, an in-memory dataset, a base config).
"""
