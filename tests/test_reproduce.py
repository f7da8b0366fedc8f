"""`mlplab reproduce assignment2 --quick` end to end, and its page in headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_drawn, headless_chromium, small_images_npz

from mlplab.cli import cli

#: Every test here shares a quick reproduction (half a minute): the full suite only.
pytestmark = pytest.mark.slow


def _reproduce_quick(out: Path, data: Path) -> None:
    args = [
        "reproduce",
        "assignment2",
        "--quick",
        "--quiet",
        "--data",
        str(data),
        "--out",
        str(out),
    ]
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output


HOSTILE = 'a<img src=x onerror=alert(1)>[x](y"onfocus="alert(2))'


@pytest.fixture(scope="module")
def report(tmp_path_factory, real_data_dir) -> Path:
    """The quick reproduction, read from a data folder with a hostile name (links inside)."""
    base = tmp_path_factory.mktemp("reproduce")
    data = base / HOSTILE
    data.mkdir()
    for part in ("train", "test"):
        (data / part).symlink_to((real_data_dir / part).resolve(), target_is_directory=True)
    out = base / "out"
    _reproduce_quick(out, data)
    first = base / "first-run"  # as the fresh run left them (later tests run it again)
    first.mkdir()
    for name in ("report.md", "reproduce.json"):
        shutil.copy(out / name, first / name)
    return out


def test_hostile_data_folder_name_makes_no_markup(report):
    """The folder name appears in the report as text: no element or attribute comes of it."""
    from html.parser import HTMLParser

    seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            seen.append((tag, attrs))

    page = (report / "index.html").read_text()
    Collect().feed(page)
    attrs = {name for _tag, a in seen for name, _v in a}
    assert not attrs & {"onerror", "onfocus"}
    assert not [a for tag, a in seen if tag == "img" and not dict(a)["src"].startswith("data:")]
    assert not [a for tag, a in seen if tag == "a" and dict(a).get("href") == "y"]
    assert "a&lt;img src=x onerror=alert(1)&gt;[x](y&quot;onfocus=&quot;alert(2))" in page


def test_report_files_and_references(report):
    md = (report / "report.md").read_text()
    page = (report / "index.html").read_text()
    assert "QUICK RUN" in md and "QUICK RUN" in page
    for title in (
        "Gradient check",
        "Figure 3",
        "Figure 4",
        "search",
        "final model",
        "Sanity check",
    ):
        assert title in md, title
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(images) >= 5
    for img in images:
        assert (report / img).is_file(), img
    links = re.findall(r"\]\(([^)]+\.json)\)", md)
    assert links
    for link in links:
        assert (report / link).is_file(), link
    # every image is embedded in the HTML page: it opens without its neighbours
    assert page.count('src="data:image/png;base64,') == len(images)


def test_numbers_in_report_come_from_results(report):
    res = json.loads((report / "a2-ex3" / "results.json").read_text())
    assert f"{100 * res['test_accuracy']:.2f} %" in (report / "report.md").read_text()


def test_fresh_run_claims_no_reuse(report):
    first = report.parent / "first-run"
    done = json.loads((first / "reproduce.json").read_text())
    assert done["reused"] == [] and "a2-search" in done["ran"] and "a2-final/seed-2" in done["ran"]
    assert "reused" not in (first / "report.md").read_text()


def test_rerun_reuses_every_experiment_and_says_so(report, real_data_dir):
    before = (report / "a2-ex4" / "results.json").stat().st_mtime_ns
    ran = json.loads((report.parent / "first-run" / "reproduce.json").read_text())["ran"]
    _reproduce_quick(report, real_data_dir)
    assert (report / "a2-ex4" / "results.json").stat().st_mtime_ns == before
    done = json.loads((report / "reproduce.json").read_text())
    assert done["ran"] == [] and done["reused"] == ran
    n = len(ran)
    assert (
        f"(experiments already done were reused: {n} of {n})" in (report / "report.md").read_text()
    )


def test_changed_recipe_reruns_only_what_changed(report, real_data_dir, monkeypatch, tmp_path):
    from mlplab.reproduce.plan import PARTS

    out = tmp_path / "out"
    shutil.copytree(report, out, symlinks=True)  # the fixture's report stays as it was

    steps = list(PARTS["assignment2"])
    i = next(i for i, s in enumerate(steps) if s.label == "assignment 2: overfitting check")
    (show,) = steps[i].shows
    changed = dataclasses.replace(show.experiments[0], overrides={"lam": "0.001"})
    steps[i] = dataclasses.replace(
        steps[i], shows=(dataclasses.replace(show, experiments=(changed,)),)
    )
    monkeypatch.setitem(PARTS, "assignment2", tuple(steps))
    _reproduce_quick(out, real_data_dir)
    done = json.loads((out / "reproduce.json").read_text())
    assert done["ran"] == [changed.id] and changed.id not in done["reused"]
    res = json.loads((out / changed.id / "results.json").read_text())
    assert res["config"]["lam"] == 0.001
    n = len(done["reused"])
    assert f"reused: {n} of {n + 1})" in (out / "report.md").read_text()


def test_every_table_entry_has_a_runner_and_a_renderer():
    from mlplab.reproduce import SECTIONS
    from mlplab.reproduce.plan import PARTS, Show
    from mlplab.reproduce.runners import RUNNERS

    shows = [s for steps in PARTS.values() for st in steps for s in st.shows if isinstance(s, Show)]
    assert {s.render for s in shows} == set(SECTIONS)
    experiments = [e for s in shows for e in s.experiments]
    assert {e.kind for e in experiments} == set(RUNNERS)
    ids = [e.id for e in experiments]
    assert len(ids) == len(set(ids))  # one directory each


def test_page_in_headless_chromium(report, tmp_path):
    with headless_chromium(tmp_path / "profile", log_console=True) as driver:
        driver.get((report / "index.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
        )
        assert images and all(done and width > 0 for done, width in images), images
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        assert_drawn(shot, 800, 600)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 1366  # no horizontal scrolling on a laptop screen


def test_inline_markup_renders_in_html():
    from mlplab.report.document import _inline

    assert _inline("**46 %** of `x` in [r](a/b.json) <i>") == (
        '<strong>46 %</strong> of <code>x</code> in <a href="a/b.json">r</a> &lt;i&gt;'
    )


def test_second_reproduction_on_one_out_is_refused(tmp_path, real_data_dir):
    """Two reproductions on one --out would mix their records: the second waits for nobody."""
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    out.mkdir()
    hold = (
        "import sys, time, filelock; l = filelock.FileLock(sys.argv[1]); l.acquire(); "
        "print('held', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", hold, str(out / ".reproduce.lock")], stdout=subprocess.PIPE
    )
    try:
        assert p.stdout.readline().strip() == b"held"
        t = time.perf_counter()
        args = ["reproduce", "assignment2", "--quick", "--quiet", "--data", str(real_data_dir)]
        r = CliRunner().invoke(cli, [*args, "--out", str(out)])
        assert r.exit_code == 2 and "in use by another mlplab reproduce" in r.stderr
        assert time.perf_counter() - t < 30 and not (out / "report.md").exists()
    finally:
        p.kill()
        p.wait()


def test_bonus_quick_shows_the_ablation_with_every_runs_curves(tmp_path):
    """`reproduce bonus --quick`: the ablation table of bonus/best (whitening, batch norm,
    augmentation, label smoothing, and the free rows), each run's curves, all files present
    (on 8x8 images: the pipeline, not CIFAR-10's accuracy, is under test)."""
    out, data = tmp_path / "out", small_images_npz(tmp_path / "small.npz")
    args = ["reproduce", "bonus", "--quick", "--quiet", "--data", str(data)]
    r = CliRunner().invoke(cli, [*args, "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    rows = json.loads((out / "bonus-ablation" / "ablation.json").read_text())
    removed = [row["removed"] for row in rows]
    assert removed == [
        "nothing (full recipe)",
        "snapshot-ensemble",
        "flip-averaging",
        "batch-norm",
        "augmentation",
        "whitening",
        "label-smoothing",
    ]
    for row in rows:
        assert f"| {row['removed']} | {100 * row['test_accuracy']:.2f} %" in md
    for name in ("whitening", "batch-norm", "augmentation", "label-smoothing"):
        assert f"](bonus-ablation/no-{name}/curves.png)" in md
        assert (out / "bonus-ablation" / f"no-{name}" / "curves.png").is_file()
    full = json.loads((out / "bonus-ablation" / "full" / "results.json").read_text())
    assert full["config"]["zca_eps"] > 0 and full["config"]["flip_average"]
    # the tuning study: bonus/search's space (TPE, median pruning), --quick's two trials
    study = json.loads((out / "bonus-tuning" / "search.json").read_text())
    assert (study["sampler"], study["pruner"]) == ("tpe:5", "median:3:0")
    assert study["counts"]["coarse"]["complete"] == 2 and study["counts"]["fine"]["budget"] == 0
    assert "### Tuning study" in md and "sampler `tpe:5`, pruner `median:3:0`" in md
    assert "](bonus-tuning/search.png)" in md and (out / "bonus-tuning" / "search.png").is_file()
    assert rows[2]["test_accuracy"] == full["ensemble_test_accuracy_single_view"]
