"""Training: Hydra composition and schemas, the one experiment builder, the loop, precision and loaders,
torchrun's ranks, checkpoints and trackers."""
