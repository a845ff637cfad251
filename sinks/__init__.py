"""Sinks: DuckDB history, Prometheus exposition, dead letters."""
