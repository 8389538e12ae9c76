"""Data that needs no download: the embedded tracking benchmark generated from images inside installed packages."""
from lib.data.embedded import (EmbeddedParams, RenderedSequence, ensure_embedded_benchmark,
                               generate_embedded_benchmark, render_sequence, sequence_rng)

__all__ = ["EmbeddedParams", "RenderedSequence", "ensure_embedded_benchmark", "generate_embedded_benchmark",
           "render_sequence", "sequence_rng"]
