"""Query results as text: a table for reading, csv / json / markdown for other programs.

Pure functions from column names and rows (tuples, as DB-API cursors return them) to text, so
they are tested without DuckDB and the CLI only decides where the text goes.

Only the table is for the eye: it rounds non-integer numbers to 4 significant digits (never
dropping an integer digit) and folds a value that does not fit its column onto more lines
instead of cutting it with an ellipsis (a cut timestamp, ``202…``, is worse than a tall row).
csv, json and markdown are for programs and documents: every value at full precision, and they
are generated one row at a time, so ``--limit 0`` can export a result larger than memory.

NULL is an empty cell in the table, csv and markdown, and ``null`` in json.
"""

from __future__ import annotations

import csv
import io
import json
import math
from decimal import Decimal
from typing import Any, Iterable, Iterator, Sequence

FORMATS = ("table", "csv", "json", "markdown")

Row = Sequence[Any]


def text(value: Any) -> str:
    """A value at full precision; NULL as empty, booleans as SQL spells them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def rounded(value: Any) -> str:
    """A value for the table: floats and fractional decimals to 4 significant digits, but
    every integer digit kept (12345.678 -> 12346, not 1.235e+04); anything else as :func:`text`
    (integers, timestamps and strings untouched)."""
    if isinstance(value, Decimal) and value.as_tuple().exponent >= 0:
        return str(value)  # an integral DECIMAL: digits, not a measurement
    if isinstance(value, (float, Decimal)):
        if math.isfinite(value) and 1e4 <= abs(value) < 1e15:
            return format(value, ".0f")
        return format(value, ".4g")
    return text(value)


def table(columns: Sequence[str], rows: Iterable[Row], width: int | None = None,
          color: bool = False) -> str:
    """A rich box table. ``width``: the terminal's columns (wider values fold onto more lines);
    None for no limit, as when writing to a file or a pipe. ``color`` False emits no escape
    codes at all, whatever the environment says."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table()
    for name in columns:  # Text, not str: a value like "[/]" is data, not rich markup
        t.add_column(Text(name), overflow="fold")
    for row in rows:
        t.add_row(*(Text(rounded(v)) for v in row))
    out = io.StringIO()
    Console(file=out, width=width or 1_000_000, force_terminal=color,
            color_system="auto" if color else None, highlight=False).print(t)
    return out.getvalue()


def csv_lines(columns: Sequence[str], rows: Iterable[Row]) -> Iterator[str]:
    """A header row, then one record per row (a value with a newline is quoted, so a record
    may span lines)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    yield out.getvalue()
    for row in rows:
        out.seek(0)
        out.truncate()
        writer.writerow([text(v) for v in row])
        yield out.getvalue()


def json_lines(columns: Sequence[str], rows: Iterable[Row]) -> Iterator[str]:
    """One JSON array of objects, an object per line. Repeated column names (``SELECT *`` over
    a join) get a suffix (``id``, ``id_2``) so no value is lost to a duplicate key."""
    keys = _unique(columns)
    yield "["
    first = True
    for row in rows:
        obj = dict(zip(keys, (_json_value(v) for v in row)))
        yield ("\n" if first else ",\n") + json.dumps(obj, default=_json_default,
                                                       ensure_ascii=False)
        first = False
    yield "]\n" if first else "\n]\n"


def markdown_lines(columns: Sequence[str], rows: Iterable[Row]) -> Iterator[str]:
    """A GitHub pipe table; ``|`` in a value is escaped and a newline becomes ``<br>``."""
    yield _md_row(columns)
    yield "|" + "---|" * len(columns) + "\n"
    for row in rows:
        yield _md_row(text(v) for v in row)


def render(fmt: str, columns: Sequence[str], rows: Iterable[Row], width: int | None = None,
           color: bool = False) -> Iterator[str]:
    """The result in ``fmt`` (one of :data:`FORMATS`), as pieces of text to write in order."""
    if fmt == "table":
        return iter([table(columns, rows, width, color)])
    return {"csv": csv_lines, "json": json_lines, "markdown": markdown_lines}[fmt](columns, rows)


def _unique(columns: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    keys = []
    for name in columns:
        key, n = name, 1
        while key in seen:
            n += 1
            key = f"{name}_{n}"
        seen.add(key)
        keys.append(key)
    return keys


def _json_value(value: Any) -> Any:
    # JSON has no NaN or infinity: null, as a NULL is
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    """Types json does not know: timestamps as ISO 8601; a DECIMAL as a number when a double
    holds it exactly (up to 15 significant digits), else as a string, so no digit is lost;
    anything else (UUID, interval, blob) as its text."""
    if isinstance(value, Decimal):
        return float(value) if len(value.as_tuple().digits) <= 15 else str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")
                             for c in cells) + " |\n"
