"""Checkpoint formats: Hugging Face (config.json + safetensors) and keras-hub presets.

`zoo.from_pretrained` / `zoo.save_pretrained` (in `zoo.pretrained`) are the doors; the modules
here hold one concern each: the shared slot machinery (`slots`), safetensors files
(`safetensors_io`), each family's Hugging Face names (`hf_bert`, `hf_gpt2`) and keras-hub's
preset layout (`keras_hub`).
"""

from zoo.checkpoints.slots import CheckpointError

__all__ = ["CheckpointError"]
