"""Compression: TF-MOT hooks, TPrune structured pruning and shrinking."""
