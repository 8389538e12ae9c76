"""Benchmark analysis: OPE metrics, result loading and aggregation, plots, server metrics (GOT-10k, TrackingNet)."""
