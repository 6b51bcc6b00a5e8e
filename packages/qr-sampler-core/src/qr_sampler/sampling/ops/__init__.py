"""Batched tensor operations on ``[rows, vocab]`` logits: no Python loop over rows,
and no knowledge of requests, sources or records."""
