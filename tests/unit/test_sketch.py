import numpy as np
import orjson
import pytest

from agentflux.schemas.sketch import DDSketch

QS = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


@pytest.mark.parametrize("dist", ["lognormal", "pareto", "uniform", "with_zeros"])
def test_quantiles_within_one_percent_of_numpy(dist):
    rng = np.random.default_rng(11)
    x = {"lognormal": rng.lognormal(5, 1.5, 20_000),
         "pareto": (rng.pareto(1.2, 20_000) + 1) * 3,
         "uniform": rng.uniform(0.001, 1000, 20_000),
         "with_zeros": np.concatenate([np.zeros(500), rng.exponential(50, 5_000)])}[dist]
    s = DDSketch()
    s.add_many(x)
    for q in QS:
        exact = np.quantile(x, q, method="lower")
        est = s.quantile(q)
        assert abs(est - exact) <= 0.01 * abs(exact) + 1e-12, (q, est, exact)
    assert s.count == x.size and s.sum == pytest.approx(x.sum())


def test_merged_sketches_equal_one_sketch_of_all_values():
    rng = np.random.default_rng(5)
    parts = [rng.lognormal(3, 1, n) for n in (100, 2_000, 7)]
    merged = DDSketch()
    for p in parts:
        s = DDSketch()
        s.add_many(p)
        merged.merge(DDSketch.from_dict(s.to_dict()))
    whole = DDSketch()
    whole.add_many(np.concatenate(parts))
    assert merged.bins == whole.bins and merged.count == whole.count
    for q in QS:
        assert merged.quantile(q) == whole.quantile(q)


def test_add_and_add_many_agree():
    vals = [0.0, 0.5, 1.0, 3.3, 1e4, 2.5]
    a, b = DDSketch(), DDSketch()
    for v in vals:
        a.add(v)
    b.add_many(vals)
    assert a.bins == b.bins and a.zero == b.zero


def test_empty_and_bad_arguments():
    assert DDSketch().quantile(0.5) is None
    with pytest.raises(ValueError):
        DDSketch(relative_accuracy=1.5)
    with pytest.raises(ValueError):
        DDSketch().quantile(2)
    with pytest.raises(ValueError):
        DDSketch(0.01).merge(DDSketch(0.02))


def test_grouped_inserts_equal_one_insert_per_sketch():
    from agentflux.schemas.sketch import add_grouped
    rng = np.random.default_rng(7)
    groups = np.sort(rng.integers(0, 40, 5000))
    values = np.where(rng.random(5000) < 0.05, 0.0, rng.lognormal(2.0, 1.5, 5000))
    one = [DDSketch() for _ in range(40)]
    for g in range(40):
        one[g].add_many(values[groups == g])
    grouped = [DDSketch() for _ in range(40)]
    grouped[3].add_many([5.0, 7.0])  # sketches that already hold values keep them
    one[3].add_many([5.0, 7.0])
    add_grouped(grouped, values, groups)
    for a, b in zip(one, grouped):
        assert (a.count, a.zero, a.bins, a.min, a.max) == (b.count, b.zero, b.bins, b.min, b.max)
        assert a.sum == pytest.approx(b.sum, rel=1e-12)


def test_the_compact_state_form_round_trips():
    s = DDSketch()
    s.add_many(np.array([0.0, 0.5, 3.0, 3.1, 1e6]))
    back = DDSketch.from_state(orjson.loads(orjson.dumps(s.to_state())))
    assert (back.count, back.zero, back.sum, back.min, back.max, back.bins) == \
        (s.count, s.zero, s.sum, s.min, s.max, s.bins)
    empty = DDSketch.from_state(DDSketch().to_state())
    assert empty.count == 0 and empty.quantile(0.5) is None
