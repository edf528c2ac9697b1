"""Soak: a bench of short runs with refits and demonstrations while its run processes are killed.

1. Records PointReach-v0 demonstrations and fits an rgb classifier (small, seconds).
2. Starts ``rewardswap bench`` (2 conditions x 4 seeds = 8 runs, 2 at a time, checkpoints every
   ``--checkpoint-every`` steps) in a session of its own and, every ``--kill-every`` seconds,
   SIGKILLs one of its run processes at random: bench must name it and start it again, resuming
   from its checkpoint, while the other run goes on.
3. After ``--kill-bench-after`` seconds SIGKILLs bench itself with all its processes, then runs the
   same command with ``--resume`` to the end, without kills.
4. Checks every run: finished once, final step count and monitor totals equal to the steps,
   answered queries unique and within the budget, every JSON file readable; writes the figures.

    python benchmarks/soak_bench.py --out /tmp/soak --json benchmarks/results/soak/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import psutil

STEPS, BUDGETS, SEEDS = 4000, (50, 100), 4


def prepare(work: pathlib.Path) -> pathlib.Path:
    """Demonstrations (noise 0.3 and 1.0) and a 16x16 rgb classifier fitted on them."""
    import collectors
    import envs
    from trainers import fit_classifier

    if not (work / "c.pt").is_file():
        env = collectors.TrajectoryRecorder(envs.make("PointReach-v0", obs="state+rgb", render_size=16,
                                                      ignore_terminations=True), work / "demos")
        collectors.record_episodes(env, lambda e: envs.expert_policy(env, noise=0.3 if e < 8 else 1.0, seed=e),
                                   range(14), seed=0)
        env.close()
        fit_classifier(work / "demos", work / "c.pt", inputs=("rgb",), epochs=3, progress=False, seed=0)
    return work / "c.pt"


def bench_command(work: pathlib.Path, ckpt: pathlib.Path, every: int, *extra: str) -> list[str]:
    conditions = [f"classifier:{ckpt}@refit-every=1000@label-budget={b}@refit-epochs=1@demos={work / 'demos'}"
                  for b in BUDGETS]
    return [sys.executable, "-m", "agents.cli", "bench", "--env", "PointReach-v0", "--algo", "sac", "--policy-obs",
            "state", "--steps", str(STEPS), "--n-envs", "2", "--render-size", "16", "--eval-freq", "2000",
            "--eval-episodes", "5", "--seeds", str(SEEDS), "--jobs", "2", "--out", str(work / "bench"),
            "--checkpoint-every", str(every), "--conditions", *conditions, "--names", *[f"budget{b}" for b in BUDGETS],
            "--algo-kwargs", '{"learning_starts": 200, "batch_size": 64, "gradient_steps": 1}', *extra]


def run_processes(bench: psutil.Process) -> list[psutil.Process]:
    """The run processes: children of bench's forkserver."""
    try:
        servers = [p for p in bench.children() if "forkserver" in " ".join(p.cmdline())]
        return [child for server in servers for child in server.children()]
    except psutil.Error:
        return []


def check_runs(work: pathlib.Path) -> dict[str, object]:
    """Every run once, exact totals, no corrupt file; the problems found, if any."""
    problems, runs = [], sorted((work / "bench" / "runs").iterdir())
    for run in runs:
        try:
            summary = json.loads((run / "eval.json").read_text())
            totals = json.loads((run / "reward_monitor.json").read_text())["totals"]
            answers = [json.loads(line) for line in (run / "labels" / "answers.jsonl").read_text().splitlines()]
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{run.name}: {exc}")
            continue
        budget = int(run.name.split("_")[0].removeprefix("budget"))
        if summary["curve"][-1]["steps"] != STEPS or sum(totals[k] for k in ("tp", "fp", "fn", "tn")) != STEPS:
            problems.append(f"{run.name}: steps {summary['curve'][-1]['steps']}, monitor frames {sum(totals.values())}")
        if len({a["query"] for a in answers}) != len(answers) or len(answers) > budget:
            problems.append(f"{run.name}: {len(answers)} answers, {len({a['query'] for a in answers})} distinct")
        if summary["labels"]["queries"] != len(answers) or (run / "checkpoint").exists():
            problems.append(f"{run.name}: labels {summary['labels']['queries']} vs {len(answers)} answers, or a "
                            "checkpoint left behind")
        steps = [point["steps"] for point in summary["curve"]]
        if steps != sorted(set(steps)):
            problems.append(f"{run.name}: evaluations {steps}")
    results = json.loads((work / "bench" / "results.json").read_text())
    per_condition = [len(c["final_true_success_per_seed"]) for c in results["conditions"]]
    if len(runs) != len(BUDGETS) * SEEDS or per_condition != [SEEDS] * len(BUDGETS):
        problems.append(f"{len(runs)} run directories, results per condition {per_condition}")
    return {"runs": len(runs), "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/soak", help="working directory (wiped)")
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds between kills of a run process")
    parser.add_argument("--kill-bench-after", type=float, default=150.0, help="seconds before bench itself is killed")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="which run processes are killed")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    work = pathlib.Path(args.out)
    (work / "bench").mkdir(parents=True, exist_ok=True)
    for old in (work / "bench").iterdir():
        subprocess.run(["rm", "-rf", str(old)], check=True)
    ckpt = prepare(work)
    rng = random.Random(args.seed)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    start = time.monotonic()
    with open(work / "bench_killed.log", "w") as log:
        bench = subprocess.Popen(bench_command(work, ckpt, args.checkpoint_every), stdout=log, stderr=log, env=env,
                                 start_new_session=True)
        handle, kills, next_kill = psutil.Process(bench.pid), [], start + args.kill_every
        while bench.poll() is None and time.monotonic() - start < args.kill_bench_after:
            time.sleep(0.5)
            if time.monotonic() >= next_kill and (runs := run_processes(handle)):
                victim = rng.choice(runs)
                victim.kill()
                kills.append({"seconds": round(time.monotonic() - start, 1), "pid": victim.pid})
                next_kill = time.monotonic() + args.kill_every
        bench_killed = bench.poll() is None
        if bench_killed:
            os.killpg(bench.pid, signal.SIGKILL)  # bench and every process it started
            bench.wait()
    first_log = (work / "bench_killed.log").read_text()
    resumed = subprocess.run(bench_command(work, ckpt, args.checkpoint_every, "--resume"), capture_output=True,
                             text=True, env=env)
    checked = check_runs(work) if resumed.returncode == 0 else {"runs": 0, "problems": [resumed.stderr[-2000:]]}
    figures = {
        "command": " ".join([sys.executable, *sys.argv]),
        "runs": len(BUDGETS) * SEEDS, "steps_per_run": STEPS,
        "kills_of_run_processes": len(kills), "kills": kills,
        "restarts_reported_by_bench": first_log.count("starting it again"),
        "restarts_from_a_checkpoint": first_log.count("from its last checkpoint"),
        "bench_killed": bench_killed,
        "resume_reused_finished": next((int(line.split()[1]) for line in resumed.stdout.splitlines()
                                        if line.startswith("reusing ")), 0),
        "resume_continued_unfinished": next((int(line.split()[1]) for line in resumed.stdout.splitlines()
                                             if line.startswith("resuming ")), 0),
        "resume_exit_code": resumed.returncode,
        "runs_checked": checked["runs"], "problems": checked["problems"], "lost": len(checked["problems"]),
        "seconds": round(time.monotonic() - start, 1),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if not checked["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
