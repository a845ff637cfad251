"""The compressor's JSON strategy: keep the objects and fields that answer the query, with the
keys that say which object they are; summarise the rest; emit valid JSON.

The document is parsed and flattened into leaves (a scalar, an empty list or object, at a
path). Each leaf is scored by BM25 on its key and value; a leaf inside an object that is an
element of an array (a *record*: a pod, an issue, a test case) also gets part of its record's
best score, so the fields of a matching record come before other records' fields. A kept leaf
brings the identifying fields of the objects around it (``id``, ``name``, ``number``,
``state``, ... : :data:`ID_KEYS`), so a kept ``message`` says whose message it is; a field
that reports an error (an exception's name, a status of 300 or more) brings its object's
message (``"code": "ValidationException"`` and what was invalid). What is not
kept is summarised where it was: an object's dropped keys as ``"…": "N more keys: a, b, …"``,
an array's dropped elements as a last element ``"… N more items with keys a, b, …"`` (or
written, when they are scalars shorter than the marker: ``"onContentLoad":387``). Long
strings are cut to their sentences that match the query (or their head), marked ``…``. A
string that holds a JSON object or array (a recorded API response's body) is read as JSON, the
same way, and written back as a string of JSON with the separators it had, so its facts read as
the input wrote them (``\"number\":1,``). The
output is JSON that parses, on one line (``": "`` between keys and values when the input
wrote it so).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from agentflux.runtime.content import (COMMON_KEY, ERROR_WORD_RE, EXC_NAME_RE, FILE_KEYS,
                                       KEY_ONLY, LINE_KEYS, LOCATION_DEPTH, MESSAGE_KEYS,
                                       RECORD_MATCH, Unit, bring_locations, nearest,
                                       picked_by_values)
from agentflux.runtime.content import ID_KEYS_ORDER as ID_KEYS
from agentflux.runtime.relevance import index, query_weights, scale

MAX_IDS = 4  # identifying fields per object
LONG_STRING = 400  # characters: longer strings are cut to what matches
LONG_STRING_KEPT = 900  # characters of a long string's matching pieces kept at most
MARK = "…"
_MISSING = object()
_SENTENCE = re.compile(r"(?<=[.!?\n])\s+")
_PIECE = re.compile(r",(?=\s*\"|\s*\{|\s*\[)")  # a comma before a key, an object, an array


def loads(text: str) -> Any:
    import orjson
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # integers beyond 64 bits


def dumps(doc: Any, seps: tuple[str, str] = (",", ":")) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=seps)


def separators(text: str) -> tuple[str, str]:
    """The separators the input wrote (``", "``/``": "`` as Python's json module does, or
    compact), so that its facts read the same in the output."""
    head = text[:4000]
    return (", " if head.count(', "') > head.count(',"') else ",",
            ": " if head.count('": ') > head.count('":') - head.count('": ') else ":")


class JsonDoc:
    """A parsed document flattened into leaf units (see the module docstring)."""

    def __init__(self, doc: Any, query: str, seps: tuple[str, str] = (",", ":")):
        self.doc = doc
        self.seps = seps  # as the input wrote them (its facts read the same)
        self.paths: list[tuple] = []
        self.values: list[Any] = []
        self.units: list[Unit] = []
        self.ids: list[int] = []  # leaves that identify their object (filled first)
        self._opens: set[int] = set()
        self._shorts: dict[str, str] = {}
        # string leaves holding JSON: the parsed document and the separators it was written with
        self._embeds: dict[tuple, tuple[Any, tuple[str, str]]] = {}
        q = query_weights(query)  # with what the query excludes below zero
        self._q = q
        record_of: list[int] = []  # per leaf: the record (object in an array) it is in, or -1
        parents: list[list[int]] = []  # per leaf: the id leaves of the objects around it
        records: list[list[int]] = []
        self._walk(doc, (), [], -1, record_of, parents, records)
        texts = [self._leaf_text(p, v) for p, v in zip(self.paths, self.values)]
        self.index = index(texts)  # kept: the compressor scores the query's clauses on it
        rel = scale(self.index.scores(q), noise=0.0) if q else [0.0] * len(texts)
        valued = self._by_values(rel) if q else None
        pick = rel if valued is None else valued  # what picks the records
        best = [max((pick[i] for i in leaves), default=0.0) for leaves in records]
        said = {p[:-1]: i for i, p in enumerate(self.paths)  # each object's message field
                if p and isinstance(p[-1], str) and p[-1].lower() in MESSAGE_KEYS}
        for i, (p, v) in enumerate(zip(self.paths, self.values)):
            rec = record_of[i]
            r = rel[i]
            if valued is not None and rec >= 0 and best[rec] < RECORD_MATCH:  # not picked
                r = valued[i] + (r - valued[i]) * KEY_ONLY
            value = 2.0 * r + (0.6 * best[rec] if rec >= 0 and best[rec] >= RECORD_MATCH
                               else 0.0)
            deps = parents[i]
            if notable(p, v):
                value += 1.0
                if said.get(p[:-1], i) != i:  # an error's code brings what it says
                    deps = deps + [said[p[:-1]]]
            text = self._render_leaf_text(p, self._short(v))
            if i in self._opens:
                text += '{},"…": "12 more keys"'
            self.units.append(Unit(i, i + 1, text, value=value, deps=deps,
                                   critical=rel[i] > 0.5))
        keys, files = self._keys_and_files()  # read once for both
        if files:
            bring_locations(self.units, self._message_locations(keys, files))  # its file
            bring_locations(self.units, self._locations(keys, files))  # its line number
        self.rel = rel

    def _keys_and_files(self) -> tuple[list[str], list[int]]:
        """Each leaf's key (lowercase, "" in an array) and the leaves naming a file."""
        keys = [p[-1].lower() if p and isinstance(p[-1], str) else "" for p in self.paths]
        return keys, [i for i, k in enumerate(keys) if k in FILE_KEYS]

    def _message_locations(self, keys: list[str] | None = None,
                           files: list[int] | None = None) -> dict[int, int]:
        """Each message of a finding (a :data:`MESSAGE_KEYS` field, or a ``message`` object's
        ``text`` as SARIF writes it) mapped to its finding's file (:data:`FILE_KEYS`), the
        nearest in the finding's object, :data:`LOCATION_DEPTH` objects down at most, through
        arrays' first elements only (its first location). ``keys``: each leaf's key,
        lowercase; ``files``: the leaves naming a file (:meth:`_keys_and_files`, by default)."""
        if keys is None or files is None:
            keys, files = self._keys_and_files()
        found: dict[tuple, tuple[int, int]] = {}  # an object's path: (depth, its file leaf)
        for j in files:
            q = self.paths[j]
            depth = 0
            for cut in range(len(q) - 1, max(len(q) - 2 - LOCATION_DEPTH * 2, -1), -1):
                o = q[:cut]
                if found.get(o, (99, 0))[0] > depth:
                    found[o] = (depth, j)
                if cut and isinstance(q[cut - 1], int):
                    if q[cut - 1] != 0:
                        break  # not the first element: not the finding's location
                else:
                    depth += 1
                    if depth > LOCATION_DEPTH:
                        break
        out: dict[int, int] = {}
        for i, name in enumerate(keys):
            p = self.paths[i]
            if name in MESSAGE_KEYS:
                o = p[:-1]
            elif (name in ("text", "markdown") and len(p) >= 2 and isinstance(p[-2], str)
                  and p[-2].lower() in MESSAGE_KEYS):
                o = p[:-2]
            else:
                continue
            hit = found.get(o)
            if hit is not None and hit[1] != i:
                out[i] = hit[1]
        return out

    def _locations(self, keys: list[str] | None = None,
                   files: list[int] | None = None) -> dict[int, int]:
        """Each leaf naming a file (:data:`FILE_KEYS`) mapped to the leaf of its location's line
        number (:data:`LINE_KEYS`) in its object, in an object of it or in an object beside it
        (``"path"`` and ``"start": {"line": 12}``; SARIF's ``"artifactLocation": {"uri"}`` and
        ``"region": {"startLine"}``), nearest first; not inside an array (a file's list of
        findings is not its location). ``keys`` and ``files`` as for
        :meth:`_message_locations`."""
        if keys is None or files is None:
            keys, files = self._keys_and_files()
        own = {self.paths[i][:-1] for i in files}  # objects with a file: a finding each
        lines: dict[tuple, list[int]] = {}  # an object's path: its line numbers, in order
        for j, name in enumerate(keys):
            if name in LINE_KEYS:
                q = self.paths[j]
                lines.setdefault(q[:-1], []).append(j)
                # in an object of an object ("start": {"line"}), unless that object is another
                # finding with its own file
                if len(q) >= 2 and isinstance(q[-2], str) and q[:-1] not in own:
                    lines.setdefault(q[:-2], []).append(j)
        out: dict[int, int] = {}
        if not lines:
            return out
        for i in files:
            o = self.paths[i][:-1]
            for a in (o, o[:-1]) if o and isinstance(o[-1], str) else (o,):
                hit = lines.get(a)
                if hit:
                    out[i] = nearest(hit, i)
                    break
        return out

    def _by_values(self, rel: list[float]) -> list[float] | None:
        """Per leaf, its relevance with the keys most records of its array have left out,
        when the query picks records by their values (``"type": "warning"`` of a linter's
        findings); None when it does not (as :func:`agentflux.runtime.content._by_values`
        for pretty-printed lines): such a key the query names (type, line, symbol) says which
        fields of the records it picks to show, not which records."""
        fields: dict[tuple, list[int]] = {}  # (an array's path, a key): its records' leaves
        size: dict[tuple, set] = {}  # an array's path: its records
        for i, p in enumerate(self.paths):
            if len(p) >= 2 and isinstance(p[-1], str) and isinstance(p[-2], int):
                fields.setdefault((p[:-2], p[-1]), []).append(i)
                size.setdefault(p[:-2], set()).add(p[-2])
        common = [i for (array, _), leaves in fields.items()
                  if len(leaves) >= max(COMMON_KEY, len(size[array]) / 2) for i in leaves]
        return picked_by_values(rel, common, [str(self.values[i]) for i in common],
                                lambda texts: scale(index(texts).scores(self._q), noise=0.0))

    def _walk(self, node: Any, path: tuple, ids_above: list[int], record: int,
              record_of: list[int], parents: list[list[int]], records: list[list[int]]) -> None:
        if isinstance(node, dict) and node:
            mine = []
            for k in ID_KEYS:
                v = node.get(k)
                if v is not None and not isinstance(v, (dict, list)) and len(mine) < MAX_IDS:
                    mine.append(k)
            first = len(self.paths)
            id_leaves: list[int] = []
            # identifying fields first, so the others can depend on them
            for k in mine:
                self._leaf(node[k], path + (k,), ids_above, record, record_of, parents, records)
                id_leaves.append(len(self.paths) - 1)
            self.ids.extend(id_leaves)
            if id_leaves:  # an object shown costs its braces and its marker of dropped keys
                self._opens.add(id_leaves[0])
            around = ids_above + id_leaves
            for k, v in node.items():
                if k in mine:
                    continue
                self._walk(v, path + (k,), around[-3 * MAX_IDS:], record, record_of, parents,
                           records)
            if record >= 0 and len(path) and isinstance(path[-1], int):
                records[record].extend(range(first, len(self.paths)))
        elif isinstance(node, list) and node:
            for i, v in enumerate(node):
                rec = record
                if isinstance(v, dict):
                    records.append([])
                    rec = len(records) - 1
                self._walk(v, path + (i,), ids_above, rec, record_of, parents, records)
        else:
            inner = embedded(node, EMBEDDED_DEPTH - len(path))
            if inner is not None:  # a JSON document written as a string: read as JSON
                self._embeds[path] = (inner, separators(node))
                self._walk(inner, path + (EMBED,), ids_above, record, record_of, parents,
                           records)
                return
            self._leaf(node, path, ids_above, record, record_of, parents, records)

    def _leaf(self, value: Any, path: tuple, ids_above: list[int], record: int,
              record_of: list[int], parents: list[list[int]], records: list[list[int]]) -> None:
        self.paths.append(path)
        self.values.append(value)
        record_of.append(record)
        parents.append(list(ids_above))

    @staticmethod
    def _leaf_text(path: tuple, value: Any) -> str:
        keys = " ".join(str(p) for p in path[-2:] if isinstance(p, str))
        return f"{keys} {value}"

    def _render_leaf_text(self, path: tuple, value: Any) -> str:
        key = path[-1] if path and isinstance(path[-1], str) else ""
        if EMBED in path:  # inside a string: as it reads there, quotes escaped
            seps = self._embeds[path[:path.index(EMBED)]][1]
            text = (dumps(key) + seps[1] if key else "") + dumps(value) + seps[0]
            return json.dumps(text, ensure_ascii=False)[1:-1]
        return (dumps(key) + self.seps[1] if key else "") + dumps(value) + self.seps[0]

    def _short(self, value: Any) -> Any:
        """A long string cut to its pieces that match the query (sentences of prose; for a
        string holding JSON or other structured text, its comma-separated pieces), in order,
        ``…`` where pieces were left out; with no match, its head."""
        if not isinstance(value, str) or len(value) <= LONG_STRING:
            return value
        cached = self._shorts.get(value)
        if cached is not None:
            return cached
        structured = value.lstrip()[:1] in "{[" or value.count(" ") < len(value) / 20
        parts = _PIECE.split(value) if structured else _SENTENCE.split(value)
        parts = [p for p in parts if p]
        out = value[:LONG_STRING] + f"{MARK}[{len(value)} chars]"
        if len(parts) > 1 and self._q:
            rel = index(parts).scores(self._q)
            order = sorted(range(len(parts)), key=lambda i: -rel[i])
            keep, size = set(), 0
            for i in order:
                if rel[i] <= 0 or size + len(parts[i]) > LONG_STRING_KEPT:
                    break
                keep.add(i)
                size += len(parts[i])
            if keep:
                pieces, prev = [], -1
                sep = "," if structured else " "
                for i in sorted(keep):
                    if i != prev + 1:
                        pieces.append(MARK)
                    pieces.append(parts[i])
                    prev = i
                if prev != len(parts) - 1:
                    pieces.append(f"{MARK}[{len(value)} chars]")
                out = sep.join(pieces)
        self._shorts[value] = out
        return out

    def render(self, kept: set[int]) -> str:
        self._listed: set[str] = set()  # dropped key lists written once already
        built = self._build(self.doc, kept, self._order())
        if built is _MISSING:
            return dumps(self.digest(), self.seps)
        return dumps(built, self.seps)

    def _order(self) -> dict[tuple, int]:
        if not hasattr(self, "_index"):
            self._index = {p: i for i, p in enumerate(self.paths)}
        return self._index

    def _build(self, node: Any, kept: set[int], index: dict[tuple, int],
               path: tuple = ()) -> Any:
        if isinstance(node, dict) and node:
            out, dropped = {}, []
            for k, v in node.items():
                r = self._build(v, kept, index, path + (k,))
                if r is _MISSING:
                    dropped.append(k)
                else:
                    out[k] = r
            if not out:
                return _MISSING
            if dropped:  # the names, except in records (their array's marker has the key set)
                # and where the same names were listed already (every recorded repository)
                names = ", ".join(map(str, dropped[:8])) + (", …" if len(dropped) > 8 else "")
                in_record = bool(path) and isinstance(path[-1], int)
                mark = (f"{len(dropped)} more keys" if in_record or names in self._listed
                        else f"{len(dropped)} more keys: {names}")
                if self._cheaper([(k, node[k]) for k in dropped], path, mark):
                    return {k: out[k] if k in out else node[k] for k in node}
                out[MARK] = mark
                self._listed.add(names)
            return out
        if isinstance(node, list) and node:
            out, left, keys = [], [], Counter()
            for i, v in enumerate(node):
                r = self._build(v, kept, index, path + (i,))
                if r is _MISSING:
                    left.append(i)
                    if isinstance(v, dict):
                        keys.update(v.keys())
                else:
                    out.append(r)
            if not out:
                return _MISSING
            if left:
                common = ", ".join(str(k) for k, _ in keys.most_common(8))
                mark = f"{MARK} {len(left)} more items" + (f" with keys {common}" if common
                                                             else "")
                if self._cheaper([(i, node[i]) for i in left], path, mark):
                    it = iter(out)
                    return [node[i] if i in left else next(it) for i in range(len(node))]
                out.append(mark)
            return out
        if path in self._embeds:
            inner, seps = self._embeds[path]
            built = self._build(inner, kept, index, path + (EMBED,))
            if built is _MISSING:
                return _MISSING
            # nothing left out: the string as the input wrote it (its number forms, escapes)
            return node if built == inner else dumps(built, seps)
        i = index.get(path)
        if i is None or i not in kept:
            return _MISSING
        return self._short(node)

    def _cheaper(self, left: list[tuple[Any, Any]], path: tuple, mark: str) -> bool:
        """Whether the fields (or items) ``left`` out of the object (array) at ``path`` are
        shorter written than the marker ``mark`` that would stand for them: scalars (nor a
        string holding JSON) whose text is no longer than the marker's (``"onLoad":837``
        against ``"…":"1 more keys: onLoad"``): written, in their place."""
        size = 0
        for k, v in left:
            if isinstance(v, (dict, list)) and v or path + (k,) in self._embeds:
                return False
            size += len(dumps(v)) + 1 + (len(dumps(k)) + 1 if isinstance(k, str) else 0)
            if size > len(mark) + 6:
                return False
        return True

    def digest(self) -> Any:
        """Nothing fits whole: the document's shape (top-level keys, array lengths)."""
        d = self.doc
        if isinstance(d, dict):
            return {MARK: f"object with {len(d)} keys: "
                          + ", ".join(map(str, list(d)[:20])) + (", …" if len(d) > 20 else "")}
        if isinstance(d, list):
            return [f"{MARK} {len(d)} items"]
        return d


class _Embedded:
    """The path step from a string leaf into the JSON document it holds."""

    def __repr__(self) -> str:
        return "<embedded JSON>"


EMBED = _Embedded()
EMBEDDED_MIN = 40  # characters: shorter strings are left as strings
EMBEDDED_MAX = 4_000_000
EMBEDDED_DEPTH = 200  # nesting, the string's path included, past which strings stay strings


def embedded(value: Any, depth: int = EMBEDDED_DEPTH) -> Any:
    """The JSON object or array a string holds (an API recording's response body), nested at
    most ``depth`` deep, else None (what only a lenient parser takes, ``NaN``, ``1E400``,
    integers past 64 bits, stays a string)."""
    if (not isinstance(value, str) or not EMBEDDED_MIN <= len(value) <= EMBEDDED_MAX
            or depth <= 0 or value.lstrip()[:1] not in "{[" or value.rstrip()[-1:] not in "}]"):
        return None
    import orjson
    try:
        inner = orjson.loads(value)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    if not isinstance(inner, (dict, list)) or not inner or _depth(inner, depth) > depth:
        return None
    return inner


def _depth(node: Any, limit: int) -> int:
    """How deep ``node`` nests (a scalar: 0), counted up to ``limit + 1``; no recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        if isinstance(n, (dict, list)) and n:
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (n.values() if isinstance(n, dict) else n))
    return deepest


def notable(path: tuple, value: Any) -> bool:
    """A field that reports something went differently: an HTTP status of 300 or more under
    ``status``/``code``, an error, an exception."""
    key = str(path[-1]).lower() if path else ""
    if key in ("status", "code", "status_code", "statuscode") and isinstance(value, (int, str)):
        try:
            return int(value) >= 300
        except ValueError:
            pass
    return isinstance(value, str) and len(value) < 400 and bool(
        ERROR_WORD_RE.search(value) or EXC_NAME_RE.search(value))


def outline_order(doc: JsonDoc, kept: set[int]) -> list[int]:
    """Without a query, what fills the rest of the budget: the leaves nearest the top first,
    in document order (a response's status and counts before its items' details)."""
    return sorted((i for i in range(len(doc.units)) if i not in kept),
                  key=lambda i: (len(doc.paths[i]), i))


def fill_order(doc: JsonDoc) -> list[int]:
    """What fills a budget left over: the identifying fields of every object, in document
    order (which objects there are; the values nothing selected are not worth their tokens)."""
    return list(dict.fromkeys(doc.ids))


__all__ = ["ID_KEYS", "JsonDoc", "dumps", "fill_order", "loads", "outline_order"]
