"""Token usage as providers report it -> the normalised accounting of ``llm.call`` events.

``llm.call`` counts ``input_tokens`` *including* cached ones, with ``cache_read_tokens`` and
``cache_write_tokens`` saying how many of them were read from / written to the provider's prompt
cache. Providers disagree: OpenAI's ``prompt_tokens`` already include
``prompt_tokens_details.cached_tokens``; Anthropic's ``input_tokens`` exclude both
``cache_read_input_tokens`` and ``cache_creation_input_tokens``. Summing them as reported would
count Anthropic's cached tokens nowhere and OpenAI's twice if they were added on top.
"""

from __future__ import annotations

from typing import Any, Mapping


def normalise_usage(usage: Mapping[str, Any]) -> dict[str, int]:
    """A provider's usage object (OpenAI Chat Completions / Responses or Anthropic Messages
    style, as a dict) -> ``input_tokens``, ``output_tokens``, ``cache_read_tokens``,
    ``cache_write_tokens`` for an ``llm.call`` event. The style is told by its keys."""
    def n(v: Any) -> int:
        return int(v or 0)

    if "prompt_tokens" in usage or "prompt_tokens_details" in usage:  # OpenAI chat
        details = usage.get("prompt_tokens_details") or {}
        return {"input_tokens": n(usage.get("prompt_tokens")),
                "output_tokens": n(usage.get("completion_tokens")),
                "cache_read_tokens": n(details.get("cached_tokens")),
                "cache_write_tokens": 0}
    if "input_tokens_details" in usage:  # OpenAI Responses: input_tokens include cached
        return {"input_tokens": n(usage.get("input_tokens")),
                "output_tokens": n(usage.get("output_tokens")),
                "cache_read_tokens": n((usage.get("input_tokens_details") or {})
                                       .get("cached_tokens")),
                "cache_write_tokens": 0}
    # Anthropic: input_tokens are the uncached remainder
    read = n(usage.get("cache_read_input_tokens"))
    write = n(usage.get("cache_creation_input_tokens"))
    return {"input_tokens": n(usage.get("input_tokens")) + read + write,
            "output_tokens": n(usage.get("output_tokens")),
            "cache_read_tokens": read, "cache_write_tokens": write}
