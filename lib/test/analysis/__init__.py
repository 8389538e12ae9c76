"""Benchmark analysis: OPE metrics, result loading and aggregation, plots, server metrics (GOT-10k, TrackingNet).

``result_files`` finds and reads raw results, ``cache`` keeps per-sequence metrics by content, ``analysis`` scores
and aggregates them, ``report`` formats tables and writes JSON, and ``workflow`` runs one analysis the way
``tracking/analysis_results.py`` asks for it.
"""
