"""What ``mlplab reproduce`` runs and shows: each part of the course as a table of steps.

A :class:`Step` is one progress line; it shows :class:`Heading` sections and
:class:`Show` sections, each drawn by a renderer (``render``, a key of
``reproduce.SECTIONS``) from the results of its :class:`Experiment` rows. An experiment
runs (or is found done, see :mod:`mlplab.train.reuse`) by the runner of its ``kind`` (a
key of :data:`mlplab.reproduce.runners.RUNNERS`) into ``OUT/<id>``: its id is its
directory and the only place that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Experiment:
    """One experiment: ``recipe`` with ``overrides``, run by the runner of ``kind``."""

    id: str  # its directory under --out (the report links the files in it)
    kind: str  # train, seeds, search, gradcheck, sensitivity, lr-range or ablation
    recipe: str = ""
    overrides: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)  # the runner's own settings
    quick: Mapping[str, Any] = field(default_factory=dict)  # options replaced under --quick
    best_of: Experiment | None = None  # the search whose best setting joins the overrides


@dataclass(frozen=True)
class Heading:
    """A part's heading: a level-2 section with at most one paragraph."""

    title: str
    text: str = ""


@dataclass(frozen=True)
class Show:
    """Report section(s) drawn by the renderer ``render`` from ``experiments``' results."""

    render: str
    title: str
    experiments: tuple[Experiment, ...]
    text: str = ""
    curves: tuple[tuple[Experiment, str], ...] = ()  # runs whose curves are shown, captions


@dataclass(frozen=True)
class Step:
    """One line of progress: its sections, in report order."""

    label: str
    shows: tuple[Heading | Show, ...]


#: --quick: a small subset and few updates, the same pipeline (see runners.quick_overrides)
QUICK = {"split": "2000/500", "n_s_k": "0", "n_s": "25", "record_every": "10"}
QUICK_TRIALS = 2
FINAL_SEEDS = (0, 1, 2)  # the final model is trained with each; the report gives mean ± sd
#: What the course and student reports found, shown next to each result.
REFERENCE = {
    "assignment2/ex3": "≈ 46 %",
    "assignment2/ex4": "≈ 47.5 %",
    "assignment2/overfit": "100 % train",
    "assignment2/final": "51.5-54.5 %",
    "assignment3/3layer": "≈ 52 %",
    "assignment3/3layer-bn": "≈ 53.5 %",
    "assignment3/9layer": "≈ 42 %",
    "assignment3/9layer-bn": "≈ 51 %",
}
#: The gradient checks of assignment 2: (label, input dimensions, samples, hidden, batch norm)
GRADCHECK_CASES = (
    ("3072-50-10, first 20 dims, 5 samples", 20, 5, (50,), False),
    ("3072-50-10, all 3072 dims, 20 samples", 3072, 20, (50,), False),
    ("3072-50-50-10 with batch norm, 20 dims, 10 samples", 20, 10, (50, 50), True),
)
# ingredients of bonus/best ablated by the report (each costs a full training)
ABLATED = ("whitening", "batch-norm", "augmentation", "label-smoothing")

# -- the experiments: one row each (id: its directory under --out) --------------------------
A2_GRADCHECK = Experiment("a2-gradcheck", "gradcheck", options={"cases": GRADCHECK_CASES})
A2_EX3 = Experiment("a2-ex3", "train", "assignment2/ex3")
A2_EX4 = Experiment("a2-ex4", "train", "assignment2/ex4")
A2_SEARCH = Experiment("a2-search", "search", "assignment2/search", quick={"trials": QUICK_TRIALS})
A2_FINAL = Experiment(
    "a2-final", "seeds", "assignment2/final", options={"seeds": FINAL_SEEDS}, best_of=A2_SEARCH
)
A2_OVERFIT = Experiment("a2-overfit", "train", "assignment2/overfit")
A3_3 = Experiment("a3-3layer", "train", "assignment3/3layer")
A3_3BN = Experiment("a3-3layer-bn", "train", "assignment3/3layer-bn")
A3_9 = Experiment("a3-9layer", "train", "assignment3/9layer")
A3_9BN = Experiment("a3-9layer-bn", "train", "assignment3/9layer-bn")
A3_SEARCH = Experiment(
    "a3-search", "search", "assignment3/search-bn", quick={"trials": QUICK_TRIALS}
)
A3_SENSITIVITY = Experiment("a3-sensitivity", "sensitivity", "assignment3/sensitivity")
LR_RANGE = Experiment(
    "bonus-lr-range", "lr-range", "assignment2/ex3", options={"epochs": 8.0}, quick={"epochs": 2.0}
)
TUNING = Experiment(
    "bonus-tuning", "search", "bonus/search", quick={"trials": QUICK_TRIALS, "fine_trials": 0}
)
ABLATION = Experiment("bonus-ablation", "ablation", "bonus/best", options={"only": ABLATED})

# -- the parts: steps of sections -------------------------------------------------------------
ASSIGNMENT2 = (
    Step(
        "assignment 2: gradient check",
        (
            Heading(
                "Assignment 2: a two-layer network",
                "A 3072-50-10 network with ReLU, cross-entropy loss + λ·ΣW², "
                "mini-batch gradient descent with a cyclical learning rate.",
            ),
            Show("gradcheck", "Gradient check", (A2_GRADCHECK,)),
        ),
    ),
    Step(
        "assignment 2: figures 3 and 4",
        (
            Show(
                "run",
                "Figure 3: one cycle",
                (A2_EX3,),
                "One cycle of the triangular schedule, n_s = 500.",
            ),
            Show("run", "Figure 4: three cycles", (A2_EX4,), "Three cycles, n_s = 800."),
        ),
    ),
    Step("assignment 2: λ search", (Show("search", "Coarse-to-fine search for λ", (A2_SEARCH,)),)),
    Step(
        "assignment 2: final model",
        (Show("final", "The final model: best λ on 49,000 images", (A2_FINAL,)),),
    ),
    Step(
        "assignment 2: overfitting check",
        (
            Show(
                "run",
                "Sanity check: overfitting 100 samples",
                (A2_OVERFIT,),
                "With λ = 0 the network must reach 100 % training accuracy on 100 samples.",
            ),
        ),
    ),
)
ASSIGNMENT3 = (
    Step(
        "assignment 3: BN comparisons",
        (
            Heading(
                "Assignment 3: k-layer networks with batch normalisation",
                "He initialisation, λ = 0.005, two cycles with n_s = 5 epochs on split `45k`; "
                "batch norm before every ReLU.",
            ),
            Show(
                "bn-compare",  # pairs: each depth without, then with batch norm
                "With and without batch norm",
                (A3_3, A3_3BN, A3_9, A3_9BN),
                curves=(
                    (A3_3BN, "3 layers with batch norm"),
                    (A3_9BN, "9 layers with batch norm"),
                    (A3_9, "9 layers without batch norm"),
                ),
            ),
        ),
    ),
    Step(
        "assignment 3: λ search",
        (Show("search", "λ search for the 3-layer net with batch norm", (A3_SEARCH,)),),
    ),
    Step(
        "assignment 3: initialisation study",
        (
            Show(
                "sensitivity",
                "Sensitivity to initialisation",
                (A3_SENSITIVITY,),
                "Every weight drawn from N(0, σ²); without batch norm small σ kills the "
                "signal, with batch norm the network learns anyway.",
            ),
        ),
    ),
)
BONUS = (
    Step(
        "bonus: learning-rate range test",
        (
            Heading("Bonus: beyond the course"),
            Show("lr-range", "Learning-rate range test", (LR_RANGE,)),
        ),
    ),
    Step(
        "bonus: tuning study",
        (
            Show(
                "search",
                "Tuning study",
                (TUNING,),
                "`bonus/search`: `bonus/best` shortened to 8 epochs, its peak rate, L2 and "
                "label smoothing drawn by Optuna's TPE, trials stopped early by median pruning.",
            ),
        ),
    ),
    Step(
        "bonus: ablation",
        (
            Show(
                "ablation",
                "The best recipe and its ablation",
                (ABLATION,),
                "`bonus/best`: the full recipe, then each ingredient removed in turn.",
            ),
        ),
    ),
)

PARTS: dict[str, tuple[Step, ...]] = {
    "assignment2": ASSIGNMENT2,
    "assignment3": ASSIGNMENT3,
    "bonus": BONUS,
}
