"""Faust app factory, topics, the wire codec, windows and sketches."""
