"""The Fellegi-Sunter EM recovers m and u from data generated with them; scores are explainable."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.model import probability, run_em


def _generate(rng, n, prior, m, u):
    is_match = rng.random(n) < prior
    cols = []
    for mj, uj in zip(m, u):
        k = len(mj)
        col = np.where(is_match, rng.choice(k, n, p=mj), rng.choice(k, n, p=uj))
        cols.append(col)
    return np.stack(cols, axis=1).astype(np.int8), is_match


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.1, 0.5))
def test_em_recovers_known_m_and_prior(seed, prior):
    rng = np.random.default_rng(seed)
    m = [np.array([0.05, 0.15, 0.8]), np.array([0.1, 0.9]), np.array([0.02, 0.18, 0.8]), np.array([0.2, 0.8])]
    u = [np.array([0.9, 0.08, 0.02]), np.array([0.95, 0.05]), np.array([0.85, 0.1, 0.05]), np.array([0.7, 0.3])]
    levels, _ = _generate(rng, 40_000, prior, m, u)
    m0 = [np.full(len(x), 1 / len(x)) + np.linspace(0, 0.1, len(x)) for x in m]
    m0 = [x / x.sum() for x in m0]
    est, est_prior = run_em(levels, u, m0, active=list(range(len(m))), prior=0.3)
    assert abs(est_prior - prior) < 0.03
    for e, true in zip(est, m):
        assert np.abs(e - true).max() < 0.05


def test_em_ignores_missing_values():
    rng = np.random.default_rng(1)
    m = [np.array([0.1, 0.9]), np.array([0.2, 0.8])]
    u = [np.array([0.9, 0.1]), np.array([0.8, 0.2])]
    levels, _ = _generate(rng, 20_000, 0.3, m, u)
    levels[rng.random(len(levels)) < 0.3, 1] = -1
    est, prior = run_em(levels, u, [np.array([0.5, 0.5]), np.array([0.5, 0.5])], active=[0, 1])
    assert abs(prior - 0.3) < 0.03 and abs(est[1][1] - 0.8) < 0.05


def test_probability_is_the_logistic_of_bits():
    assert probability(np.array([0.0]))[0] == 0.5
    assert abs(probability(np.array([10.0]))[0] - 1024 / 1025) < 1e-12


def test_a_model_refuses_comparisons_whose_levels_changed():
    """A model saved when the patronymic had three levels cannot weigh pairs of four: it says so
    (callers then train a new one) instead of reading the levels wrongly."""
    import pytest

    from matchers.compare import ComparisonVectors, MiddleNameComparison
    from scoring.model import FSModel, LogisticModel

    now = MiddleNameComparison()
    cv = ComparisonVectors([now], np.array([[0], [3]], dtype=np.int8), np.zeros((2, 1), dtype=np.uint16), {})
    fits = FSModel(["middle_name"], [list(now.levels)], [[0.1, 0.1, 0.2, 0.6]], [[0.7, 0.1, 0.1, 0.1]], [None],
                   [0], 0.1)
    assert fits.weights(cv).shape == (2,)
    old = FSModel(["middle_name"], [["different", "similar", "same"]], [[0.1, 0.2, 0.7]], [[0.8, 0.1, 0.1]], [None],
                  [0], 0.1)
    with pytest.raises(ValueError, match="middle_name had the levels"):
        old.weights(cv)
    with pytest.raises(ValueError, match="train a new model"):
        LogisticModel(["middle_name"], [["different", "similar", "same"]], [[-1.0, 1.0, 2.0]], 0.0).score(cv)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.001, 1.0), min_size=2, max_size=6).flatmap(
    lambda m: st.tuples(st.just(m), st.lists(st.floats(1e-5, 1.0), min_size=len(m), max_size=len(m)))),
       st.integers(1, 5_000), st.integers(2, 20_000))
def test_term_frequencies_never_make_agreement_evidence_against(mu, holders, total):
    """Whatever m, u and value frequencies, an exact agreement (the last level) weighs at least 0 bits,
    and more holders of a value never add weight. (It may weigh less than a weaker level: a common
    name agreeing exactly says less than an average one; the weaker levels carry no frequency.)"""
    from matchers.compare import ComparisonVectors, StringComparison
    from scoring.model import FSModel, monotone_m

    m, u = np.array(mu[0]) / sum(mu[0]), np.array(mu[1]) / sum(mu[1])
    m = monotone_m(m, u)
    comp = StringComparison("city", "city", "city", bands=tuple(np.linspace(0.5, 0.9, len(m) - 2)), tf=True)
    model = FSModel(["city"], [list(comp.levels)], [list(m)], [list(u)], [comp.tf_level], [total], 0.01)
    k = len(m) - 1
    holders = min(holders, total)
    rows = [[k], [k], [k]] + [[lv] for lv in range(1, k)]
    tf = np.array([[holders], [min(holders + 1, total)], [0]] + [[0]] * (k - 1), dtype=np.uint16)
    c = model.contributions(ComparisonVectors([comp], np.array(rows, dtype=np.int8), tf, {}))[:, 0]
    assert (c[:3] >= 0).all()
    assert c[1] <= c[0]
