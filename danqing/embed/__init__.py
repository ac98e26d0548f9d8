"""Embedding helpers shared by scoring and dedup: the model registry, union-find, range search."""
