"""`mlplab reproduce assignment2 --quick` end to end, and its page in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlplab.cli import cli


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


def test_rerun_skips_finished_experiments(report, real_data_dir):
    before = (report / "a2-ex4" / "results.json").stat().st_mtime_ns
    _reproduce_quick(report, real_data_dir)
    assert (report / "a2-ex4" / "results.json").stat().st_mtime_ns == before


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_page_in_headless_chromium(report, tmp_path):
    found = _chromium()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run)")
        pytest.skip("chromium/chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1366,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(arg)
    opts.binary_location = found[0]
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=opts)
    try:
        driver.get((report / "index.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
        )
        assert images and all(done and width > 0 for done, width in images), images
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 1366  # no horizontal scrolling on a laptop screen
    finally:
        driver.quit()


def test_inline_markup_renders_in_html():
    from mlplab.report.document import _inline

    assert _inline("**46 %** of `x` in [r](a/b.json) <i>") == (
        '<strong>46 %</strong> of <code>x</code> in <a href="a/b.json">r</a> &lt;i&gt;'
    )
