"""A scripted person answers on the real labelling page, in a real headless Chromium.

The env (``tests/hidden_success.py``) reports no success: only the state shown on the page tells.
The person reads each query's state off the page, judges it, and presses ``s`` or ``f``; the test
then checks that exactly those answers reached the refits and the counts. Needs Debian's
``chromium`` (``scripts/install_chromium.sh``) and Playwright; under CI both must be there.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.hidden_success import is_success

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ENV = "tests.hidden_success:HiddenCorridor-v0"

if not IN_CI and not Path(CHROMIUM).exists():
    pytest.skip("no chromium here: run scripts/install_chromium.sh as root (CI installs it)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright if not IN_CI else None
if sync_playwright is None:
    from playwright.sync_api import sync_playwright


def rewardswap(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agents.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False, **kwargs)


def state_of(text: str) -> list[float]:
    return [float(v) for v in re.search(r"state: \[([^\]]*)\]", text).group(1).split(",")]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """Recorded with no success flag, marked by a callable from the hidden truth, then fitted."""
    tmp = tmp_path_factory.mktemp("hidden")
    out = rewardswap("collect", "--env", ENV, "--policy", "tests.hidden_success:scripted", "--episodes", "16",
                     "--obs", "state", "--out", str(tmp / "buf"))
    assert out.returncode == 0, out.stderr
    assert "16 trajectories" in out.stdout and "unlabelled" in out.stdout
    refused = rewardswap("train-reward", "classifier", "--data", str(tmp / "buf"), "--out", str(tmp / "c.pt"))
    assert refused.returncode == 2 and "rewardswap label" in refused.stderr
    marked = rewardswap("label", "--data", str(tmp / "buf"), "--labeller", "tests.hidden_success:label_frames")
    assert marked.returncode == 0 and "marked 16 trajectories (16 labels)" in marked.stdout, marked.stderr
    fitted = rewardswap("train-reward", "classifier", "--data", str(tmp / "buf"), "--out", str(tmp / "c.pt"),
                        "--epochs", "5")
    assert fitted.returncode == 0 and "16 trajectory success marks" in fitted.stdout, fitted.stderr
    return tmp / "c.pt"


def test_a_person_answers_a_training_run_on_an_env_with_no_success_flag(classifier, browser, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "train-agent", "--env", ENV, "--reward", f"classifier:{classifier}",
         "--refit-every", "128", "--label-budget", "6", "--labeller", "web", "--steps", "400000", "--n-envs", "2",
         "--algo-kwargs", '{"n_steps": 64}', "--eval-freq", "100000", "--eval-episodes", "2", "--refit-epochs", "1",
         "--logdir", str(run)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in proc.stdout:  # the URL is printed at start
            if line.startswith("labelling page: "):
                url = line.split()[2]
                break
        assert url and url.startswith("http://127.0.0.1:"), "no labelling page URL printed"
        assert json.loads((run / "labelling_page.json").read_text())["url"] == url
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        page.goto(url)
        given: dict[int, bool] = {}
        deadline = time.monotonic() + 120
        while len(given) < 6 and time.monotonic() < deadline:  # answer the highlighted query, as a person would
            card = page.locator(".card.current")
            if card.count() == 0:
                page.wait_for_timeout(200)
                continue
            qid = int(card.get_attribute("data-query"))
            truth = is_success(state_of(card.inner_text()))
            page.keyboard.press("s" if truth else "f")
            given[qid] = truth
            page.wait_for_function(f"!document.querySelector('.card[data-query=\"{qid}\"]')")
        assert len(given) == 6, f"only {len(given)} queries appeared in time"
        # The refit after the answers: the page shows it, and it used every answer
        page.wait_for_function("(document.getElementById('last-refit') || {}).textContent?.includes('used 6 answers')",
                               timeout=60_000)
        assert page.locator("#labels-used").inner_text() == "6" and page.locator("#labels-left").inner_text() == "0"
        page.close()
        proc.send_signal(signal.SIGTERM)  # the run stops cleanly and writes its reports
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    answers = [json.loads(line) for line in (run / "labels" / "answers.jsonl").read_text().splitlines()]
    assert {a["query"]: a["label"] for a in answers} == given and {a["source"] for a in answers} == {"web"}
    summary = json.loads((run / "eval.json").read_text())
    assert summary["stopped_by_signal"] == "SIGTERM"
    assert summary["labels"]["queries"] == 6 and summary["labels"]["trajectory_marks"] == 16
    assert summary["labels_used"] == 22
    last = summary["refits"][-1]
    assert sorted(last["query_ids"]) == sorted(given) and last["answers_used"] == 6
    from reward_wrappers import load_reward_model

    refit_meta = load_reward_model(run / "refits" / f"refit_{last['refit']:03d}.pt").metadata
    assert refit_meta["refit"]["labels_used"] == 22 and sorted(refit_meta["refit"]["query_ids"]) == sorted(given)
    monitor = json.loads((run / "reward_monitor.json").read_text())
    assert monitor["true_success_reported"] is False and monitor["labels_used"] == 22
    assert monitor["estimates"]["uniform_answers_on_called"] <= 6  # the estimate reads only uniformly drawn answers
    assert json.loads((run / "run_config.json").read_text())["labels"]["queries"] == 6


def test_a_person_marks_recorded_trajectories_on_the_page(browser, tmp_path):
    buf = tmp_path / "buf"
    out = rewardswap("collect", "--env", ENV, "--policy", "tests.hidden_success:scripted", "--episodes", "4",
                     "--obs", "state", "--out", str(buf), "--seed", "3")
    assert out.returncode == 0, out.stderr
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "label", "--data", str(buf), "--labeller", "web"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: dict[str, int | None] = {}
    try:
        url = next(line.split()[2] for line in proc.stdout if line.startswith("labelling page: "))
        page = browser.new_page()
        page.goto(url)
        while True:
            page.wait_for_selector("#trajectory, #all-done")
            if page.locator("#all-done").count():
                break
            traj = page.locator("#trajectory")
            tid, n = traj.get_attribute("data-id"), int(traj.get_attribute("data-frames"))
            first = None
            for t in range(n):  # step through the frames until one shows success
                page.wait_for_function(f"document.querySelector('#trajectory').textContent.includes('frame {t} selected')")
                if is_success(state_of(page.locator(".big").inner_text())):
                    first = t
                    break
                page.keyboard.press("ArrowRight")
            page.keyboard.press("s" if first is not None else "f")
            marks[tid] = first
            page.wait_for_function(f"!document.querySelector('#trajectory[data-id=\"{tid}\"]')", timeout=60_000)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    from collectors import load_trajectories
    from tests.hidden_success import label_frames

    trajectories = {t.id: t for t in load_trajectories(buf)}
    assert set(marks) == set(trajectories) and len(marks) == 4
    for tid, first in marks.items():
        traj = trajectories[tid]
        truth = label_frames({"state": traj.obs["state"]})
        assert first == next((i for i, v in enumerate(truth) if v), None)  # the person's mark is the hidden truth's
        assert traj.labelled and traj.meta["label"] == {**traj.meta["label"], "source": "web", "first_success": first}
        assert traj.split == ("positive" if first is not None else "negative")
        assert traj.labels.tolist() == [float(first is not None and i >= first) for i in range(len(traj) + 1)]


def test_the_review_page_reads_as_a_report_in_a_browser(classifier, browser, tmp_path):
    """``rewardswap inspect``: rounded numbers, metric tables, the confusion matrix as a table, no raw JSON."""
    out = tmp_path / "review.html"
    done = rewardswap("inspect", str(classifier), "--data", str(classifier.parent / "buf"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    page = browser.new_page()
    page.goto(out.as_uri())
    cells = page.locator("#metrics > tbody > tr > td:nth-child(2)").all_inner_texts()
    assert cells and not any('"' in c or "{" in c for c in cells)  # no JSON left in the table
    numbers = [c for c in cells if re.fullmatch(r"-?\d[\d,]*(\.\d+)?", c.strip())]
    assert numbers and all(len(n.split(".")[-1]) <= 4 for n in numbers if "." in n)  # rounded
    confusion = page.locator("table.confusion").first
    assert confusion.locator("th").all_inner_texts()[:3] == ["", "truly a success", "truly a failure"]
    counts = [int(c.replace(",", "")) for c in confusion.locator("td").all_inner_texts()]
    report = json.loads((classifier.parent / "c.report.json").read_text())["at_suggested_threshold"]
    assert counts == [report[k] for k in ("true_positives", "false_positives", "false_negatives", "true_negatives")]
    page.close()
