"""`agentflux sql` output: the formats (pure functions, no DuckDB), then the command itself on a
history made in tmp_path: the limit note, full precision where a program reads the output, and
no escape codes when stdout is not a terminal."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from agentflux import tabular
from agentflux.cli import main

TS = dt.datetime(2026, 11, 25, 8, 0, 0, 123456, tzinfo=dt.timezone.utc)


def out(fmt, columns, rows, **kw) -> str:
    return "".join(tabular.render(fmt, columns, rows, **kw))


# --- formats ---------------------------------------------------------------------------------

def test_table_rounds_fractions_only():
    text = out("table", ["v"], [(1.23456789,), (12345.678,), (0.000001234567,),
                                (Decimal("2.345678"),), (123456789012,), (TS,), (Decimal("7"),)])
    cells = re.findall(r"│ (.*?) +│", text)
    assert cells == ["1.235", "12346", "1.235e-06", "2.346", "123456789012",
                     "2026-11-25 08:00:00.123456+00:00", "7"]


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown"])
def test_other_formats_keep_full_precision(fmt):
    text = out(fmt, ["x", "d", "big"], [(1.23456789, Decimal("2.345678"), 12345.678)])
    assert "1.23456789" in text and "2.345678" in text and "12345.678" in text


def test_table_folds_a_wide_value_instead_of_cutting_it():
    value = "p0-o" + "1234567890" * 6
    text = out("table", ["id"], [(value,)], width=30)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 30
    # every character, in order, once the box and the padding are taken away
    assert re.sub(r"[\s│┃┏┓━┡┩└┘─╇]", "", text) == "id" + value


def test_table_without_a_width_keeps_a_row_on_one_line():
    value = "x" * 300
    lines = out("table", ["id", "ts"], [(value, TS)]).splitlines()
    assert len(lines) == 5 and value in lines[3] and str(TS) in lines[3]


def test_table_without_color_has_no_escape_codes_whatever_the_environment(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert "\x1b" not in out("table", ["a", "b"], [(1, "[bold]x[/bold]")])


def test_table_values_are_data_not_markup():
    assert "[bold]x[/]" in out("table", ["[b]"], [("[bold]x[/]",)])


def test_null_is_empty_except_in_json():
    columns, rows = ["n", "s"], [(None, "a")]
    assert re.search(r"│ +│ a │", out("table", columns, rows))
    assert out("csv", columns, rows) == "n,s\n,a\n"
    assert out("markdown", columns, rows).splitlines()[2] == "|  | a |"
    assert json.loads(out("json", columns, rows)) == [{"n": None, "s": "a"}]


def test_csv_has_a_header_and_quotes_what_needs_it():
    rows = [("a,b", 'say "hi"', "two\nlines", True, 3)]
    text = out("csv", ["x", "y", "z", "b", "i"], rows)
    assert list(csv.reader(io.StringIO(text))) == [
        ["x", "y", "z", "b", "i"], ["a,b", 'say "hi"', "two\nlines", "true", "3"]]


def test_json_is_one_array_of_objects():
    rows = [(1.5, Decimal("1.23456789"), Decimal("12345678901234567.891"), TS, float("nan"), 1, 2),
            (None, None, None, None, None, None, None)]
    doc = json.loads(out("json", ["f", "d", "wide", "t", "nan", "id", "id"], rows))
    assert doc[0] == {"f": 1.5, "d": 1.23456789, "wide": "12345678901234567.891",
                      "t": "2026-11-25T08:00:00.123456+00:00", "nan": None, "id": 1, "id_2": 2}
    assert doc[1] == dict.fromkeys(["f", "d", "wide", "t", "nan", "id", "id_2"])


def test_markdown_is_a_pipe_table():
    text = out("markdown", ["a", "b"], [("x|y", "1\n2")])
    assert text == "| a | b |\n|---|---|\n| x\\|y | 1<br>2 |\n"


@pytest.mark.parametrize("fmt, expected", [("csv", "a\n"), ("json", "[]\n"),
                                           ("markdown", "| a |\n|---|\n")])
def test_an_empty_result(fmt, expected):
    assert out(fmt, ["a"], []) == expected


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown"])
def test_export_formats_read_rows_as_they_write(fmt):
    endless = ((i,) for i in itertools.count())  # --limit 0 over more rows than fit in memory
    assert len(list(itertools.islice(tabular.render(fmt, ["i"], endless), 5))) == 5


# --- the command -----------------------------------------------------------------------------

QUERY = "SELECT 1.23456789 AS x, 'a' AS s FROM range(120)"


@pytest.fixture
def history(tmp_path) -> str:
    from agentflux.sinks.catalog import write_catalog
    from agentflux.sinks.history import History

    root = tmp_path / "history"
    write_catalog(History(root))
    return str(root)


def test_piped_table_has_no_escape_codes_and_says_how_many_rows_were_left_out(history):
    run = subprocess.run([sys.executable, "-m", "agentflux.cli", "sql", QUERY,
                          "--history", history], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stdout and "\x1b" not in run.stderr
    assert run.stdout.count("│ 1.235 │ a │") == 50
    assert run.stderr == "… 70 more rows (use --limit to see more)\n"


def sql(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["sql", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_limit_zero_prints_every_row(history, capsys):
    rc, stdout, stderr = sql(capsys, QUERY, "--history", history, "--limit", "0", "--format", "csv")
    assert rc == 0 and stderr == ""
    assert stdout.splitlines() == ["x,s"] + ["1.23456789,a"] * 120


def test_json_output_stays_valid_when_rows_are_left_out(history, capsys):
    rc, stdout, stderr = sql(capsys, QUERY, "--history", history, "--limit", "5",
                             "--format", "json")
    assert rc == 0 and json.loads(stdout) == [{"x": 1.23456789, "s": "a"}] * 5
    assert stderr == "… 115 more rows (use --limit to see more)\n"


def test_one_row_left_out(history, capsys):
    rc, stdout, stderr = sql(capsys, "FROM range(3)", "--history", history, "--limit", "2")
    assert rc == 0 and stderr == "… 1 more row (use --limit to see more)\n"


def test_rows_left_out_of_more_than_one_statement_are_not_counted(history, capsys):
    rc, stdout, stderr = sql(capsys, f"SELECT 1; {QUERY}", "--history", history,
                             "--limit", "3", "--format", "csv")
    assert rc == 0 and len(stdout.splitlines()) == 4
    assert stderr == "… more rows (use --limit to see more)\n"


def test_a_negative_limit_is_a_user_error(history, capsys):
    rc, stdout, stderr = sql(capsys, QUERY, "--history", history, "--limit", "-1")
    assert rc == 2 and stdout == ""
    assert stderr.startswith("agentflux: error: --limit -1") and stderr.count("\n") == 1


def test_a_broken_catalog_file_does_not_stop_sql(history, capsys):
    """The catalog file is for plain DuckDB clients; `agentflux sql` builds its own views."""
    (Path(history) / "history.duckdb").write_text("this is not a DuckDB file")
    rc, stdout, stderr = sql(capsys, "SELECT count(*) AS n FROM events", "--history", history,
                             "--format", "csv")
    assert rc == 0 and stdout.splitlines() == ["n", "0"], stderr
