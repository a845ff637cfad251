"""Benchmarks: figures, not tests. Run with ``agentflux bench ...``; results go in README.md."""

import json
from typing import Any


def report(result: dict[str, Any], as_json: bool, console: Any) -> int:
    """Print one JSON object (``--json``) or one aligned line per figure."""
    if as_json:
        print(json.dumps(result))
    else:
        width = max(map(len, result), default=0)
        for k, v in result.items():
            console.print(f"{k:>{width}}: {v}")
    return 0
