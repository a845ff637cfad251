"""Benchmarks: figures, not tests. Run with ``agentflux bench ...``; results go in README.md."""
