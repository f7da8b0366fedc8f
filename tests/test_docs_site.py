"""The documentation site builds with ``mkdocs build --strict`` (which executes the tutorials),
has every page its sections promise, and the tutorials' figures render in a browser."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import headless_chromium

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = ["tutorials/assignment2.py", "tutorials/assignment3.py"]
#: every page the site promises (source under docs/ -> built page)
PAGES = {
    "index.md": "index.html",
    "tutorials/assignment2.py": "tutorials/assignment2/index.html",
    "tutorials/assignment3.py": "tutorials/assignment3/index.html",
    "how-to/own-data.md": "how-to/own-data/index.html",
    "how-to/search-on-several-machines.md": "how-to/search-on-several-machines/index.html",
    "how-to/resume.md": "how-to/resume/index.html",
    "how-to/export.md": "how-to/export/index.html",
    "how-to/sklearn-pipeline.md": "how-to/sklearn-pipeline/index.html",
    "how-to/inspect-a-model.md": "how-to/inspect-a-model/index.html",
    "how-to/reproduce.md": "how-to/reproduce/index.html",
    "reference/cli.md": "reference/cli/index.html",
    "reference/recipes.md": "reference/recipes/index.html",
    "reference/data.md": "reference/data/index.html",
    "reference/api/index.md": "reference/api/index.html",
    "reference/api/nn.md": "reference/api/nn/index.html",
    "reference/api/optim.md": "reference/api/optim/index.html",
    "reference/api/data.md": "reference/api/data/index.html",
    "reference/api/train.md": "reference/api/train/index.html",
    "reference/api/gradcheck.md": "reference/api/gradcheck/index.html",
    "reference/api/options.md": "reference/api/options/index.html",
    "reference/files-and-errors.md": "reference/files-and-errors/index.html",
    "reference/dependencies.md": "reference/dependencies/index.html",
    "explanations/architecture.md": "explanations/architecture/index.html",
    "explanations/training.md": "explanations/training/index.html",
    "explanations/gradient-checks.md": "explanations/gradient-checks/index.html",
    "explanations/search.md": "explanations/search/index.html",
    "explanations/search-samplers.md": "explanations/search-samplers/index.html",
    "explanations/performance.md": "explanations/performance/index.html",
    "explanations/results.md": "explanations/results/index.html",
}
#: pages with a source of their own kind (executed tutorials, a how-to that needs a server)
SEPARATE = {*TUTORIALS, "how-to/search-on-several-machines.md"}
PNG = re.compile(r'<img[^>]+src="data:image/png;base64,')


def _nav_files(nav) -> list[str]:
    out: list[str] = []
    for item in nav:
        for value in item.values() if isinstance(item, dict) else [item]:
            out += _nav_files(value) if isinstance(value, list) else [value]
    return out


def test_the_nav_names_every_promised_page_and_only_pages_that_exist():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_files(config["nav"])
    assert sorted(nav) == sorted(PAGES)
    pages = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert not pages - set(nav), f"pages in docs/ that the nav leaves out: {pages - set(nav)}"
    missing = [p for p in nav if not (REPO / "docs" / p).is_file()]
    absent = [p for p in missing if p in SEPARATE]
    assert missing == absent, f"pages in the nav but not in docs/: {missing}"
    if absent:
        pytest.skip(f"{absent} not in docs/ (the tutorials and the multi-machine how-to)")


def test_the_tutorials_are_executed_and_a_failing_cell_fails_the_build():
    plugins = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))["plugins"]
    (jupyter,) = [
        p["mkdocs-jupyter"] for p in plugins if isinstance(p, dict) and "mkdocs-jupyter" in p
    ]
    assert jupyter["include"] == ["tutorials/*.py"]
    assert jupyter["execute"] is True and jupyter["allow_errors"] is False
    assert jupyter["cache"] is False  # every build runs them again


@pytest.fixture(scope="module")
def site(tmp_path_factory, real_data_dir) -> Path:
    """The site built into a temporary directory (the tutorials read the real images), or
    the one ``.ci/run`` built (``$MLPLAB_BUILT_SITE``)."""
    absent = [t for t in TUTORIALS if not (REPO / "docs" / t).is_file()]
    if absent:
        pytest.skip(f"the site's tutorials {absent} are not in docs/: nothing to execute")
    built = os.environ.get("MLPLAB_BUILT_SITE")
    if built:  # .ci/run built this tree's site with mkdocs build --strict: check that build
        assert (Path(built) / "index.html").is_file(), f"no site in MLPLAB_BUILT_SITE={built}"
        return Path(built)
    out = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "MLPLAB_DATA": str(real_data_dir),
        "MPLBACKEND": "Agg",
        "NO_MKDOCS_2_WARNING": "1",
    }
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-10000:]
    return out


@pytest.mark.slow
def test_every_page_is_built(site):
    missing = [html for html in PAGES.values() if not (site / html).is_file()]
    assert not missing, missing
    cli = (site / "reference/cli/index.html").read_text(encoding="utf-8")
    assert "--resume" in cli and "mlplab reproduce" in cli  # generated from the commands
    recipes = (site / "reference/recipes/index.html").read_text(encoding="utf-8")
    assert "assignment2/ex3" in recipes and "eta_max" in recipes and "beta2" in recipes
    assert "<!-- mlplab:" not in recipes
    api = (site / "reference/api/index.html").read_text(encoding="utf-8")
    assert "MLPClassifier" in api and "load_recipe" in api


@pytest.mark.slow
@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_the_tutorials_show_their_figures(site, tutorial):
    html = (site / PAGES[tutorial]).read_text(encoding="utf-8")
    assert PNG.search(html), f"{tutorial}: no rendered figure"
    assert "Traceback" not in html


@pytest.mark.slow
def test_the_figures_render_in_headless_chromium(site, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium(tmp_path / "profile") as driver:
        for tutorial in TUTORIALS:
            driver.get((site / PAGES[tutorial]).as_uri())
            WebDriverWait(driver, 30).until(
                lambda d: d.execute_script(
                    "return document.readyState === 'complete' && "
                    "Array.from(document.images).every(i => i.complete)"
                )
            )
            figures = driver.execute_script(
                "return Array.from(document.images)"
                ".filter(i => i.src.startsWith('data:image/png'))"
                ".map(i => [i.complete, i.naturalWidth])"
            )
            assert figures, f"{tutorial}: no figure in the page"
            assert all(done and width > 0 for done, width in figures), (tutorial, figures)
