"""peft-vop: VoP (Text-Video Co-operative Prompt Tuning) as a PEFT method for CLIP."""

__version__ = "0.1.0"
