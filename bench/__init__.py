"""Benchmarks that measure the design's targets and print figures (never pass/fail timing tests)."""
