"""What makes a run auditable: token records, the records file, the bytes archive,
request provenance, and ``verify``, which recomputes u from the archived bytes."""
