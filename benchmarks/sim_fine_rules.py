"""How often each fine rule's interval contains the true optimum, on simulated coarse scores.

    python benchmarks/sim_fine_rules.py

Coarse scores are drawn like real ones: 20 values of lambda log-uniform in [1e-5, 1e-1], a
peak at 1e-3 of 52 % falling by ``c`` x (decades from the peak)^2, plus N(0, 0.4 points)
noise (the seed-to-seed noise of one 5,000-image validation score). ``c = 0.003`` is a flat
top like assignment 2's (-0.3 points one decade away), ``c = 0.01`` a sharper one. Prints,
per rule, the share of 300 draws whose interval contains 1e-3, the mean width in decades and
the mean distance of the interval's centre from the optimum.
"""

from __future__ import annotations

import math

import numpy as np

from mlplab.search.space import FineRule, Param

LAM = Param.make("lam", "log", 1e-5, 1e-1)
RULES = ("top-k:3", "smooth:0.2", "smooth:0.3", "smooth:0.4", "smooth:0.5")


def coarse_scores(
    seed: int, c: float, n: int = 20, noise: float = 0.004
) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    lams = 10 ** rng.uniform(-5, -1, n)
    return [(float(v), 0.52 - c * (math.log10(v) + 3) ** 2 + rng.normal(0, noise)) for v in lams]


def main(draws: int = 300) -> None:
    print(f"{'curve':>8} {'rule':>11} {'contains':>9} {'width':>6} {'centre off':>10}")
    for c in (0.003, 0.01):
        for text in RULES:
            rule, hits, widths, offs = FineRule.parse(text), 0, [], []
            for s in range(draws):
                lo, hi = rule.interval(LAM, coarse_scores(s, c))
                hits += lo <= 1e-3 <= hi
                widths.append(math.log10(hi / lo))
                offs.append(abs((math.log10(lo) + math.log10(hi)) / 2 + 3))
            print(
                f"{c:>8} {text:>11} {hits / draws:>9.1%} {np.mean(widths):>6.2f} "
                f"{np.mean(offs):>10.2f}"
            )


if __name__ == "__main__":
    main()
