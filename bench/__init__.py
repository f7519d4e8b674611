"""Benchmarks of the relay against a client reading the model server directly: see
docs/performance.md for what is measured and how to run it."""
