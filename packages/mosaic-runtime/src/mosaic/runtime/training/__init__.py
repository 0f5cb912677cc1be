"""Preset-driven training: manifest parsing, the trainer loop, objectives, checkpoints, evaluation."""
