"""Benchmarks: each module has a `main(argv=None)` and writes to experiments/results/."""
