"""Data that needs no download: :mod:`.splits` (the split lists shipped in ``lists/``) and :mod:`.embedded` (a
tracking benchmark generated from images inside installed packages). Nothing is imported here, so that reading a
split list does not load the benchmark generator."""
