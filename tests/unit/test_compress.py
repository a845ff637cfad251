import re
from pathlib import Path

import pytest

from agentflux.bench.corpus import corpus
from agentflux.runtime.compress import ContextCompressor, Message
from agentflux.runtime.instrument import CountingEmitter, Instrumentation
from agentflux.schemas import check

CORPUS = corpus(seed=11, per_kind=2)


@pytest.mark.parametrize("sample", CORPUS, ids=[f"{s.kind}-{i}" for i, s in enumerate(CORPUS)])
def test_tool_outputs_shrink_3x_and_keep_every_key_fact_error_line_and_path(sample):
    sink = CountingEmitter()
    c = ContextCompressor(instrumentation=Instrumentation(sink))
    r = c.compress(sample.text, sample.query)
    assert r.tokens_before >= 4500
    assert r.ratio >= 3.0, (r.tokens_before, r.tokens_after)
    assert r.tokens_after <= c.target_tokens
    missing = [f for f in sample.must_keep() if f not in r.text]
    assert missing == []
    assert 0.0 <= r.quality <= 1.0
    (ev,) = sink.of_type("context.compress")
    assert check(ev) is None
    assert (ev["attrs"]["tokens_before"], ev["attrs"]["tokens_after"]) == (r.tokens_before, r.tokens_after)


def test_omissions_are_marked_and_order_is_kept():
    s = CORPUS[0]
    r = ContextCompressor().compress(s.text, s.query)
    assert re.search(r"^\[\d+ (similar )?omitted\]$", r.text, re.M)
    positions = [r.text.index(f) for f in s.error_lines[:2]]
    assert positions == sorted(positions)


def test_summariser_runs_only_when_still_over_budget():
    calls = []

    def summarise(text, target):
        calls.append(target)
        return "summary: payment job failed"

    s = CORPUS[0]
    c = ContextCompressor(target_tokens=50, summarizer=summarise)
    r = c.compress(s.text, s.query)
    assert calls == [50] and r.strategy == "extractive:log+abstractive"
    assert r.text.startswith("summary") and r.protected_dropped > 0
    roomy = ContextCompressor(target_tokens=3000, summarizer=summarise)
    assert roomy.compress(s.text, s.query).strategy == "extractive:log" and calls == [50]


def test_automatic_only_above_the_threshold():
    c = ContextCompressor()
    short = "ERROR something broke in src/a.py\n" * 10
    assert c.maybe_compress(short, "broke") == short
    long_text = CORPUS[1].text + "\n" + CORPUS[1].text
    assert c.count(long_text) > 5000
    assert c.count(c.maybe_compress(long_text, CORPUS[1].query)) <= c.target_tokens


def test_fenced_code_blocks_are_kept_whole():
    block = "```python\nfor i in range(3):\n    print(i)\n```"
    text = "\n".join(f"filler line number {i} about nothing in particular" for i in range(800))
    text = text + "\n" + block + "\n" + text
    r = ContextCompressor(target_tokens=200).compress(text, "unrelated query")
    assert block in r.text


def test_sliding_window_keeps_system_prompt_and_last_user_messages():
    msgs = [Message("system", "You are a careful agent.")]
    for i in range(30):
        msgs.append(Message("user", f"question {i} " + "details " * 50))
        msgs.append(Message("assistant", f"answer {i} " + "reasoning " * 50))
    sink = CountingEmitter()
    c = ContextCompressor(target_tokens=800, keep_last_user=3, instrumentation=Instrumentation(sink))
    out = c.sliding_window(msgs)
    assert out[0].role == "system"
    users = [m.content.split()[1] for m in out if m.role == "user"]
    assert users[-3:] == ["27", "28", "29"]
    assert out[-1] == msgs[-1]
    assert sum(c.count(m.content) for m in out) <= 800 or len(users) == 3
    assert [m for m in out if m in msgs] == out  # original order
    assert check(sink.of_type("context.compress")[0]) is None


def test_bad_settings_raise():
    with pytest.raises(ValueError):
        ContextCompressor(target_tokens=0)
    from agentflux.config import ConfigError
    with pytest.raises(ConfigError, match="not installed"):
        ContextCompressor(encoding="no_such_encoding")


def test_a_gap_is_one_short_marker_and_a_lone_short_line_is_written_instead():
    from agentflux.runtime.compress import render_lines
    from agentflux.runtime.tokens import count_tokens
    from agentflux.runtime.content import Unit, line_units
    units = line_units(["ERROR first", "}", "ERROR second", "a long line nobody asked for",
                        "another one", "ERROR third"])
    out = render_lines(units, {0, 2, 5}).splitlines()
    # "}" costs less than a marker would; two lines left out are one marker, "…": a short
    # gap's size says nothing a reader needs
    assert out == ["ERROR first", "}", "ERROR second", "…", "ERROR third"]
    # a long gap's says how much of the text is not there: from ten lines
    units = line_units(["ERROR first"] + [f"line {k} nobody asked for" for k in range(9)]
                       + ["ERROR second"] + [f"line {k} nobody asked for" for k in range(10)]
                       + ["ERROR third"])
    out = render_lines(units, {0, 10, 21}).splitlines()
    assert out == ["ERROR first", "…", "ERROR second", "[10 omitted]", "ERROR third"]
    # not under a budget of 1,000 tokens: a handful of lines, where a count costs a fact
    out = render_lines(units, {0, 10, 21}, counted=False).splitlines()
    assert out == ["ERROR first", "…", "ERROR second", "…", "ERROR third"]
    log = (Path(__file__).parent.parent / "data" / "compress" / "s3proxy-gha-job.log").read_text()
    c = ContextCompressor()
    assert re.search(r"\[\d+ omitted\]", c.compress(log, "which tests failed", 1000).text)
    tight = c.compress(log, "which tests failed", 999).text
    assert "FAIL" in tight and not re.search(r"\[\d+ (similar )?omitted\]", tight), tight
    # a short first sentence of a long line is not written for the whole line: marked
    long = Unit(1, 2, "See below.", part=0)
    rest = Unit(1, 2, "A sentence nobody kept. " * 20, part=1)
    units = [Unit(0, 1, "kept"), long, rest, Unit(2, 3, "kept too")]
    assert render_lines(units, {0, 3}).splitlines() == ["kept", "…", "kept too"]
    # a marker costs 4 tokens, one line's 1: the budget counts them
    assert count_tokens("a\n[25 omitted]\nb") - count_tokens("a\nb") == 4
    assert count_tokens("a\n…\nb") - count_tokens("a\nb") == 1



def test_a_log_line_is_written_without_its_timestamp_only_in_the_minute_of_the_line_above():
    from agentflux.runtime.compress import render_lines
    from agentflux.runtime.content import FOLDED, log_units
    lines = ["2023-03-18T21:25:08.586102+02:00 0 [Galera] Selected node2 as donor.",
             "2023-03-18T21:25:08.586160+02:00 0 [Galera] Shifting SYNCED -> DONOR",
             "2023-03-18T21:40:25.120249+02:00 0 [Galera] SST sent: 937dcf28:22777303",
             "2023-03-18T21:40:25.133527+02:00 0 [Galera] State transfer to node1 complete."]
    out = render_lines(log_units(lines, [0.0] * 4), {0, 1, 2, 3}).splitlines()
    # a line logged in the same minute as the one above is written without its time; one
    # logged fifteen minutes later keeps it: it says when the transfer finished
    assert out == [lines[0], FOLDED + "0 [Galera] Shifting SYNCED -> DONOR", lines[2],
                   FOLDED + "0 [Galera] State transfer to node1 complete."]
    # and so after lines left out: the time written last is still the minute's
    ci = [f"[task 2025-02-13T21:36:55.{k:03d}Z] 21:36:55     INFO -  frame {k}" for k in range(6)]
    ci.append("[task 2025-02-13T21:52:01.000Z] 21:52:01     INFO -  Task exited")
    out = render_lines(log_units(ci, [0.0] * 7), {0, 3, 6}).splitlines()
    # (the prefix is the time and one space: what the line writes after it stays)
    assert out == [ci[0], "[2 similar omitted]", FOLDED + "    INFO -  frame 3",
                   "[2 similar omitted]", ci[6]]


def test_a_gh_run_logs_job_step_and_time_fold_as_one_prefix_and_indentation_stays():
    from agentflux.runtime.compress import render_lines
    from agentflux.runtime.content import FOLDED, log_units
    # `gh run view --log` writes the job and the step before each line's time: 15 tokens a
    # line, and they were written on every line kept; a line's own indentation stays
    lines = ["lint\tRun ruff check\t2026-01-30T03:29:22.9075418Z W293 Blank line has whitespace",
             "lint\tRun ruff check\t2026-01-30T03:29:22.9075500Z    --> test_bot.py:241:1",
             "lint\tRun ruff check\t2026-01-30T03:29:22.9077497Z Found 12 errors.",
             "test\tRun unit tests\t2026-01-30T03:29:25.1621344Z 17 passed in 0.97s"]
    out = render_lines(log_units(lines, [0.0] * 4), {0, 1, 2, 3}).splitlines()
    assert out == [lines[0], FOLDED + "   --> test_bot.py:241:1", FOLDED + "Found 12 errors.",
                   lines[3]]
    # and so a timestamp's: the space after it is the prefix's, the rest the line's own
    ci = ["2025-06-15T16:17:32.4915692Z  FAIL  test/MockExpress.test.ts > handles HEAD",
          "2025-06-15T16:17:32.4948916Z CredentialsProviderError: Could not load credentials"]
    out = render_lines(log_units(ci, [0.0] * 2), {0, 1}).splitlines()
    assert out == [ci[0], FOLDED + "CredentialsProviderError: Could not load credentials"]


def test_pieces_of_a_long_line_join_back_to_it_and_break_after_delimiters():
    from agentflux.runtime.content import PIECE_CHARS, pieces
    text = "x=" + ",".join(f"k{i}:{i * 7}" for i in range(2000)) + ";" + "y" * 3000
    ps = pieces(text)
    assert "".join(ps) == text
    assert all(len(p) <= PIECE_CHARS * 3 // 2 for p in ps[:-1]) and len(ps[-1]) <= 3 * PIECE_CHARS
    assert all(p.endswith(",") for p in ps[:10])  # a delimiter in each piece's second half
    assert len(pieces("short")) == 1


def test_a_long_error_line_keeps_its_start_and_the_piece_the_query_asks_about():
    line = ("2024-05-01T10:00:00Z ERROR worker-3 request failed payload="
            + " ".join(f"k{i}=v{i}" for i in range(3000))
            + " cause=ConnectionResetError peer=10.0.0.7")
    text = "\n".join([f"2024-05-01T09:59:{i:02d}Z INFO worker-3 ok" for i in range(40)] + [line])
    r = ContextCompressor().compress(text, "what caused the failure and which peer", 300)
    assert r.tokens_after <= 300
    (kept,) = [ln for ln in r.text.splitlines() if "ERROR" in ln]
    # (its timestamp folded into "  ↳ ", the line above having one of the same form)
    head = kept.split(" [...] ")[0]
    assert head.startswith(("2024-05-01T10:00:00Z ERROR worker-3 request failed payload=k0=v0",
                            "  ↳ ERROR worker-3 request failed payload=k0=v0"))
    assert kept.endswith("cause=ConnectionResetError peer=10.0.0.7") and " [...] " in kept


def test_a_diffs_hunks_are_read_by_their_counts_and_a_kept_change_says_where_it_is():
    from agentflux.runtime import content
    # a removed SQL comment reads "--- ..." and an added one "+++ ...": inside a hunk (its
    # header counts its lines) they are changes, not file headers
    diff = "\n".join([
        "diff --git a/db/schema.sql b/db/schema.sql",
        "index 3b18e51..a9c2f3d 100644",
        "--- a/db/schema.sql",
        "+++ b/db/schema.sql",
        "@@ -10,4 +10,4 @@ CREATE TABLE accounts (",
        "   id BIGINT PRIMARY KEY,",
        "--- the owner's e-mail, unique",
        "+++ the owner's e-mail, unique per tenant",
        "   email TEXT NOT NULL,",
        "-  tenant_id INT",
        "+  tenant_id BIGINT NOT NULL",
        "\\ No newline at end of file",
        "diff --git a/app/models.py b/app/models.py",
        "--- a/app/models.py",
        "+++ b/app/models.py",
        "@@ -1,3 +1,3 @@ class Account:",
        " class Account:",
        "-    tenant_id: int",
        "+    tenant_id: int | None",
    ] + [f" line {k}" for k in range(3)])
    what, file_of, hunk_of = content.diff_lines(diff.splitlines())
    assert "".join(what[:12]) == "ffff@ -+ -+ "
    assert file_of[6] == 3 and hunk_of[6] == 4 and file_of[17] == 14
    assert content.detect(diff + "\n" + diff) == "diff"
    units = content.diff_units(diff.splitlines(), [0.0] * 22)
    assert set(units[10].deps) == {3, 4, 9}  # its file, its hunk, the line it replaces
    assert units[17].deps == [14, 15, 18]  # its file, its hunk, the line that replaced it
    # lines of "--flag: value" are no YAML (a lint run's "--BPS-0730: Status: ..." log)
    log = "\n".join(f"--BPS-07{k:02d}: Status: step {k} done" for k in range(40))
    assert content.detect(log) != "yaml"
    yaml = "\n".join(["apiVersion: apps/v1", "kind: Deployment", "metadata:", "  name: web",
                      "spec:", "  replicas: 3", "  template:", "    spec:", "      containers:",
                      "      - name: app", "        image: nginx:1.25.3", "        ports:",
                      "        - containerPort: 8080", "---", "kind: Service", "metadata:",
                      "  name: web-svc", "spec:", "  type: ClusterIP"] * 3)
    assert content.detect(yaml) == "yaml"


def test_line_classifiers_read_a_long_run_once_and_mean_what_they_meant():
    """The classifiers rewritten on 2026-11-28 so that a long run of blanks or dots is read
    once (possessive quantifiers) match every line of the evaluation sets as the patterns they
    replace did; the old ones read such a run again from each of its characters."""
    from agentflux.bench import compression
    from agentflux.runtime import content
    old_code = re.compile(content.CODE_LINE_RE.pattern.replace(r"^\s*+(", r"^\s*(", 1).replace(
        r"(?:.*\s|(?<=\s))do(", r".*\sdo(", 1))
    old_yaml = re.compile(r"""^\s*(-\s+)?["']?[\w.$@/][^"':#]*?["']?\s*:(\s|$)|^\s*-(\s|$)|"""
                          r"^\s*#|^---(\s|$)|^\.\.\.\s*$")
    old_key = re.compile(r"""^\s*(?:-\s+)?["']?([\w.$@/][^"':#]*?)["']?\s*:(?:\s|$)""")
    old_exc = re.compile(content.EXC_NAME_RE.pattern.replace(r"(?<!\.)[a-z]", "[a-z]", 1))
    old_gutter = re.compile(r"^\s*(\d+|LL|\.\.\.)?\s+\|(\s|$)")  # (2026-11-29)
    old_values = re.compile(r"^[\s\d.,:;%/|+-]*\d[\s\d.,:;%/|+-]*$")  # (the same day)
    old_rule = re.compile(r"^\s*[-=+|: ]*[-=]{3}[-=+|: ]*$")
    assert old_code.pattern != content.CODE_LINE_RE.pattern
    assert old_exc.pattern != content.EXC_NAME_RE.pattern
    lines = ["  do", "foo.each do |x|", "\tdef f(x):", "do", "key with spaces : v",
             "'quoted key ' : v", '"k":1', "- name: app", "a  b  c:",
             "java.lang.NullPointerException", "Foo.bar.BazError: no", "x.y.Z_Error",
             "   |", "36 | x", "  36 |", " LL | y", "|", "36| x", "\t...\t| z", " 1 |x",
             " 12.5 | 3,400 | 7%", "1", "abc 1", "--- ---", "\t---", " -=- ", "-- | --", "==",
             "  ----+----  ", "- - -", "+---+---+", " : ---", "---\tx", "1 2 3 x"]
    for root in (compression.DATA, compression.HOLDOUT, compression.STRUCTURED):
        for d in compression.load(root):
            lines += d["text"].splitlines()
    assert len(lines) > 20000
    for ln in lines:
        ln = ln[:2000]
        assert bool(content.CODE_LINE_RE.match(ln)) == bool(old_code.match(ln)), ln
        assert bool(content.YAML_LINE_RE.match(ln)) == bool(old_yaml.match(ln)), ln
        new, old = content.YAML_KEY_RE.match(ln), old_key.match(ln)
        assert bool(new) == bool(old) and (not new or new.group(1) == old.group(1).rstrip()), ln
        assert bool(content.EXC_NAME_RE.search(ln)) == bool(old_exc.search(ln)), ln
        assert bool(content.GUTTER_RE.match(ln)) == bool(old_gutter.match(ln)), ln
        assert bool(content._VALUES_RE.match(ln)) == bool(old_values.match(ln)), ln
        assert bool(content._RULE_RE.match(ln)) == bool(old_rule.match(ln)), ln


def test_a_path_late_in_a_long_line_is_still_a_path():
    """has_path reads the whole of a long line (an MSBuild line of 8,000 characters names its
    file late) unless a run of name characters as long as no path makes it quadratic."""
    from agentflux.runtime import content
    assert content.has_path("warning: " + "x " * 1000 + "see src/app/main.py:12")
    assert not content.has_path("warning: " + "x " * 1000 + "see the manual")
    assert content.has_path("src/app/main.py: " + "a." * 50000)  # read as far as PATH_HEAD
    assert not content.has_path("a." * 50000 + " src/app/main.py")


def test_hostile_inputs_keep_the_budget():
    """Runs of dots, tabs, spaces, brackets, empty lines...: each compressed within the budget
    (their time is a figure of ``agentflux bench runtime``, ``compression_hostile_*``)."""
    from agentflux.bench import compression
    got = compression.hostile(target=300, chars=20000)
    assert got["inputs"] == len(compression.HOSTILE) >= 14
    assert got["within_budget"] == 1.0
    assert got["slowest"] in compression.HOSTILE and got["ms_max"] > 0 and got["long_query_ms"] > 0


def test_the_word_caches_stay_bounded(monkeypatch):
    """A runtime compresses outputs full of request ids and hashes for days: the caches of stems
    and terms are emptied when they reach CACHE_MAX words, and words still get their terms."""
    from agentflux.runtime import relevance
    monkeypatch.setattr(relevance, "CACHE_MAX", 500)
    monkeypatch.setattr(relevance, "_stems", {})
    monkeypatch.setattr(relevance, "_word_terms", {})
    c = ContextCompressor()
    for k in range(3):
        text = "\n".join(f"ERROR request r{k}x{i:05d} from 10.{k}.{i // 250}.{i % 250} failed "
                         f"on shard{k}z{i} in handlers_{k}_{i}" for i in range(2000))
        c.compress(text, "which requests failed?", 300)
        assert len(relevance._stems) <= 500 and len(relevance._word_terms) <= 500
    assert relevance.terms("processing ValueError 10.0.0.1 404") == [
        "process", "valu", "error", "valueerror", "except", "10.0.0.1", "404", "4xx"]


def test_wrong_arguments_say_what_is_wrong_and_how_to_pass_them():
    c = ContextCompressor()
    text = "ERROR worker failed\n" * 400
    with pytest.raises(TypeError, match=r"text must be a str, got bytes \(decode it first"):
        c.compress(text.encode(), "why", 50)
    with pytest.raises(TypeError, match="text must be a str, got NoneType"):
        c.maybe_compress(None)
    with pytest.raises(TypeError, match="query must be a str"):
        c.compress(text, 123, 50)
    for bad in ("100", 10.5, True):
        with pytest.raises(TypeError, match="target_tokens must be a whole number of tokens"):
            c.compress(text, "why", bad)
    with pytest.raises(ValueError, match="target_tokens must be >= 1, got 0"):
        c.compress(text, "why", 0)
    with pytest.raises(TypeError, match="target_tokens must be a whole number of tokens"):
        ContextCompressor(target_tokens="2000")
    # None is no query, and a whole number written as a float is that number
    assert c.compress(text, None, 50.0).text == c.compress(text, "", 50).text
    assert c.compress(text, None, 50.0).tokens_after <= 50


def test_no_name_of_the_compressors_modules_is_defined_twice():
    # a pattern defined again further down a module replaces the first for every line that
    # uses it: the line numbers' FINDING_RE had replaced detection's (a linter's finding after
    # its file), and a pytest collection report was read as prose
    import ast
    from pathlib import Path

    from agentflux.runtime import compress, compress_html, compress_json, content, relevance
    for mod in (compress, compress_html, compress_json, content, relevance):
        names: list[str] = []
        for node in ast.parse(Path(mod.__file__).read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.append(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names += [t.id for t in targets if isinstance(t, ast.Name)]
        twice = sorted({n for n in names if names.count(n) > 1} - {"__all__"})
        assert twice == [], (mod.__name__, twice)
