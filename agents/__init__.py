"""Faust agents: one stream processor per module."""
