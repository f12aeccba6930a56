"""Training: one trainer for every recipe, checkpoints in safetensors + JSON."""
