"""Sinks: the Parquet history (tables, segments, the DuckDB catalog, the sink contract) and the
Prometheus exposition."""
