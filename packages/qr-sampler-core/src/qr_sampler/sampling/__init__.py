"""One engine step: u per row from the entropy layer, then the token it picks.

``sampler`` states the step; ``selection`` chooses the walk; ``ops/`` holds the
batched tensor operations, which know nothing of requests, arms or records.
"""
