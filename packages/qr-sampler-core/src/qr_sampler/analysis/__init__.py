"""``qr-sampler analyze``: token records in, the statistics a paper needs out.

``collect`` streams the records with numpy only; ``statistics`` and ``report`` need
the ``analysis`` extra (scipy, matplotlib).
"""
