"""``mlplab reproduce``: run the experiments of DD2424 assignments 2 and 3 (and the bonus
part) from the shipped recipes and write a report (``report.md`` and ``index.html``).

The parts are data (:mod:`.plan`: steps, sections, experiments); :mod:`.runners` runs each
experiment with the library function its command calls; the renderers of
:mod:`.trainings` and :mod:`.studies` draw the sections from the results. Every number in
the report is read from a JSON file written by the run it comes from, and the report links
that file. Experiments already done for the same configuration, options and data are
reused (:mod:`mlplab.train.reuse`), so an interrupted reproduction continues where it
stopped; ``force`` re-runs them. ``quick`` runs the same pipeline on a small subset with
few updates.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mlplab.data import load_cifar10
from mlplab.errors import MlplabError
from mlplab.fileio import atomic_write_json, file_lock, prepare_out_dir
from mlplab.report.document import Document, Section, Text, md_escape
from mlplab.reproduce import studies, trainings
from mlplab.reproduce.plan import PARTS, Heading, Show, Step
from mlplab.reproduce.runners import Context, run
from mlplab.train.reuse import Cache

__all__ = ["PARTS", "SECTIONS", "reproduce", "run_step"]

Renderer = Callable[[Show, list[Any], Context], list[Section]]
#: How each kind of section is drawn (the ``render`` of a :class:`.plan.Show`).
SECTIONS: dict[str, Renderer] = {
    "run": trainings.run,
    "final": trainings.final,
    "bn-compare": trainings.bn_compare,
    "gradcheck": studies.gradcheck,
    "search": studies.search,
    "sensitivity": studies.sensitivity,
    "lr-range": studies.lr_range,
    "ablation": studies.ablation,
}


def run_step(step: Step, ctx: Context) -> list[Section]:
    """Run (or find done) every experiment of ``step``, then draw its sections."""
    results = [[run(e, ctx) for e in s.experiments] for s in step.shows if isinstance(s, Show)]
    sections: list[Section] = []
    for s in step.shows:
        if isinstance(s, Heading):
            sections.append(Section(s.title, [Text(s.text)] if s.text else []))
        else:
            sections += SECTIONS[s.render](s, results.pop(0), ctx)
    return sections


def reproduce(
    part: str,
    out: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    workers: int = 1,
    quick: bool = False,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Run ``part`` (``assignment2``, ``assignment3``, ``bonus`` or ``all``); return index.html.

    One reproduction at a time owns ``out`` (a second one is refused at once)."""
    if part not in (*PARTS, "all"):
        raise MlplabError(f"unknown part {part!r}; choose {', '.join(PARTS)} or all")
    outp = prepare_out_dir(out, overwrite=True)
    busy = f"{outp} is in use by another mlplab reproduce; wait for it or use another --out"
    with file_lock(outp / ".reproduce.lock", busy, f"output directory {outp}"):
        return _reproduce(part, outp, data_dir, workers, quick, force, progress, echo)


def _reproduce(
    part: str,
    outp: Path,
    data_dir: str | os.PathLike | None,
    workers: int,
    quick: bool,
    force: bool,
    progress: bool,
    echo: Callable[[str], None],
) -> Path:
    start = time.perf_counter()
    raw = load_cifar10(data_dir, progress=progress)
    ctx = Context(
        outp, raw, quick=quick, workers=workers, progress=progress, cache=Cache(force=force)
    )
    steps = [s for p in (PARTS if part == "all" else [part]) for s in PARTS[p]]
    sections: list[Section] = []
    bar = tqdm(
        total=len(steps), unit="experiment", disable=not progress, position=1, desc="reproduce"
    )
    for i, step in enumerate(steps, start=1):
        echo(f"[{i}/{len(steps)}] {step.label}")
        bar.set_description(step.label)
        sections += run_step(step, ctx)
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    reused, ran = ctx.cache.reused, ctx.cache.ran
    banner = (
        "QUICK RUN: a small subset with few updates, a smoke test; these numbers are not "
        "comparable with the course's."
        if quick
        else ""
    )
    about = (
        f"Produced by `mlplab reproduce {part}{' --quick' if quick else ''}` "
        f"from the shipped recipes on {md_escape(raw.source)}; wall time of this "
        f"invocation {seconds / 60:.1f} min"
        + (
            f" (experiments already done were reused: {len(reused)} of {len(reused) + len(ran)})"
            if reused
            else ""
        )
        + ". Every number links the JSON file it was read from."
    )
    doc = Document(
        f"mlplab reproduction: {part}",
        banner,
        [Section("About this report", [Text(about)]), *sections],
    )
    atomic_write_json(
        outp / "reproduce.json",
        {
            "part": part,
            "quick": quick,
            "seconds": seconds,
            "data": raw.source,
            "reused": [p.relative_to(outp).as_posix() for p in reused],
            "ran": [p.relative_to(outp).as_posix() for p in ran],
        },
    )
    _, page = doc.write(outp)
    return page
