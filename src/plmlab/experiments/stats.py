"""Statistics over seeds: mean with a 95 % t-interval, Welch's t-test, "within noise".

scipy is not a dependency, so Student's t distribution is computed here: its CDF through the
regularized incomplete beta function (Lentz's continued fraction, Numerical Recipes 6.4) and
its quantile by bisection on that CDF. Both are exact to ~1e-10, far below what a handful of
seeds can resolve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ALPHA = 0.05  # two-sided: 95 % intervals, p < 0.05 is "beyond noise"


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t value below which a fraction p of the distribution lies (bisection on t_cdf)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def stdev(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0 for one value."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def mean_ci(values: Sequence[float], level: float = 1 - ALPHA) -> tuple[float, float | None]:
    """(mean, half-width of the t-interval); the half-width is None for a single value."""
    values = list(values)
    if not values:
        raise ValueError("no values")
    if len(values) < 2:
        return mean(values), None
    n = len(values)
    return mean(values), t_quantile(0.5 + level / 2, n - 1) * stdev(values) / math.sqrt(n)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances); None with under 2 values a side.
    Two samples without any spread give 1.0 when equal and 0.0 when not."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = stdev(a) ** 2 / len(a), stdev(b) ** 2 / len(b)
    diff = mean(a) - mean(b)
    if va + vb == 0.0:
        return 1.0 if diff == 0.0 else 0.0
    t = diff / math.sqrt(va + vb)
    # Welch-Satterthwaite degrees of freedom
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return 2.0 * (1.0 - t_cdf(abs(t), df))


def intervals_overlap(a: Sequence[float], b: Sequence[float]) -> bool | None:
    (ma, ha), (mb, hb) = mean_ci(a), mean_ci(b)
    if ha is None or hb is None:
        return None
    return abs(ma - mb) <= ha + hb


def within_noise(a: Sequence[float], b: Sequence[float]) -> bool | None:
    """True when the two arms' difference is within seed noise (Welch p >= 0.05); None when one
    seed per arm leaves the noise unmeasured."""
    p = welch_p(a, b)
    return None if p is None else p >= ALPHA


def fmt_ci(values: Sequence[float], digits: int = 3) -> str:
    """'4.123 ± 0.050' (mean ± 95 % half-width), or '4.123' for one seed or no spread."""
    m, h = mean_ci(values)
    return f"{m:.{digits}f}" if not h else f"{m:.{digits}f} ± {h:.{digits}f}"


def compare(name_a: str, a: Sequence[float], name_b: str, b: Sequence[float], what: str,
            lower_is_better: bool = True, digits: int = 3) -> str:
    """One sentence: which arm is better on `what`, by how much, and whether that is beyond noise."""
    ma, mb = mean(a), mean(b)
    better_a = ma < mb if lower_is_better else ma > mb
    winner, loser = (name_a, name_b) if better_a else (name_b, name_a)
    gap = abs(ma - mb)
    p = welch_p(a, b)
    if p is None:
        noise = "one seed per arm, so noise is not measured"
    elif p >= ALPHA:
        noise = f"within noise, Welch p = {p:.2f}"
    else:
        noise = f"beyond noise, Welch p = {p:.3f}"
    if f"{gap:.{digits}f}" == f"{0.0:.{digits}f}":  # "beats ... by 0.000" would claim a winner the digits do not show
        return f"{name_a} and {name_b} tie on {what} ({fmt_ci(a, digits)} and {fmt_ci(b, digits)}; {noise})."
    return f"{winner} beats {loser} on {what} by {gap:.{digits}f} ({noise})."
