"""collectors: the ``rewardswap collect`` command (agents.cli / collectors.cli).

Collecting end to end with the expert and with a saved SB3 policy, refusing an untrusted SB3 zip
and an RLinf pickle without its flag, and a summary that counts what was written before a
disk-full error. Helpers: tests/collector_helpers.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from collectors import load_trajectories
from tests.collector_helpers import _rlinf_file

# ----------------------------------------------------------------------------- CLI
def test_cli_collect_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("envs")
    from agents.cli import main

    out = tmp_path / "buf"
    code = main(["collect", "--env", "PointReach-v0", "--policy", "expert", "--episodes", "4", "--out", str(out),
                 "--obs", "state+rgb", "--noise", "0.3", "--seed", "3", "--render-size", "32"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    trajs = load_trajectories(out)
    assert len(trajs) == 4
    assert {t.meta["seed"] for t in trajs} == {3, 4, 5, 6}
    assert trajs[0].obs["rgb"].shape[1:] == (32, 32, 3) and trajs[0].meta["env_id"] == "PointReach-v0"
    assert trajs[0].meta["policy"] == "expert"
    summary = captured.out
    for word in ("positive", "negative", "frames", "bytes", "steps/s"):
        assert word in summary
    assert main(["collect", "--out", str(out)]) == 2  # --env and --episodes missing
    assert "--env is required" in capsys.readouterr().err


def test_cli_import_rlinf_refuses_pickle_without_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from collectors.cli import add_arguments, run
    import argparse

    _rlinf_file(tmp_path / "000001.npy", [0, 1])
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--import-rlinf", str(tmp_path / "000001.npy"), "--out", str(tmp_path / "o")])) == 2
    assert "allow_pickle" in capsys.readouterr().err
    assert run(parser.parse_args(["--import-rlinf", str(tmp_path / "000001.npy"), "--out", str(tmp_path / "o"),
                                  "--allow-pickle"])) == 0
    assert len(load_trajectories(tmp_path / "o")) == 1


def test_cli_collect_with_a_saved_sb3_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import envs
    from stable_baselines3 import PPO

    from agents.cli import main

    agent = PPO("MlpPolicy", envs.make("PointReach-v0", seed=0), n_steps=64, batch_size=64, seed=0, device="cpu")
    agent.save(tmp_path / "policy.zip")
    out = tmp_path / "buf"
    code = main(["collect", "--env", "PointReach-v0", "--policy", str(tmp_path / "policy.zip"), "--episodes", "2",
                 "--out", str(out), "--seed", "0", "--trust-policy"])
    assert code == 0, capsys.readouterr().err
    trajs = load_trajectories(out)
    assert len(trajs) == 2 and trajs[0].meta["policy"] == str(tmp_path / "policy.zip")
    # The recorded actions are the saved policy's deterministic actions for the recorded observations.
    expected, _ = agent.predict(np.asarray(trajs[0].obs["state"][:-1]), deterministic=True)
    np.testing.assert_allclose(np.asarray(trajs[0].actions), expected, atol=1e-5)
    assert main(["collect", "--env", "PointReach-v0", "--policy", str(tmp_path / "missing.zip"), "--episodes", "1",
                 "--out", str(out), "--trust-policy"]) == 2
    assert "missing.zip" in capsys.readouterr().err


def test_cli_collect_refuses_an_sb3_zip_without_trust_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A zip crafted like an SB3 save whose pickled entry runs code on load: nothing is unpickled
    # unless the user says they trust the file.
    import base64
    import pickle
    import zipfile

    from agents.cli import main

    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>",
                             ":serialized:": base64.b64encode(pickle.dumps(Payload())).decode()}}
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("data", json.dumps(data))
    code = main(["collect", "--env", "PointReach-v0", "--policy", str(tmp_path / "evil.zip"), "--episodes", "1",
                 "--out", str(tmp_path / "buf")])
    assert code == 2 and "--trust-policy" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "buf").exists()


def test_collect_summary_counts_what_was_written_before_a_disk_full_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: the summary said 0 written when 8 were.
    import collectors.writer as writer
    from agents.cli import main

    calls = {"n": 0}
    real = writer._write_npy
    files_per_trajectory = 6  # about: the failure comes after a few trajectories

    def failing(path, arr, *, fsync=False):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 3 * files_per_trajectory:
            raise OSError(28, "No space left on device")
        return real(path, arr, fsync=fsync)

    monkeypatch.setattr(writer, "_write_npy", failing)
    code = main(["collect", "--env", "PointReach-v0", "--episodes", "6", "--out", str(tmp_path / "buf"), "--sync-write",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "No space left on device" in captured.err
    on_disk = len(load_trajectories(tmp_path / "buf"))
    summary = re.search(r"(\d+) positive, (\d+) negative trajectories", captured.out)
    assert on_disk >= 2 and summary is not None and int(summary[1]) + int(summary[2]) == on_disk


def test_a_worker_killed_from_outside_stops_collect_at_once_and_leaves_no_process(tmp_path: Path) -> None:
    """SIGKILL to one worker, sent by another process while both workers keep recording: the parent
    notices, stops the other worker, reaps every child, names the dead one, keeps what was written."""
    import subprocess
    import sys
    import time

    import psutil

    out = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "collect", "--env", "PointReach-v0", "--obs", "state+rgb",
                             "--episodes", "100000", "--n-envs", "2", "--no-progress", "--out", str(out)],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline:  # both workers running and some trajectories written
            workers = [c for c in parent.children() if "spawn_main" in " ".join(c.cmdline())]
            if len(workers) == 2 and len(list((out / "negative").glob("*")) + list((out / "positive").glob("*"))) >= 4:
                break
            time.sleep(0.2)
        assert len(workers) == 2, "the workers did not start"
        family = parent.children(recursive=True)
        subprocess.run(["kill", "-9", str(workers[0].pid)], check=True)  # from another process
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        stopped = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert stopped < 2 + 5 + 3, f"collect took {stopped:.1f} s to stop"  # notice within 2 s, 5 s grace, exit
    assert f"worker 0 (pid {workers[0].pid}) was killed by SIGKILL" in stderr
    time.sleep(2)  # writers flush what they hold once their worker is gone
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running: {[(p.pid, p.cmdline()[:3]) for p in alive]}"
    assert len(load_trajectories(out)) >= 4  # every finished trajectory is loadable
