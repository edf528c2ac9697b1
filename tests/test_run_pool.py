"""agents.run_pool: bench runs in processes of their own; one killed from outside is named and
started again while the others go on; one that raises is reported, not retried."""

from __future__ import annotations

import os
import pathlib
import signal

import pytest

from agents.config import TrainConfig
from agents.run_pool import RunFailed, run_pool


def _target(cfg: TrainConfig, step_seconds: float | None) -> dict:
    """A stand-in for a training run: what it does is written in its logdir's name."""
    run = pathlib.Path(cfg.logdir)
    starts = run / "starts"
    starts.write_text(starts.read_text() + "x" if starts.exists() else "x")
    if run.name == "raises":
        raise ValueError("boom in the run")
    if run.name == "dies_always" or (run.name == "dies_once" and len(starts.read_text()) == 1):
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or another shell would
    return {"run": run.name, "resume": cfg.resume}


def _tasks(tmp_path, names):
    tasks = []
    for name in names:
        (tmp_path / name).mkdir()
        tasks.append((name, TrainConfig(logdir=str(tmp_path / name), checkpoint_every=None)))
    return tasks


def test_a_killed_run_is_named_and_started_again_while_the_others_finish(tmp_path, capsys):
    done = []
    results = run_pool(_tasks(tmp_path, ["dies_once", "a", "b"]), 2, _target, on_done=done.append)
    assert results == {"dies_once": {"run": "dies_once", "resume": False}, "a": {"run": "a", "resume": False},
                       "b": {"run": "b", "resume": False}}
    assert sorted(done) == ["a", "b", "dies_once"]
    assert (tmp_path / "dies_once" / "starts").read_text() == "xx"  # started twice, the others once
    assert (tmp_path / "a" / "starts").read_text() == "x"
    err = capsys.readouterr().err
    assert "run dies_once (pid" in err and "died (killed by SIGKILL); starting it again (1 of 2)" in err


def test_runs_that_raise_or_keep_dying_are_reported_after_the_others_finish(tmp_path):
    with pytest.raises(RunFailed) as failed:
        run_pool(_tasks(tmp_path, ["raises", "dies_always", "c"]), 2, _target)
    message = str(failed.value)
    assert "run raises raised" in message and "ValueError: boom in the run" in message
    assert "run dies_always" in message and "was already started again 2 times" in message
    assert (tmp_path / "raises" / "starts").read_text() == "x"  # an exception is not retried
    assert (tmp_path / "dies_always" / "starts").read_text() == "xxx"
    assert (tmp_path / "c" / "starts").read_text() == "x"  # the run beside them finished
