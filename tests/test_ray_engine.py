"""``--engine ray`` on a real local Ray cluster (2 CPUs): bench's grid and collect's actors.

A grid survives a Ray worker killed mid-run (the task is retried and gives the same results as a
run never killed), a run returns its files into ``--out`` where the workers do not share it,
``--resume`` reuses finished runs, and two collector actors share one buffer: caps hold, nothing
is lost, ids do not collide. Ray is the ``.[ray]`` extra: these tests skip without it, except
under ``CI=true`` (``make setup`` installs it), where they fail.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import sys
import threading
import time
from typing import Any, Iterator

import pytest

from agents.cli import main
from collectors import load_trajectories
from tests.conftest import IN_CI

CONDITIONS = ("sparse", "env")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    if not IN_CI:
        pytest.importorskip("ray", reason="Ray is the optional extra: pip install -e '.[ray]'")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        yield ray
    finally:
        ray.shutdown()


def bench(out: pathlib.Path, *extra: str) -> int:
    """A tiny grid: 2 conditions x 1 seed, 256 PPO steps each."""
    return main(["bench", "--engine", "ray", "--conditions", *CONDITIONS, "--seeds", "1", "--steps", "256",
                 "--n-envs", "2", "--eval-freq", "128", "--eval-episodes", "2",
                 "--algo-kwargs", '{"n_steps": 64, "batch_size": 64}', "--out", str(out), *extra])


def outcomes(out: pathlib.Path) -> dict[str, Any]:
    """What the grid found, per condition (wall times aside): every seed present, every run finished."""
    results = json.loads((out / "results.json").read_text())
    assert [row["condition"] for row in results["conditions"]] == list(CONDITIONS)
    for name in CONDITIONS:
        for name_file in ("eval.json", "run_config.json", "model.zip"):
            assert (out / "runs" / f"{name}_seed0" / name_file).is_file(), (name, name_file)
    return {row["condition"]: (row["final_true_success_per_seed"], row["curves"]) for row in results["conditions"]}


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the parenthesised name
        if pid == ancestor:
            return True
    return False


class Killer(threading.Thread):
    """SIGKILLs the first Ray worker running ``train_run`` of this test's cluster, once a run has
    started writing its directory: a worker dying mid-run, as on a lost node."""

    def __init__(self, runs: pathlib.Path) -> None:
        super().__init__(daemon=True)
        self.runs, self.killed, self.stop = runs, None, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            if self.runs.is_dir() and any(self.runs.iterdir()):
                for proc in pathlib.Path("/proc").iterdir():
                    try:
                        title = (proc / "cmdline").read_bytes()
                    except OSError:
                        continue
                    if proc.name.isdigit() and title.startswith(b"ray::train_run") and descends_from(int(proc.name),
                                                                                                   os.getpid()):
                        os.kill(int(proc.name), signal.SIGKILL)
                        self.killed = int(proc.name)
                        return
            time.sleep(0.005)


@pytest.fixture(scope="module")
def killed_grid(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("ray") / "killed"
    killer = Killer(out / "runs")
    killer.start()
    try:
        assert bench(out) == 0
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, "no train_run worker was seen to kill"
    return out


def test_a_grid_completes_with_the_right_results_when_a_worker_dies_mid_run(killed_grid: pathlib.Path) -> None:
    found = outcomes(killed_grid)
    for per_seed, curves in found.values():
        assert len(per_seed) == 1 and 0.0 <= per_seed[0] <= 1.0
        assert [p["steps"] for p in curves[0]] == [0, 128, 256]
    # The workers shared the filesystem: the marker was found, and removed afterwards.
    assert not [p for p in killed_grid.iterdir() if p.name.startswith(".rewardswap-shared-fs-")]


def test_without_a_shared_filesystem_runs_return_their_files_into_out(killed_grid: pathlib.Path,
                                                                      tmp_path: pathlib.Path) -> None:
    out = tmp_path / "returned"
    assert bench(out, "--no-shared-fs") == 0
    # Same seeds, same results: a run killed and retried trained what an undisturbed one trains.
    assert outcomes(out) == outcomes(killed_grid)
    for name in CONDITIONS:
        run_dir = out / "runs" / f"{name}_seed0"
        assert list(run_dir.glob("tb/*/events.out.tfevents.*")), "TensorBoard logs came back"
        saved = json.loads((run_dir / "run_config.json").read_text())
        assert saved["config"]["logdir"] == str(run_dir)  # where it landed, not the worker's temp copy


def test_a_run_that_does_not_see_the_marker_trains_on_shipped_checkpoints_and_returns_its_files(
        ray_cluster: Any, tmp_path: pathlib.Path) -> None:
    import collectors
    import envs
    from agents.ray_engine import checkpoint_paths, train_run, write_returned_files
    from agents.train import TrainConfig
    from trainers import fit_classifier

    recorder = collectors.TrajectoryRecorder(envs.make("PointReach-v0", ignore_terminations=True), tmp_path / "data")
    collectors.record_episodes(recorder, lambda e: envs.expert_policy(recorder, noise=0.5, seed=e), range(6), seed=0)
    recorder.close()
    clf = fit_classifier(tmp_path / "data", tmp_path / "driver" / "clf.pt", inputs=("state",), epochs=1, progress=False)
    cfg = TrainConfig(env="PointReach-v0", reward=f"classifier:{clf}", steps=64, n_envs=1, eval_freq=64,
                      eval_episodes=1, algo_kwargs={"n_steps": 64, "batch_size": 64},
                      logdir=str(tmp_path / "out" / "runs" / "r"))
    shipped = {path: ray_cluster.put(pathlib.Path(path).read_bytes()) for path in checkpoint_paths(cfg)}
    (tmp_path / "driver").rename(tmp_path / "elsewhere")  # the worker cannot read the driver's checkpoint
    # A token whose marker is not in --out: the task must take the no-shared-filesystem path.
    task = ray_cluster.remote(train_run)
    returned = ray_cluster.get(task.remote(cfg, None, str(tmp_path / "out"), "0123456789abcdef", shipped))
    assert returned["files"] is not None and {"model.zip", "eval.json", "run_config.json"} <= set(returned["files"])
    assert not pathlib.Path(cfg.logdir).exists()  # nothing written into --out by the run itself
    assert returned["summary"]["reward_inference_share"] > 0  # the shipped classifier paid the rewards
    write_returned_files(cfg.logdir, returned["files"])
    run_dir = pathlib.Path(cfg.logdir)
    assert json.loads((run_dir / "eval.json").read_text()) == returned["summary"]
    saved = json.loads((run_dir / "run_config.json").read_text())["config"]
    assert (saved["reward"], saved["logdir"]) == (cfg.reward, cfg.logdir)  # the driver's paths: --resume compares these
    with pytest.raises(ValueError, match="outside its directory"):
        write_returned_files(cfg.logdir, {"../escape.txt": b"x"})


def test_resume_on_ray_reuses_finished_runs(killed_grid: pathlib.Path, tmp_path: pathlib.Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(killed_grid, out)
    models = {name: out / "runs" / f"{name}_seed0" / "model.zip" for name in CONDITIONS}
    stamps = {name: path.stat().st_mtime_ns for name, path in models.items()}
    (out / "runs" / "env_seed0" / "eval.json").unlink()  # cut off before it finished: trained again
    capsys.readouterr()
    assert bench(out, "--resume") == 0
    assert "reusing 1 finished run(s)" in capsys.readouterr().out
    assert models["sparse"].stat().st_mtime_ns == stamps["sparse"]
    assert models["env"].stat().st_mtime_ns != stamps["env"]
    assert outcomes(out) == outcomes(killed_grid)


def test_ray_options_are_refused_where_they_cannot_work(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["bench", "--address", "auto", "--out", str(tmp_path)]) == 2
    assert "only with --engine ray" in capsys.readouterr().err
    assert main(["collect", "--env", "PointReach-v0", "--episodes", "2", "--workers", "2", "--out", str(tmp_path)]) == 2
    assert "--workers counts Ray actors" in capsys.readouterr().err
    web = "classifier:c.pt@refit-every=10@label-budget=5@labeller=web"  # a person's page cannot follow a Ray task
    assert main(["bench", "--engine", "ray", "--conditions", web, "--out", str(tmp_path)]) == 2
    assert "@labeller=web needs a person at a page on this machine" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    for argv in (["bench", "--engine", "ray", "--out", str(tmp_path)],
                 ["collect", "--env", "PointReach-v0", "--episodes", "2", "--engine", "ray", "--out", str(tmp_path)]):
        assert main(argv) == 2
        assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def collect(out: pathlib.Path, *extra: str) -> int:
    return main(["collect", "--env", "PointReach-v0", "--policy", "expert", "--noise", "0.5", "--engine", "ray",
                 "--workers", "2", "--no-progress", "--out", str(out), *extra])


def test_two_collector_actors_share_one_buffer(ray_cluster: Any, tmp_path: pathlib.Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "all"
    assert collect(out, "--episodes", "8") == 0
    summary = capsys.readouterr().out
    trajectories = load_trajectories(out)
    assert sorted(t.meta["seed"] for t in trajectories) == list(range(8))  # each episode once: none lost or doubled
    assert len({t.id for t in trajectories}) == 8
    assert len({t.id.split("-")[1] for t in trajectories}) == 2  # written by two actors (pids)
    for t in trajectories:  # every trajectory is complete and readable
        assert len(t) > 0 and t.actions.shape[0] == len(t) and t.obs["state"].shape[0] == len(t) + 1
    written = re.search(r"(\d+) positive, (\d+) negative", summary)
    assert written is not None and int(written[1]) + int(written[2]) == 8, summary


def test_caps_hold_across_collector_actors(ray_cluster: Any, tmp_path: pathlib.Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "capped"
    assert collect(out, "--episodes", "12", "--max-positive", "3", "--max-negative", "1") == 0
    summary = capsys.readouterr().out
    positive, negative = load_trajectories(out, split="positive"), load_trajectories(out, split="negative")
    assert len(positive) <= 3 and len(negative) <= 1
    assert len(positive) == 3  # the expert at noise 0.5 succeeds far more than 3 times in 12 episodes
    counts = re.search(r"(\d+) positive, (\d+) negative trajectories(?: \((\d+) not written: split full\))?", summary)
    assert counts is not None, summary
    assert (int(counts[1]), int(counts[2])) == (len(positive), len(negative))
    episodes = int(counts[1]) + int(counts[2]) + int(counts[3] or 0)
    # Every episode run is accounted for; the actors stop early only once both splits are full.
    assert episodes == 12 or len(negative) == 1


def test_a_local_cluster_refuses_clients_without_its_token(tmp_path):
    """The cluster a command starts accepts only its own token: Ray 2.60 listens on every interface
    whatever it is told, so the token is what keeps others out."""
    if not IN_CI:
        pytest.importorskip("ray", reason="Ray is the optional extra: pip install -e '.[ray]'")
    import subprocess
    import sys

    intruder = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='error'); "
                "print('INTRUDER RAN', ray.get(ray.remote(lambda: 1).remote()))")
    driver = f"""
import os, subprocess, sys
from collectors.ray_cluster import ray_session
with ray_session() as ray:
    print("TASK", ray.get(ray.remote(lambda: 41 + 1).remote()))
    address = ray.get_runtime_context().gcs_address
    print("ADDRESS", address)
    env = {{k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}}
    other = subprocess.run([sys.executable, "-c", {intruder!r}, address], env=env, capture_output=True, text=True,
                           timeout=120)
    print("INTRUDER", other.returncode, "INTRUDER RAN" in other.stdout)
"""
    out = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if not k.startswith("RAY_")}).stdout
    assert "TASK 42" in out
    assert "ADDRESS " in out
    assert "INTRUDER 1 False" in out  # refused: no token


def test_a_collector_actor_killed_from_outside_stops_collect(ray_cluster: Any, tmp_path: pathlib.Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import psutil

    out, killed = tmp_path / "lost", {}

    def kill_one_actor() -> None:  # another thread, as another shell would: SIGKILL one busy actor
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            actors = [p for p in psutil.process_iter(["cmdline"]) if "CollectorActor" in " ".join(p.info["cmdline"] or [])]
            if len(actors) == 2 and len(list(out.glob("*/*/meta.json"))) >= 2:  # both collecting, episodes written
                killed["pid"], killed["at"] = actors[0].pid, time.monotonic()
                actors[0].kill()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    code = collect(out, "--episodes", "400")
    returned = time.monotonic()
    killer.join()
    err = capsys.readouterr().err
    assert "pid" in killed and code == 1
    assert "was lost (its process or node died)" in err and "the other actors were stopped" in err
    assert returned - killed["at"] < 10  # noticed and stopped at once, not after the other actor's 200 episodes
    trajectories = load_trajectories(out)
    assert 2 <= len(trajectories) < 400 and all(len(t) > 0 for t in trajectories)  # what finished is loadable
    time.sleep(1)
    assert not [p for p in psutil.process_iter(["cmdline"]) if "CollectorActor" in " ".join(p.info["cmdline"] or [])]
