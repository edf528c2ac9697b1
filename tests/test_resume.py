"""train-agent --checkpoint-every / --resume: a run killed with SIGKILL continues from its last
checkpoint, and its step count, evaluations, labels and monitor totals come out exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile

import pytest

from tests.test_hold import _classifier

STEPS, EVERY = 1024, 256


def _bench(tmp_path, ckpt, *extra):
    condition = (f"classifier:{ckpt}@refit-every=256@label-budget=100@refit-epochs=1@demos={tmp_path / 'demos'}")
    return ["bench", "--env", "PointReach-v0", "--algo", "sac", "--policy-obs", "state", "--steps", str(STEPS),
            "--n-envs", "2", "--render-size", "16", "--eval-freq", "512", "--eval-episodes", "2", "--seeds", "1",
            "--jobs", "1", "--out", str(tmp_path / "bench"), "--checkpoint-every", str(EVERY), "--conditions", condition,
            "--names", "clf", "--algo-kwargs", '{"learning_starts": 64, "batch_size": 32}', *extra]


def _saved_step(run) -> int:
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["counters"]["num_timesteps"]
    except (OSError, ValueError, KeyError):
        return 0


def test_a_run_killed_mid_way_resumes_with_exact_totals(tmp_path, capsys):
    from agents.cli import main

    ckpt = _classifier(tmp_path)
    run = tmp_path / "bench" / "runs" / "clf_seed0"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", *_bench(tmp_path, ckpt)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _saved_step(run) < 2 * EVERY and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL to bench, which runs the one run in its own process: no handler runs, nothing is flushed
    proc.wait()
    killed_at = _saved_step(run)
    assert proc.returncode == -9 and 2 * EVERY <= killed_at < STEPS and not (run / "eval.json").exists()
    answered_before = len((run / "labels" / "answers.jsonl").read_text().splitlines())

    # train-agent --resume on that run refuses changed settings, naming them
    assert main(["train-agent", "--env", "PointReach-v0", "--algo", "sac", "--reward", f"classifier:{ckpt}",
                 "--logdir", str(run), "--resume", "--steps", "2048"]) == 2
    assert "steps: 1024 -> 2048" in capsys.readouterr().err
    assert main(_bench(tmp_path, ckpt, "--resume")) == 0
    assert "resuming 1 unfinished run(s)" in capsys.readouterr().out

    summary = json.loads((run / "eval.json").read_text())
    assert [point["steps"] for point in summary["curve"]] == [0, 512, 1024]  # each evaluation once
    data = json.loads(zipfile.ZipFile(run / "model.zip").read("data"))
    assert data["num_timesteps"] == STEPS
    totals = json.loads((run / "reward_monitor.json").read_text())["totals"]
    assert sum(totals[k] for k in ("tp", "fp", "fn", "tn")) == STEPS  # every training frame counted once
    answers = [json.loads(line) for line in (run / "labels" / "answers.jsonl").read_text().splitlines()]
    labels = summary["labels"]
    assert len({a["query"] for a in answers}) == len(answers) == labels["queries"] >= answered_before
    assert labels["queries"] <= 100 and summary["labels_used"] == labels["trajectory_marks"] + labels["queries"]
    # refits at 256, 512, 768 (none at the last step), from both segments, each once
    assert [r["steps"] for r in summary["refits"]] == [256, 512, 768]
    assert len(list((run / "refits").glob("refit_*.pt"))) == 3
    assert not (run / "checkpoint").exists()  # finished: the checkpoint has served
    assert [p.name for p in (run / "tb").iterdir()] == ["run_1"]  # one TensorBoard run, continued
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert results["conditions"][0]["labels_used_per_seed"] == [summary["labels_used"]]


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    from agents.cli import main

    ckpt = _classifier(tmp_path)
    (tmp_path / "run").mkdir()
    assert main(["train-agent", "--env", "PointReach-v0", "--reward", f"classifier:{ckpt}", "--logdir",
                 str(tmp_path / "run"), "--resume"]) == 2
    assert "no checkpoint there" in capsys.readouterr().err
    with pytest.raises(ValueError, match="give --checkpoint-every"):
        from agents.train import TrainConfig

        TrainConfig(resume=True, checkpoint_every=None)
