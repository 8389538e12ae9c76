"""One reader per benchmark layout; :mod:`lib.test.evaluation.datasets` maps dataset names to them."""
