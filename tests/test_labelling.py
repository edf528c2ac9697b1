"""The labeller protocol, the persistent queue and budget, marking recorded trajectories, the page's server."""

from __future__ import annotations

import json
import multiprocessing
import urllib.request

import numpy as np
import pytest

from agents.labelling import LabelQueue, parse_labeller
from agents.labelling.server import LabelServer, QueryPage
from agents.labelling.sources import check_answers
from collectors import TrajectoryRecorder, load_trajectories, record_episodes
from collectors.labelling import TrajectoryBusyError, claim, finish_moves, mark_trajectory
from tests import hidden_success


def _frames(n: int) -> dict[str, np.ndarray]:
    return {"state": np.arange(n * 3, dtype=np.float64).reshape(n, 3)}


def test_answers_persist_and_a_restart_reuses_them_without_charging_again(tmp_path):
    q = LabelQueue(tmp_path, budget=4, source="web")
    asked = q.ask(_frames(3), [0, 0, 1], [1, 2, 3], [0.9, 0.8, 0.1], called=[True, True, False],
                  uniform=[True, False, True])
    q.answer(asked[0].id, True)
    q.answer(asked[1].id, False)
    q.answer(asked[2].id, None)  # a skip: free, and never asked again
    with open(tmp_path / "answers.jsonl", "a") as f:
        f.write('{"query": 1, "lab')  # a kill in the middle of the next answer
    again = LabelQueue(tmp_path, budget=4, source="web")
    assert (again.reused, again.used, again.remaining, again.can_ask) == (2, 2, 2, 2)
    assert [(a.id, a.label, a.step) for a in again.answered()] == [(0, True, 1), (1, False, 2)]
    assert np.array_equal(again.answered()[1].frames["state"], _frames(3)["state"][1])  # the frames the refit needs
    assert [(a.called, a.uniform) for a in again.answered()] == [(True, True), (True, False)]
    more = again.ask(_frames(5), range(5), range(5), np.zeros(5))
    assert len(more) == 2 and again.can_ask == 0  # open queries never exceed the budget left
    with pytest.raises(KeyError, match="not open"):
        again.answer(0, True)  # answered already
    smaller = LabelQueue(tmp_path, budget=2, source="web")  # a restart with a smaller budget asks nothing more
    assert smaller.can_ask == 0 and len(smaller.open()) == 2


def test_a_callable_labeller_is_checked_and_named():
    assert check_answers(np.array([True, False]), 2, "m:f") == [True, False]
    with pytest.raises(ValueError, match="labeller m:f returned 1 answers for 2 frames"):
        check_answers([True], 2, "m:f")
    with pytest.raises(ValueError, match="labeller m:f: answer 1 is 0.5"):
        check_answers([True, 0.5], 2, "m:f")
    with pytest.raises(ValueError, match="labeller m:f returned int"):
        check_answers(3, 2, "m:f")
    source = parse_labeller("tests.hidden_success:label_frames")
    frames = {"state": np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.0]]), "episode": np.zeros(2), "step": np.arange(2)}
    assert source.answer(frames, truth=lambda: pytest.fail("only the env source reads the flag")) == [True, False]
    with pytest.raises(ValueError, match="no function 'nope'"):
        parse_labeller("tests.hidden_success:nope")
    with pytest.raises(ValueError, match="use env, web or module:callable"):
        parse_labeller("person")


def _record_hidden(root, episodes: int = 3):
    from gymnasium.wrappers import TimeLimit

    env = TrajectoryRecorder(TimeLimit(hidden_success.HiddenCorridor(), 6), root, require_success_key=False)
    record_episodes(env, lambda e: (lambda obs: np.ones(1, np.float32)), range(episodes), seed=0)
    env.close()
    return load_trajectories(root)


def test_an_env_without_a_flag_records_unlabelled_trajectories_that_trainers_refuse(tmp_path):
    trajs = _record_hidden(tmp_path / "buf")
    assert all(not t.labelled and np.isnan(t.labels).all() and t.split == "negative" for t in trajs)
    from trainers import fit_classifier

    with pytest.raises(ValueError, match="3 of 3 trajectories .* unlabelled.*rewardswap label"):
        fit_classifier(tmp_path / "buf", tmp_path / "c.pt", epochs=1, progress=False)


def test_marking_rewrites_labels_and_split_and_an_interrupted_move_is_finished(tmp_path):
    traj = _record_hidden(tmp_path / "buf", episodes=2)[0]
    moved = mark_trajectory(traj.path, first_success=4, source="web")
    assert moved.parent.name == "positive"
    (marked,) = [t for t in load_trajectories(tmp_path / "buf") if t.labelled]
    assert marked.labels.tolist() == [0, 0, 0, 0, 1, 1, 1] and marked.success
    assert marked.meta["label"]["source"] == "web" and marked.meta["label"]["first_success"] == 4
    # a crash after meta.json said "negative" but before the move: the directory is still in positive/
    meta = json.loads((moved / "meta.json").read_text())
    (moved / "meta.json").write_text(json.dumps({**meta, "split": "negative"}))
    with pytest.raises(ValueError, match="says split 'negative'"):
        load_trajectories(tmp_path / "buf")
    assert finish_moves(tmp_path / "buf") == 1
    assert len(load_trajectories(tmp_path / "buf", split="negative")) == 2  # nothing lost
    with pytest.raises(ValueError, match="outside the trajectory's frames"):
        mark_trajectory(tmp_path / "buf" / "negative" / moved.name, first_success=99, source="web")


def _hold(path, ready, release):  # noqa: ANN001 - another labelling process
    with claim(path):
        ready.set()
        release.wait(30)


def test_a_trajectory_held_by_another_page_is_refused(tmp_path):
    traj = _record_hidden(tmp_path / "buf", episodes=1)[0]
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold, args=(traj.path, ready, release))
    other.start()
    try:
        assert ready.wait(30)
        with pytest.raises(TrajectoryBusyError, match="being labelled by another page"):
            with claim(traj.path):
                pass
    finally:
        release.set()
        other.join(30)
    with claim(traj.path):  # free again once the other page let go
        pass


def test_the_page_listens_on_loopback_and_warns_for_other_interfaces(tmp_path):
    queue = LabelQueue(tmp_path, budget=2, source="web")
    queue.ask({"rgb": np.full((1, 8, 8, 3), 200, np.uint8)}, [0], [3], [0.7])
    server = LabelServer(QueryPage(queue))
    try:
        assert server.server.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
        state = json.loads(urllib.request.urlopen(server.url + "api/state").read())
        assert [(i["episode"], i["step"], i["images"]) for i in state["items"]] == [(0, 3, ["/frame/0/0.png"])]
        image = urllib.request.urlopen(server.url + "frame/0/0.png").read()
        import cv2

        decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (256, 256, 3)  # an 8x8 frame enlarged for a person's eye
        request = urllib.request.Request(server.url + "api/answer", data=b'{"id": "0", "label": "success"}',
                                         headers={"Content-Type": "application/json"})
        assert json.loads(urllib.request.urlopen(request).read())["labels"]["used"] == 1
    finally:
        server.close()
    with pytest.warns(RuntimeWarning, match="no authentication"):
        LabelServer(QueryPage(queue), host="0.0.0.0").close()


@pytest.fixture(scope="module")
def hidden_classifier(tmp_path_factory):
    """HiddenCorridor trajectories marked by the hidden truth, and a state classifier fitted on them."""
    from agents.labelling.command import label_now
    from trainers import fit_classifier

    root = tmp_path_factory.mktemp("hidden") / "buf"
    import envs

    env = TrajectoryRecorder(envs.make("tests.hidden_success:HiddenCorridor-v0", obs="state"), root,
                             require_success_key=False)
    record_episodes(env, lambda e: hidden_success.scripted(env, e), range(12), seed=0)
    env.close()
    assert label_now(load_trajectories(root), parse_labeller("tests.hidden_success:label_frames")) == (12, 0, 0)
    return fit_classifier(root, root.parent / "c.pt", epochs=3, progress=False)


def test_refits_on_an_env_with_no_flag_and_a_restart_reuses_the_answers(hidden_classifier, tmp_path):
    from agents.preflight import check_labeller
    from agents.train import TrainConfig, train_agent

    base = dict(env="tests.hidden_success:HiddenCorridor-v0", reward=f"classifier:{hidden_classifier}", n_envs=2,
                steps=768, refit_every=128, label_budget=8, refit_epochs=1, eval_freq=768, eval_episodes=2,
                algo_kwargs={"n_steps": 64}, logdir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="reports no success flag.*--labeller web"):
        check_labeller(TrainConfig(**base))
    cfg = TrainConfig(**base, labeller="tests.hidden_success:label_frames")
    first = train_agent(cfg)
    asked = first["labels"]["queries"]
    assert 0 < asked <= 8 and first["labels"]["trajectory_marks"] == 12
    assert first["curve"][-1]["reports_success"] is False  # evaluation says so instead of a success rate of 0
    monitor = json.loads((tmp_path / "run" / "reward_monitor.json").read_text())
    assert monitor["true_success_reported"] is False and 0 <= monitor["estimates"]["called_success_rate"] <= 1
    second = train_agent(cfg)  # the same directory: the answers are reused, not charged again
    assert second["labels"]["reused_from_earlier_run"] == asked
    assert asked <= second["labels"]["queries"] <= 8  # the budget holds across the restart
    answers = [json.loads(line) for line in (tmp_path / "run" / "labels" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == second["labels"]["queries"]  # every answer appended once (the env answers every frame)
    assert len({a["query"] for a in answers}) == len(answers)  # no query asked twice
    assert second["refits"] and second["refits"][0]["answers_used"] >= asked


def test_bench_lists_one_page_per_web_run_and_ray_refuses_web(tmp_path, capsys):
    from dataclasses import replace

    from agents.compare import label_pages
    from agents.train import TrainConfig

    (tmp_path / "c.pt").write_bytes(b"")  # only its existence is checked here
    base = TrainConfig(label_port=8700, reward=f"classifier:{tmp_path / 'c.pt'}")
    configs = [replace(base, logdir=str(tmp_path / f"r{i}"), refit_every=100 if i else None, label_budget=5 if i else 0,
                       labeller="web" if i else "env") for i in range(3)]
    pages = label_pages(configs, base, on_ray=False, report=True)
    assert [c.label_port for c in pages] == [8700, 8700, 8701]  # the first run labels nothing: no page
    assert capsys.readouterr().out.splitlines() == ["labelling page of r1: http://127.0.0.1:8700/",
                                                    "labelling page of r2: http://127.0.0.1:8701/"]
    with pytest.raises(ValueError, match="Ray runs are elsewhere"):
        label_pages(configs, base, on_ray=True, report=False)


def _render_aware_judge(frames):  # noqa: ANN001 - module:callable for the --label-render test
    assert frames["rgb"].dtype == np.uint8 and frames["rgb"].shape[1:] == (16, 16, 3)
    assert frames["state"].ndim == 2 and len(frames["episode"]) == len(frames["step"]) == len(frames["rgb"])
    return [None] * len(frames["rgb"])  # no answers: nothing charged


def test_label_render_hands_the_rendered_frame_to_the_labeller_and_skips_cost_nothing(hidden_classifier, tmp_path):
    from agents.train import TrainConfig, train_agent
    from trainers import fit_classifier

    root = tmp_path / "buf"
    import envs

    env = TrajectoryRecorder(envs.make("PointReach-v0", obs="state", ignore_terminations=True), root)
    record_episodes(env, lambda e: envs.expert_policy(env, noise=0.7, seed=e), range(10), seed=0)
    env.close()
    ckpt = fit_classifier(root, tmp_path / "c.pt", epochs=1, progress=False)
    summary = train_agent(TrainConfig(env="PointReach-v0", reward=f"classifier:{ckpt}", n_envs=2, steps=384,
                                      refit_every=128, label_budget=10, refit_epochs=1, eval_freq=384, eval_episodes=2,
                                      render_size=16, algo_kwargs={"n_steps": 64}, logdir=str(tmp_path / "run"),
                                      label_render=True, labeller=f"{__name__}:_render_aware_judge"))
    assert summary["labels"]["queries"] == 0 and summary["labels"]["trajectory_marks"] == 10
    skips = (tmp_path / "run" / "labels" / "answers.jsonl").read_text().splitlines()
    assert skips and all(json.loads(line)["label"] is None for line in skips)


def test_queries_are_a_uniform_share_plus_the_least_certain_called_frames_one_per_episode():
    from agents.labelling.choice import choose_queries, estimates

    # 12 frames of 4 episodes; the reward calls frames 0-7 successes (threshold 0.5)
    scores = np.array([0.99, 0.98, 0.97, 0.55, 0.6, 0.65, 0.52, 0.9, 0.1, 0.2, 0.3, 0.45])
    episodes = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3])
    chosen, uniform = choose_queries(scores, 0.5, episodes, 8, np.random.default_rng(1))
    assert len(chosen) == 8 and uniform.sum() == 2 and len(set(chosen.tolist())) == 8
    u = chosen[uniform]
    assert (scores[u] > 0.5).sum() == 1 and (scores[u] <= 0.5).sum() == 1  # one per stratum
    targeted = chosen[~uniform].tolist()
    called_left = [i for i in range(8) if i not in u]
    by_margin = sorted(called_left, key=lambda i: abs(np.log(scores[i] / (1 - scores[i]))))
    # one per episode first (episodes 0 and 1 each give their least certain frame), then the next least certain
    firsts = [next(i for i in by_margin if episodes[i] == e) for e in (0, 1)]
    assert sorted(targeted[:2]) == sorted(firsts)
    assert set(targeted) <= set(called_left) and len(targeted) == 6
    assert choose_queries(scores, 0.5, episodes, 0, np.random.default_rng(0))[0].size == 0  # a budget of 0 asks nothing
    # the estimates read only uniform answers: 3 of 4 uniform called frames were successes, 1 of 4 others
    from types import SimpleNamespace as Q

    answered = ([Q(uniform=True, called=True, label=v) for v in (True, True, True, False)]
                + [Q(uniform=True, called=False, label=v) for v in (True, False, False, False)]
                + [Q(uniform=False, called=True, label=False)] * 10)  # targeted answers must not bias them
    figures = estimates(answered, called_rate=0.4)
    assert (figures["precision"], figures["miss_rate"]) == (0.75, 0.25)
    assert figures["prior"] == pytest.approx(0.4 * 0.75 + 0.6 * 0.25)


def test_label_env_marks_from_the_recorded_flags_and_counts_each_trajectory_once(tmp_path):
    from agents.labelling.command import label_now, recorded_mark

    import envs

    env = TrajectoryRecorder(envs.make("PointReach-v0", obs="state", ignore_terminations=True), tmp_path / "buf")
    record_episodes(env, lambda e: envs.expert_policy(env, noise=0.7, seed=e), range(6), seed=0)
    env.close()
    before = {t.id: np.asarray(t.labels).copy() for t in load_trajectories(tmp_path / "buf")}
    assert label_now(load_trajectories(tmp_path / "buf"), parse_labeller("env")) == (6, 0, 0)
    for traj in load_trajectories(tmp_path / "buf"):
        hits = np.flatnonzero(before[traj.id] >= 0.5)
        first = int(hits[0]) if len(hits) else None
        assert traj.meta["label"]["source"] == "env" and traj.meta["label"]["first_success"] == first
        assert recorded_mark(traj) == first
        assert np.array_equal(traj.labels, before[traj.id])  # the env's per-frame flags are kept as recorded
    with pytest.raises(ValueError, match="recorded without success flags"):
        recorded_mark(_record_hidden(tmp_path / "hidden", episodes=1)[0])


def test_every_kind_records_the_marks_its_data_carries_and_a_run_counts_them(tmp_path):
    from agents.labelling.accounting import LabelAccount
    from trainers import fit_progress

    import envs

    env = TrajectoryRecorder(envs.make("PointReach-v0", obs="state", ignore_terminations=True), tmp_path / "buf")
    record_episodes(env, lambda e: envs.expert_policy(env, noise=0.7, seed=e), range(7), seed=0)
    env.close()
    ids = sorted(t.id for t in load_trajectories(tmp_path / "buf"))
    from reward_wrappers import load_reward_model

    model = load_reward_model(fit_progress(tmp_path / "buf", tmp_path / "p.pt", epochs=1, progress=False))
    assert model.metadata["labels"] == {"trajectory_marks": 7, "trajectory_ids": ids}
    account = LabelAccount()
    account.add_checkpoint(model, "potential data")
    account.add_marks(ids[:3], "demonstrations")  # the same trajectories read twice are counted once
    assert account.summary()["trajectory_marks"] == 7 and account.used == 7



def test_bench_tables_say_when_the_env_reports_no_success(tmp_path):
    from agents.compare import Condition, format_table, run_conditions
    from agents.train import TrainConfig

    base = TrainConfig(env="tests.hidden_success:HiddenCorridor-v0", steps=128, n_envs=2, eval_freq=128,
                       eval_episodes=2, algo_kwargs={"n_steps": 64})
    summary = run_conditions([Condition.parse("env")], base, [0], tmp_path, progress=False)
    (row,) = summary["conditions"]
    assert row["reports_success"] is False
    assert f"none reported by the env (env return {row['final_env_return_mean']:.2f})" in format_table(summary)
