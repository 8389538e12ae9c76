"""Training data: dataset readers, pair sampling and crop processing."""
