"""Pair scores: a Fellegi-Sunter model that needs no labels, or a supervised one when labels exist.

Fellegi-Sunter: each comparison level has m (how often true matches show it) and u (how often
random non-matching pairs show it); log2(m/u) is the evidence it adds, in bits. u comes from
random record pairs (exact-agreement levels analytically from value frequencies, so a rare value
is not estimated as "never seen"); m comes from EM over the candidate pairs, run once per training
rule with the comparisons that rule blocked on left out, as Splink does, because within a block
those comparisons agree by construction. Exact matches are then adjusted by term frequency: a
shared switchboard phone or a common surname counts for less than a rare one, though never below 0
bits (an agreement is never evidence against).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matchers.compare import NULL, ComparisonVectors, compare
from matchers.prepare import Prepared

log = logging.getLogger(__name__)

# which comparisons each blocking rule forces to agree (left out of EM on that rule's pairs)
RULE_FIXES = {
    "phone": {"phone"},
    "email": {"email"},
    "name": {"first_name", "last_name"},
    "company": {"company"},
    "tax_id": {"tax_id"},
    "birthdate": {"birthdate"},
    "postcode": {"postcode", "first_name"},
}
MAX_TF_BONUS = 4.0  # bits a very rare exact value may add over the average one


@dataclass
class FSModel:
    comparisons: list[str]
    levels: list[list[str]]
    m: list[list[float]]
    u: list[list[float]]
    tf_level: list[int | None]
    tf_total: list[int]  # records holding a value, per comparison (for term frequencies)
    prior: float  # probability that a candidate pair is a match
    kind: str = "fellegi-sunter"
    training: dict = field(default_factory=dict)

    # -- weights ------------------------------------------------------------------------------

    def level_weights(self) -> list[np.ndarray]:
        return [np.log2(np.asarray(m) / np.asarray(u)) for m, u in zip(self.m, self.u)]

    def contributions(self, cv: ComparisonVectors, rows=None) -> np.ndarray:
        """Bits each comparison adds to each pair (pairs x comparisons; only ``rows`` when given, an
        index array or slice); null levels add 0."""
        self._check(cv)
        levels = cv.levels if rows is None else cv.levels[rows]
        tfs = cv.tf if rows is None else cv.tf[rows]
        weights = self.level_weights()
        out = np.zeros(levels.shape, dtype=np.float64, order="F")  # filled and read column by column
        for j, w in enumerate(weights):
            lv = levels[:, j]
            # a lookup table with the null level (-1) last, adding 0
            out[:, j] = np.append(w, 0.0)[lv]
            tl = self.tf_level[j]
            if tl is not None and self.tf_total[j] > 0:
                hit = np.flatnonzero((lv == tl) & (tfs[:, j] > 0))
                # chance a random record shares this very value: (holders - 1) / records with a value
                u_value = np.maximum(tfs[hit, j] - 1, 1) / self.tf_total[j]
                adj = np.log2(self.u[j][tl] / u_value)
                out[hit, j] += np.clip(adj, None, MAX_TF_BONUS)
            if tl is not None:
                # A common value counts for less (what keeps namesakes apart), but an exact agreement is
                # never evidence against. (Not floored at the weaker levels' weight: those carry no term
                # frequency, and the floor lifted common names and switchboard phones back to an
                # average weight; with the hold rules off, group precision fell 0.947 -> 0.934 for
                # contacts and 0.960 -> 0.924 for leads on the demo.)
                at = np.flatnonzero(lv == tl)
                out[at, j] = np.maximum(out[at, j], 0.0)
        return out

    def prior_weight(self) -> float:
        return math.log2(self.prior / (1 - self.prior))

    def weights(self, cv: ComparisonVectors) -> np.ndarray:
        """The match weight (bits, prior included) of every pair, without holding every pair's
        contributions at once; equal to prior_weight() + contributions(cv).sum(axis=1)."""
        return _chunked_weights(self, cv)

    def score(self, cv: ComparisonVectors) -> tuple[np.ndarray, np.ndarray]:
        """(match probability, contributions) for every pair."""
        contrib = self.contributions(cv)
        return probability(total_weight(self.prior_weight(), contrib)), contrib

    def _check(self, cv: ComparisonVectors) -> None:
        check_fits(self, cv)

    # -- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"kind": self.kind, "comparisons": self.comparisons, "levels": self.levels, "m": self.m,
                "u": self.u, "tf_level": self.tf_level, "tf_total": self.tf_total, "prior": self.prior,
                "training": self.training}

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> "FSModel":
        d = json.loads(Path(path).read_text())
        if d.get("kind") == "logistic":
            return LogisticModel.from_dict(d)
        return cls(**{k: d[k] for k in ("comparisons", "levels", "m", "u", "tf_level", "tf_total", "prior")},
                   training=d.get("training", {}))


def check_fits(model, cv: ComparisonVectors) -> None:
    """Refuse a model for comparison vectors it was not trained on: other comparisons, or the same ones
    with other levels (a model saved before a comparison gained a level would weigh them wrongly)."""
    if cv.names != model.comparisons:
        raise ValueError(f"The model was trained on comparisons {model.comparisons}, but the data has "
                         f"{cv.names}: map the same roles, or train a new model.")
    for c, trained in zip(cv.comparisons, model.levels):
        if list(c.levels) != list(trained):
            raise ValueError(f"The model was trained when {c.name} had the levels {list(trained)}; it has "
                             f"{list(c.levels)} now: train a new model.")


def probability(weight: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp2(-np.asarray(weight, dtype=np.float64)))


WEIGHT_CHUNK = 1 << 20


def _chunked_weights(model, cv: ComparisonVectors) -> np.ndarray:
    out = np.empty(len(cv.levels), dtype=np.float64)
    prior = model.prior_weight()
    for start in range(0, len(out), WEIGHT_CHUNK):
        part = slice(start, start + WEIGHT_CHUNK)
        out[part] = total_weight(prior, model.contributions(cv, part))
    return out


def total_weight(prior: float, contributions: np.ndarray) -> np.ndarray:
    """prior + the contributions of each row, added column by column (the same order everywhere, so
    a pair's weight is the same number whichever rows it was computed with)."""
    out = np.full(len(contributions), prior, dtype=np.float64)
    for j in range(contributions.shape[1]):
        out += contributions[:, j]
    return out


# -- training ---------------------------------------------------------------------------------

def estimate_u(p: Prepared, cv: ComparisonVectors, n_pairs: int, seed: int) -> list[np.ndarray]:
    """u per level from random record pairs; exact levels from value frequencies."""
    n = len(p)
    rng = np.random.default_rng(seed)
    n_pairs = int(min(n_pairs, max(n * (n - 1) // 2, 1)))
    # (a table of one record or none, e.g. a CRM without leads yet: no pair to draw, u from the priors)
    a = rng.integers(0, max(n, 1), n_pairs)
    b = rng.integers(0, max(n, 1), n_pairs)
    keep = a != b
    rcv = compare(p, a[keep], b[keep], cv.comparisons)
    u = []
    for j, c in enumerate(cv.comparisons):
        k = len(c.levels)
        lv = rcv.levels[:, j]
        counts = np.bincount(lv[lv != NULL].astype(np.int64), minlength=k).astype(float)
        total = max(counts.sum(), 1.0)
        probs = np.maximum(counts, 0.5) / total  # a level never seen in the sample is rare, not impossible
        if c.tf_level is not None and counts[c.tf_level] < 20:
            # too few random pairs agree exactly to estimate it: use the value frequencies instead
            probs[c.tf_level] = _u_exact(_value_counts(p, c))
        probs[0] = max(1.0 - probs[1:].sum(), 0.01)
        u.append(probs / probs.sum())
    return u


def _u_exact(counts: np.ndarray) -> float:
    """Chance that two random records (both holding a value) share one: sum of c(c-1) / N(N-1)."""
    total = counts.sum()
    if total < 2:
        return 0.5
    return max(float((counts * (counts - 1)).sum()) / (total * (total - 1)), 1.0 / (total * total))


def _value_counts(p: Prepared, c) -> np.ndarray:
    """How many records hold each value of a comparison's column."""
    frames = {"phone": ("phones", "e164"), "email": ("emails", "canonical"), "website": ("sites", "domain")}
    if c.name in frames:
        frame, col = frames[c.name]
        if not len(getattr(p, frame)):
            return np.zeros(0)
        # the frames hold each value once per record already
        codes, values = p.frame_codes(frame, col)
        return np.bincount(codes[codes >= 0], minlength=len(values)).astype(float)
    col = getattr(c, "column", None) or {"first_name": "first_raw"}.get(c.name)
    if col not in p.records.columns:
        return np.zeros(0)
    codes, values = p.codes(col)
    counts = np.bincount(codes[codes >= 0], minlength=len(values)).astype(float)
    return counts[counts > 0]


def _patterns(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of the level matrix (in sorted order) and how often each occurs. Each row
    is read as one integer (levels + 1 as digits), so this is a sort of a single column."""
    if len(levels) == 0:
        return levels, np.zeros(0)
    levels = np.asarray(levels)
    radix = int(levels.max(initial=0)) + 2  # levels run from -1 (null) to max
    if levels.shape[1] * math.log2(radix) >= 62:  # too wide for one integer
        uniq, counts = np.unique(levels, axis=0, return_counts=True)
        return uniq, counts.astype(float)
    code = np.zeros(len(levels), dtype=np.int64)
    for j in range(levels.shape[1]):
        code = code * radix + (levels[:, j].astype(np.int64) + 1)
    code.sort()
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    counts = np.diff(np.r_[starts, len(code)]).astype(float)
    ucode = code[starts]
    uniq = np.empty((len(ucode), levels.shape[1]), dtype=levels.dtype)
    for j in range(levels.shape[1] - 1, -1, -1):
        uniq[:, j] = ucode % radix - 1
        ucode = ucode // radix
    return uniq, counts


def _initial_m(k: int) -> np.ndarray:
    m = np.array([0.05] + [0.1] * (k - 2) + [0.85]) if k > 1 else np.array([1.0])
    return m / m.sum()


# Small tables: EM over a few dozen candidate pairs (a handful of matches) sets m to zero for every
# level it never sees among them, so a fuzzy agreement, or even an exact one, weighs -15 bits
# against a match, and an exact copy is missed. Two guards, as mature record-linkage tools use:
# - m gets PRIOR_MATCHES pseudo-matches spread as _initial_m (a Dirichlet prior, the MAP estimate
#   fastLink offers): with thousands of matches it moves m by a fraction of a percent, with three
#   it keeps every level plausible instead of impossible;
# - the levels are ordered weakest first, so the weights are made monotone (m/u never falls from
#   one level to the next stronger one): an exact agreement is never less evidence than a fuzzy one,
#   nor any agreement less than a disagreement, whatever a sample without such pairs suggests.
PRIOR_MATCHES = 5.0


def monotone_m(m: np.ndarray, u: np.ndarray) -> np.ndarray:
    """m with m/u non-decreasing over the levels (weakest first): adjacent levels that break the
    order are pooled to their common ratio sum(m)/sum(u) (pool-adjacent-violators, weighted by u,
    the closest monotone fit), so m still sums as before and only the violating levels move."""
    m, u = np.asarray(m, dtype=np.float64), np.asarray(u, dtype=np.float64)
    blocks: list[list[float]] = []  # [sum m, sum u, levels]
    for mk, uk in zip(m, u):
        blocks.append([mk, uk, 1])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] > blocks[-1][0] * blocks[-2][1]:
            sm, su, n = blocks.pop()
            blocks[-1][0] += sm
            blocks[-1][1] += su
            blocks[-1][2] += n
    ratio = np.repeat([b[0] / b[1] for b in blocks], [b[2] for b in blocks])
    return ratio * u


def run_em(levels: np.ndarray, u: list[np.ndarray], m0: list[np.ndarray], active: list[int],
           prior: float = 0.3, iterations: int = 40, tol: float = 1e-6,
           fix_m: bool = False, m_prior: list[np.ndarray] | None = None,
           prior_matches: float = 0.0) -> tuple[list[np.ndarray], float]:
    """EM for m (of the ``active`` comparisons) and the prior, with u fixed. With ``m_prior``, each
    m is estimated as if ``prior_matches`` more matches had shown its levels in those shares."""
    pats, counts = _patterns(levels)
    m = [x.copy() for x in m0]
    if not counts.sum():  # no candidate pairs: nothing to learn from
        return m, prior
    for _ in range(iterations):
        log_m = np.zeros(len(pats))
        log_u = np.zeros(len(pats))
        for j in active:
            lv = pats[:, j]
            ok = lv != NULL
            log_m[ok] += np.log(np.maximum(m[j][lv[ok]], 1e-12))
            log_u[ok] += np.log(u[j][lv[ok]])
        lm = np.log(prior) + log_m
        lu = np.log(1 - prior) + log_u
        post = 1.0 / (1.0 + np.exp(np.clip(lu - lm, -700, 700)))
        wpost = post * counts
        new_prior = float(np.clip(wpost.sum() / counts.sum(), 1e-6, 1 - 1e-6))
        delta = abs(new_prior - prior)
        prior = new_prior
        if not fix_m:
            for j in active:
                lv = pats[:, j]
                ok = lv != NULL
                k = len(m[j])
                num = np.bincount(lv[ok].astype(np.int64), weights=wpost[ok], minlength=k)
                if m_prior is not None:
                    num = num + prior_matches * m_prior[j]
                if num.sum() > 0:
                    new = np.maximum(num / num.sum(), 1e-6)
                    new /= new.sum()
                    delta = max(delta, float(np.abs(new - m[j]).max()))
                    m[j] = new
        if delta < tol:
            break
    return m, prior


def train_fellegi_sunter(p: Prepared, cv: ComparisonVectors, rule_bits: np.ndarray, rule_names: list[str], *,
                         seed: int = 42, random_pairs: int = 1_000_000, max_em_pairs: int = 2_000_000,
                         prior_pairs: np.ndarray | None = None) -> FSModel:
    """m by EM per blocking rule, u from random pairs, and the prior from the candidate pairs
    (``prior_pairs``: a mask of those that count, default all)."""
    comps = cv.comparisons
    names = cv.names
    u = estimate_u(p, cv, random_pairs, seed)
    rng = np.random.default_rng(seed)
    sums = [np.zeros(len(c.levels)) for c in comps]
    runs = [0] * len(comps)
    sessions = []
    for bit, rule in enumerate(rule_names):
        fixed = RULE_FIXES.get(rule)
        if fixed is None or not fixed & set(names):
            continue
        idx = np.flatnonzero(rule_bits >> bit & 1)
        if len(idx) < 50:
            continue
        if len(idx) > max_em_pairs:
            idx = np.sort(rng.choice(idx, max_em_pairs, replace=False))
        active = [j for j, n in enumerate(names) if n not in fixed]
        m0 = [_initial_m(len(c.levels)) for c in comps]
        m, prior = run_em(cv.levels[idx], u, m0, active, m_prior=m0, prior_matches=PRIOR_MATCHES)
        for j in active:
            sums[j] += m[j]
            runs[j] += 1
        sessions.append({"rule": rule, "pairs": int(len(idx)), "prior": prior, "estimated": [names[j] for j in active]})
    m_final = []
    for j, c in enumerate(comps):
        if runs[j]:
            m_final.append(sums[j] / runs[j])
        else:  # no session could estimate it: EM over every candidate pair
            m0 = [_initial_m(len(x.levels)) for x in comps]
            mj, _ = run_em(cv.levels, u, m0, [j] + [k for k in range(len(comps)) if k != j], m_prior=m0,
                           prior_matches=PRIOR_MATCHES)
            m_final.append(mj[j])
    m_final = [monotone_m(mj, uj) for mj, uj in zip(m_final, u)]
    few = [names[j] for j in range(len(comps)) if not runs[j]]
    if few:
        log.info("m of %s estimated from %d candidate pairs only (no blocking rule had 50): prior-weighted, "
                 "monotone", ", ".join(few), len(cv.levels))
    tf_total = [_tf_total(p, c) for c in comps]
    model = FSModel(names, [list(c.levels) for c in comps], [list(map(float, x)) for x in m_final],
                    [list(map(float, x)) for x in u], [c.tf_level for c in comps], tf_total, 0.5,
                    training={"seed": seed, "random_pairs": random_pairs, "candidate_pairs": int(len(cv.levels)),
                              "sessions": sessions, "m_from_all_candidate_pairs": few,
                              "m_prior_matches": PRIOR_MATCHES})
    # The prior is the chance that two records taken at random are one entity, as u is the chance
    # that they agree by accident: a pair's weight then counts every agreement, the blocked ones
    # included, against how many records could agree by accident. (The share of matches among
    # candidate pairs would count a blocked agreement twice and ignore the table's size: with ten
    # times the records, a same-birthdate namesake is ten times likelier to be a coincidence.)
    all_pairs = len(p) * (len(p) - 1) / 2
    bits = model.weights(cv)
    prior, expected = estimate_prior(bits if prior_pairs is None else bits[prior_pairs], all_pairs)
    model.prior = prior
    model.training.update({"prior": "expected matches among all record pairs", "record_pairs": all_pairs,
                           "expected_matches": expected,
                           "prior_candidate_pairs": int(len(bits) if prior_pairs is None else prior_pairs.sum())})
    return model


def estimate_prior(bits: np.ndarray, all_pairs: float, iterations: int = 500) -> tuple[float, float]:
    """The share of matches among all record pairs, given each candidate pair's weight without a
    prior (``bits``, log2 of m/u): EM for the mixing proportion over every record pair, where pairs
    that no blocking rule proposed count as non-matches. Returns (prior, expected matches)."""
    if all_pairs < 1:
        return 0.5, 0.0
    if len(bits) == 0:  # no pair to learn from: one match among all pairs at most
        return 1.0 / (all_pairs + 1.0), 0.0
    # weights binned to a thousandth of a bit: the same answer, over a few thousand values
    binned = np.round(np.asarray(bits, dtype=np.float64) * 1000).astype(np.int64)
    binned.sort()
    starts = np.flatnonzero(np.r_[True, binned[1:] != binned[:-1]])
    counts = np.diff(np.r_[starts, len(binned)]).astype(np.float64)
    values = binned[starts] / 1000.0
    lam = min(len(bits) / all_pairs, 0.5)
    for _ in range(iterations):
        odds = math.log2(lam / (1 - lam))
        expected = float((counts * probability(odds + values)).sum())
        new = min(max(expected / all_pairs, 1e-15), 1 - 1e-9)
        if abs(math.log2(new) - math.log2(lam)) < 1e-9:
            lam = new
            break
        lam = new
    return float(lam), float(lam * all_pairs)


def _tf_total(p: Prepared, c) -> int:
    return int(_value_counts(p, c).sum()) if c.tf_level is not None else 0


# -- supervised -------------------------------------------------------------------------------

@dataclass
class LogisticModel:
    """Logistic regression over one-hot comparison levels, trained from labelled pairs. Its
    coefficients play the role of match weights, so explanations work the same way."""

    comparisons: list[str]
    levels: list[list[str]]
    coef: list[list[float]]  # per comparison, per level (bits)
    intercept: float
    kind: str = "logistic"
    training: dict = field(default_factory=dict)

    def contributions(self, cv: ComparisonVectors, rows=None) -> np.ndarray:
        check_fits(self, cv)
        levels = cv.levels if rows is None else cv.levels[rows]
        out = np.zeros(levels.shape, order="F")
        for j, w in enumerate(self.coef):
            out[:, j] = np.append(np.asarray(w, dtype=np.float64), 0.0)[levels[:, j]]
        return out

    def prior_weight(self) -> float:
        return self.intercept

    def weights(self, cv: ComparisonVectors) -> np.ndarray:
        return _chunked_weights(self, cv)

    def score(self, cv):
        contrib = self.contributions(cv)
        return probability(total_weight(self.intercept, contrib)), contrib

    def to_dict(self) -> dict:
        return {"kind": self.kind, "comparisons": self.comparisons, "levels": self.levels, "coef": self.coef,
                "intercept": self.intercept, "training": self.training}

    save = FSModel.save

    @classmethod
    def from_dict(cls, d: dict) -> "LogisticModel":
        return cls(d["comparisons"], d["levels"], d["coef"], d["intercept"], training=d.get("training", {}))


def train_logistic(cv: ComparisonVectors, labels: np.ndarray, seed: int = 42) -> LogisticModel:
    from sklearn.linear_model import LogisticRegression

    blocks, offsets = [], []
    for j, c in enumerate(cv.comparisons):
        k = len(c.levels)
        onehot = np.zeros((len(cv.levels), k))
        lv = cv.levels[:, j]
        ok = lv != NULL
        onehot[np.flatnonzero(ok), lv[ok]] = 1.0
        blocks.append(onehot)
        offsets.append(k)
    x = np.hstack(blocks)
    labels = np.asarray(labels).astype(int)
    if labels.min() == labels.max():
        raise ValueError("Supervised training needs both matching and non-matching labelled pairs.")
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x, labels)
    coef = clf.coef_[0] / math.log(2)  # natural log-odds to bits
    out, start = [], 0
    for k in offsets:
        out.append(list(map(float, coef[start:start + k])))
        start += k
    return LogisticModel(cv.names, [list(c.levels) for c in cv.comparisons], out,
                         float(clf.intercept_[0] / math.log(2)),
                         training={"labelled_pairs": int(len(labels)), "matches": int(labels.sum()), "seed": seed})
