"""Query relevance for the context compressor: identifier-aware terms, stemming, BM25.

Terms. Words are split the way identifiers are written: ``snake_case``, ``dotted.names``,
``kebab-case`` and ``paths/like/this`` at their separators, ``CamelCase`` and ``HTTPServer`` at
their case changes (``StreamIDTooLowError`` -> stream, id, too, low, error), letters from digits.
Each part is lower-cased and stemmed with the Snowball English stemmer (``processing`` and
``processed`` -> process, ``workflows`` -> workflow; an irregular verb's past forms are the
verb first: ``sent`` -> send, ``hung`` -> hang; a program's abbreviation is the word it
stands for: ``conn`` -> connect, ``db`` -> databas); a compound identifier also counts whole
(``test_parse_headers``, ``nameerror``), so a query naming it exactly scores higher than one
sharing its parts; written whole without its separators and case (:func:`whole`), so
``connectionTimeout`` finds ``CONNECTION_TIMEOUT`` and ``connection-timeout``; two words of a
query in a row also count as the identifier they may name ("log level": ``loglevel``). English
stop words and one-letter parts are dropped; an IP address is one term; numbers are kept
(status codes, exit codes, line numbers); a three-digit number from 100 to 599 also counts as its
HTTP status class (``404`` is ``4xx`` too, so a query for "5xx" finds a 503). An exception
class named ``...Error`` or ``...Exception`` also counts as the term "exception": a query about
exceptions finds ``ValueError`` lines that never say the word. A question's word also asks, at
:data:`RELATED_WEIGHT`, for what a tool writes for it (:data:`RELATED`: "crash" for ``SIGSEGV``)
and a verb done again for the verb ("restarted" for ``started``).

Exclusions. A word the query excludes ("an exception other than AssertionError", "errors except
timeouts", "excluding", "besides", "apart from", "but not"), and the words joined to it by "or",
"nor", "and" or "/" ("other than 304 or 404"), weighs :data:`EXCLUDED_WEIGHT`: a unit matching
it scores below zero, below one matching nothing, whatever else it matches. A word the query
contrasts ("uses 2_28 instead of 2_17", "rather than") weighs :data:`NEGATED_WEIGHT`: a unit
matching it and enough of the rest may still score above zero.

Scoring. Okapi BM25 (k1 = 1.2, b = 0.75; Robertson and Zaragoza, "The Probabilistic Relevance
Framework: BM25 and Beyond", 2009) with each unit of a document (a line, a sentence, a JSON
leaf) as one "document" of the collection: a term found in few units weighs more, repeating a
term saturates, and long units do not win by length alone.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from typing import Iterable, Sequence

import snowballstemmer

_WORD = re.compile(r"[A-Za-z0-9]+(?:[_.\-/:][A-Za-z0-9]+)*")
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
STOP = frozenset("""a an and are as at be been but by can could did do does for from had has have
how i if in into is it its may me might my of on or our should so than that the their them then
there these they this those to was we were what when where which while who why will with would
you your not no""".split())

_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_EXC_CLASS = re.compile(r"[a-z0-9](Error|Exception)$")
EXCEPTION = "except"  # the stem of "exception(s)"
_stemmer = snowballstemmer.stemmer("english")
# the stems and terms of words seen, each cache emptied when it reaches CACHE_MAX words: a
# runtime compressing outputs full of request ids and hashes for days keeps its memory
CACHE_MAX = 200_000
_stems: dict[str, str] = {}
_word_terms: dict[str, tuple[str, ...]] = {}


# the past forms of irregular verbs, which no suffix rule reaches: "when was the SST sent" and
# "finished sending", "which thread hung" and "hang detected", "what was written" and "write
# failed" are one verb (forms that are other words too, such as "left" or "lay", are not here)
IRREGULAR = {form: base for base, forms in {
    "begin": "began begun", "bind": "bound", "break": "broke broken", "bring": "brought",
    "build": "built", "buy": "bought", "catch": "caught", "choose": "chose chosen",
    "come": "came", "draw": "drew drawn", "drive": "drove driven", "fall": "fell fallen",
    "feed": "fed", "feel": "felt", "fight": "fought", "find": "found", "fly": "flew flown",
    "forbid": "forbade forbidden", "forget": "forgot forgotten", "freeze": "froze frozen",
    "get": "got gotten", "give": "gave given", "go": "went gone", "grow": "grew grown",
    "hang": "hung", "hide": "hid hidden", "hold": "held", "keep": "kept", "know": "knew known",
    "lead": "led", "lend": "lent", "lose": "lost", "make": "made", "mean": "meant",
    "meet": "met", "pay": "paid", "rise": "rose risen", "run": "ran", "say": "said",
    "see": "saw seen", "seek": "sought", "sell": "sold", "send": "sent", "shake": "shook shaken",
    "shoot": "shot", "show": "shown", "sleep": "slept", "speak": "spoke spoken",
    "spend": "spent", "spin": "spun", "stand": "stood", "steal": "stole stolen",
    "stick": "stuck", "strike": "struck", "swing": "swung", "take": "took taken",
    "teach": "taught", "tell": "told", "think": "thought", "throw": "threw thrown",
    "undo": "undid undone", "understand": "understood", "wake": "woke woken",
    "wear": "wore worn", "win": "won", "write": "wrote written", "rewrite": "rewrote rewritten",
    "overwrite": "overwrote overwritten", "override": "overrode overridden",
    "rebuild": "rebuilt", "withdraw": "withdrew withdrawn",
}.items() for form in forms.split()}

# the abbreviations programs write for what a question spells out: "max connections" is
# ``maxConn``, "database" ``db`` (not those that are also paths or other words, such as dev,
# lib, src, var, tmp, proc, info, min, ns, ts; nor config, which every line of a configuration
# document would match)
ABBREVIATIONS = {
    "addr": "address", "alloc": "allocate", "arg": "argument", "args": "arguments",
    "attr": "attribute", "attrs": "attributes", "avg": "average", "buf": "buffer",
    "cert": "certificate", "certs": "certificates", "cnt": "count",
    "conn": "connection", "conns": "connections", "creds": "credentials",
    "db": "database", "dbs": "databases", "dest": "destination", "dst": "destination",
    "env": "environment", "err": "error", "errs": "errors", "exec": "execute",
    "idx": "index", "init": "initialize", "len": "length", "max": "maximum",
    "mem": "memory", "msg": "message", "msgs": "messages", "num": "number",
    "param": "parameter", "params": "parameters", "perf": "performance", "pkg": "package",
    "pkgs": "packages", "recv": "receive", "ref": "reference", "refs": "references",
    "repo": "repository", "repos": "repositories", "req": "request", "reqs": "requests",
    "resp": "response", "spec": "specification", "stats": "statistics", "svc": "service",
    "txn": "transaction", "val": "value", "vals": "values",
}


def stem(word: str) -> str:
    s = _stems.get(word)
    if s is None:
        if len(_stems) >= CACHE_MAX:
            _stems.clear()
        s = _stems[word] = _stemmer.stemWord(
            IRREGULAR.get(word) or ABBREVIATIONS.get(word) or word)
    return s


_SEPARATORS = re.compile(r"[_.\-/:]")


def whole(word: str) -> str:
    """A compound identifier as one term, whatever the convention it is written in:
    ``connectionTimeout``, ``CONNECTION_TIMEOUT`` and ``connection-timeout`` are one name
    (a Java field, its constant, its configuration key)."""
    return _SEPARATORS.sub("", word.lower())


def _terms_of_word(word: str) -> tuple[str, ...]:
    out = _word_terms.get(word)
    if out is None:
        if len(_word_terms) >= CACHE_MAX:
            _word_terms.clear()
        out = _word_terms[word] = _word_terms_uncached(word)
    return out


def _word_terms_uncached(word: str) -> tuple[str, ...]:
    if len(word) == 3 and word[0] in "12345" and (word[1:].isdigit() or word[1:].lower() == "xx"):
        # an HTTP status and its class: "404" is also "4xx", and a query's "5xx" finds 503
        return (word.lower(), f"{word[0]}xx") if word[1:].isdigit() else (word.lower(),)
    if _IPV4.match(word):  # an address is one term: its 200 is no HTTP status
        return (word,)
    parts = [p.lower() for p in _PART.findall(word)]
    terms = [stem(p) for p in parts if (len(p) > 1 or p.isdigit()) and p not in STOP]
    if len(parts) > 1:  # a compound identifier also counts whole
        terms.append(whole(word))
        if _EXC_CLASS.search(word):  # ValueError, IOException: an exception, whatever its name
            terms.append(EXCEPTION)
    return tuple(terms)


def terms(text: str) -> list[str]:
    """The terms of ``text`` (see the module docstring), in order, with repeats."""
    out: list[str] = []
    for w in _WORD.findall(text):
        out.extend(_terms_of_word(w))
    return out


class BM25:
    """BM25 scores of a query against each of ``docs`` (lists of terms)."""

    def __init__(self, docs: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.tfs = [Counter(d) for d in docs]
        self.lens = [len(d) for d in docs]
        self.n = len(docs)
        self.avgdl = (sum(self.lens) / self.n) if self.n else 0.0
        self.df: Counter = Counter()
        for tf in self.tfs:
            self.df.update(tf.keys())

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))

    def scores(self, query: Iterable[str] | dict[str, float]) -> list[float]:
        """Per document; ``query`` as terms, or terms with weights (:func:`query_weights`)."""
        weights = query if isinstance(query, dict) else dict.fromkeys(query, 1.0)
        q = [t for t in weights if t in self.df]
        out = [0.0] * self.n
        if not q or not self.avgdl:
            return out
        idf = {t: self.idf(t) * weights[t] for t in q}
        k1, b, avg = self.k1, self.b, self.avgdl
        for i, tf in enumerate(self.tfs):
            s = 0.0
            norm = k1 * (1.0 - b + b * self.lens[i] / avg)
            for t in q:
                f = tf.get(t)
                if f:
                    s += idf[t] * f * (k1 + 1.0) / (f + norm)
            out[i] = s
        return out


NOISE = 0.15  # scaled scores below this are matches on common parts only ("ord" of ord-47110)
NEGATED_WEIGHT = -1.0  # a word the query contrasts ("instead of X", "rather than X")
_NEGATING = (r"\b(other than|except(?: for)?|excluding|besides|apart from|but not|rather than|"
             r"instead of)")
# "use 2_28 instead of 2_17", "Brotli found instead of pkg-config": what is replaced is part of
# the answer, and weighs NEGATED_WEIGHT; what the other phrases leave out weighs EXCLUDED_WEIGHT,
# enough that a unit matching it scores below zero whatever else it matches
_CONTRAST = re.compile(r"(rather than|instead of)$", re.I)
EXCLUDED_WEIGHT = -8.0
_NEGATION = re.compile(_NEGATING + r"\s+(?:an?\s+|the\s+)?$", re.I)  # before a word
_NEGATION_PHRASE = re.compile(_NEGATING + r"\b", re.I)
_ALSO = re.compile(r"\s*(/\s*|,?\s+(or|nor)\s+|\s+and\s+)$", re.I)  # "X or Y", "X/Y"
PART_WEIGHT = 0.5  # a part of a compound identifier of the query, against the identifier whole
JOINED_WEIGHT = 0.5  # two words of the query in a row, as the identifier they may be written as


def query_weights(query: str) -> dict[str, float]:
    """The query's terms with weights: 1 for words and whole identifiers, :data:`PART_WEIGHT`
    for the parts of a compound identifier (``ord-47110`` asks for that order, and only a
    little for anything "ord")."""
    out: dict[str, float] = {}
    negated: set[str] = set()  # what the query contrasts with what it asks ("instead of")
    excluded: set[str] = set()  # what it leaves out ("other than", "except")
    hard = True
    phrases = [m.span() for m in _NEGATION_PHRASE.finditer(query)]
    ends = [b for _, b in phrases]  # sorted, the phrases not overlapping

    def in_phrase(at: int) -> bool:  # a lookup, not a scan: a query may be a whole prompt
        k = bisect.bisect_right(ends, at)
        return k < len(phrases) and phrases[k][0] <= at
    excluded_to = -1  # where the last word the query excludes ends
    for m in _WORD.finditer(query):
        w = m.group()
        if in_phrase(m.start()):
            continue  # "other than", "except": how the query excludes, not what it asks for
        if w.lower() in ("or", "nor", "and"):
            continue  # joins what is excluded (_ALSO) or asked for
        ts = _terms_of_word(w)
        before = _NEGATION.search(query[max(0, m.start() - 24):m.start()])
        if before or (excluded_to >= 0 and _ALSO.match(query, excluded_to, m.start())):
            # "an exception other than AssertionError": that one is not asked for, nor the
            # words joined to it ("rather than 304 or 404", "except timeouts and retries")
            if before:
                hard = not _CONTRAST.match(before.group(1))
            (excluded if hard else negated).update(
                [whole(w)] if whole(w) in ts else ts)  # the identifier whole
            excluded_to = m.end()
            continue
        excluded_to = -1
        name = whole(w)
        compound = len(ts) > 1 and name in ts
        for t in ts:
            weight = 1.0 if not compound or t == name else PART_WEIGHT
            out[t] = max(out.get(t, 0.0), weight)
    # two words in a row name what an output writes as one identifier: "log level" is
    # ``loglevel``, ``log_level``, ``--log-level``, ``logLevel`` (their whole term)
    words = [m for m in _WORD.finditer(query) if m.group().lower() not in STOP]
    for a, b in zip(words, words[1:]):
        if (query[a.end():b.start()].isspace() and a.group().isalpha() and b.group().isalpha()
                and not in_phrase(a.start()) and not in_phrase(b.start())):
            out.setdefault(whole(a.group() + b.group()), JOINED_WEIGHT)
    for t, weight in list(out.items()):  # what a tool writes for what the question says
        for r in RELATED.get(t, ()):
            out.setdefault(r, RELATED_WEIGHT * weight)
    for w in negated:
        out[w] = NEGATED_WEIGHT
    for w in excluded:
        out[w] = EXCLUDED_WEIGHT
    return out


# words a tool's output uses for what a question says in others (stems): "did the login
# succeed" is answered by "Accepted password", "why did it crash" by "SIGSEGV" or "abort",
# "which is slowest" by a duration
RELATED: dict[str, tuple[str, ...]] = {
    "crash": ("abort", "segfault", "sigsegv", "panic", "fatal", "termin", "core"),
    "succeed": ("success", "accept", "ok", "pass"), "success": ("succeed", "accept", "ok", "pass"),
    "stop": ("termin", "shutdown", "exit", "kill"),
    "slow": ("durat", "latenc", "take", "elaps"), "slowest": ("durat", "latenc", "take", "elaps"),
    # a package's metadata: "which dependencies" is answered by requires_dist, install_requires
    "depend": ("requir", "dep"), "requir": ("depend", "dep"),
    "larg": ("size", "byte"),  # "how large is it": a size
    "wheel": ("whl",),
    # a resource deleted: Terraform's "Destroying..." and "Destruction complete"
    "delet": ("destroy", "destruct", "remov"), "remov": ("delet", "destroy", "destruct"),
    "destroy": ("destruct", "delet", "remov"),
    # "is it healthy": Kubernetes' Ready conditions (KubeletReady)
    "healthi": ("health", "readi"), "health": ("healthi", "readi"),
}
RELATED_WEIGHT = 0.4  # of the question's word's weight
# and a verb done again is the verb: "after the broker restarted" is answered by "[Kafka
# Server 1], started", "did it reconnect" by "connected to ..."
RELATED.update({stem(w): (stem(w[2:]),) for w in """restart reconnect rejoin reload reopen
resend resync rerun reboot rebuild reinstall reinitialize reindex redeploy recompile reschedule
resubmit reassign reattach remount reauthenticate""".split()})


def identifiers(query: str) -> set[str]:
    """The compound identifiers the query names (``build.jobs``, ``scrape_timeout``,
    ``ExecuteC``), lower-cased, as :func:`terms` counts them whole."""
    asked = query_weights(query)
    out = set()
    for w in _WORD.findall(query):
        ts = _terms_of_word(w)
        if len(ts) > 1 and whole(w) in ts and asked.get(whole(w), 0.0) > 0:
            out.add(whole(w))  # not one the query excludes
    return out


# clause boundaries: punctuation (a colon before a space: "ns:key" is a name), a dash between
# spaces, "and"/"or" between spaces ("foo-and-bar" is a name)
_CLAUSE = re.compile(r"[,;?!()]|:\s|\s[—–-]\s|\s(?:and|or)\s")


def index(units: Sequence[str]) -> BM25:
    """The BM25 index of ``units`` (their terms), for several queries over the same units."""
    return BM25([terms(u) for u in units])


def clause_scores(units: Sequence[str], query: str, bm: BM25 | None = None
                  ) -> list[list[float]]:
    """BM25 of each clause of ``query`` (split at commas, semicolons, "and", "or", ...)
    against each text of ``units`` (or the index ``bm`` of them), scaled to 0..1 by the
    clause's best; empty when the query has fewer than two clauses. A question in several parts
    ("which crate failed, which symbols were undefined, and how did the task end") asks each
    part: the units that answer a part the others outweigh are found this way."""
    whole_query = query_weights(query)  # a clause cut from its exclusion ("or 404") is none
    parts = [{t: w for t, w in query_weights(c).items() if w > 0 and whole_query.get(t, 0) > 0}
             for c in _CLAUSE.split(query)]
    parts = [p for p in parts if p]
    if len(parts) < 2 or not units:
        return []
    bm = bm or index(units)
    return [scale(bm.scores(q), noise=0.0) for q in parts]


def scores(units: Sequence[str], query: str, bm: BM25 | None = None) -> list[float]:
    """BM25 of ``query`` against each text of ``units`` (or the index ``bm`` of them), scaled
    to -1..1 by :func:`scale`."""
    q = query_weights(query)
    if not q:
        return [0.0] * len(units)
    return scale((bm or index(units)).scores(q))


def scale(raw: Sequence[float], noise: float = NOISE) -> list[float]:
    """BM25 scores to -1..1: positive ones by the best (below ``noise``, a unit sharing only a
    frequent part of the query's terms, counted as 0), negative ones (a unit matching what the
    query excludes) by the most negative."""
    top = max(raw, default=0.0)
    low = -min(raw, default=0.0)
    return [(r / top if r / top >= noise else 0.0) if r > 0 else (r / low if r < 0 else 0.0)
            for r in raw]


__all__ = ["BM25", "clause_scores", "identifiers", "index", "query_weights", "scale", "scores",
           "stem", "terms"]
