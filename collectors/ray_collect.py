"""``collect --engine ray``: N collector actors on a Ray cluster writing into one buffer directory.

The same design as the local ``--n-envs`` worker processes (:mod:`collectors.cli`): each actor
runs ``collect_episodes`` on its share of the episodes (:func:`collectors.rollout.split_episodes`)
and reports each finished episode as an event; the driver turns the events into one progress bar
and merges the actors' results into the same summary. Events go through a Ray queue instead of a
multiprocessing one.

Caps (``--max-positive/--max-negative``) are counted on disk under the buffer's file lock
(:mod:`collectors.root`), so they hold across actors only where all of them write into the same
directory: every actor checks, through the marker of :mod:`collectors.ray_cluster`, that it sees
the driver's ``--out``, and fails with a message saying so where it does not. Trajectory ids
carry the clock, the pid and random bits, so actors on different nodes never collide.

An actor that dies is not restarted: a rerun of its share would record the episodes it already
wrote a second time. As with a local worker killed from outside, the driver stops the other
actors once it sees the loss, its finished trajectories stay in the buffer, the summary names
the lost actor and says its counts are lost, and collect exits non-zero.
"""

from __future__ import annotations

import argparse
import pathlib
import socket
from typing import Any, Callable

from collectors.ray_cluster import ray_session, sees_marker, shared_fs_marker
from collectors.rollout import split_episodes

#: ``collect_episodes(args, episodes, report) -> result``, passed in by :mod:`collectors.cli`.
CollectFn = Callable[[argparse.Namespace, list[int], Callable[[tuple], None]], dict[str, Any]]


class CollectorActor:
    """One collector: its share of the episodes, each finished episode put on the events queue."""

    def run(self, collect: CollectFn, args: argparse.Namespace, episodes: list[int], events: Any,
            token: str) -> dict[str, Any]:
        if not sees_marker(args.out, token):
            raise RuntimeError(f"the buffer directory {args.out} is not the driver's on node {socket.gethostname()}: "
                               "collect --engine ray writes one buffer from every actor, so --out must be on a "
                               "filesystem every node mounts at the same path")
        return collect(args, episodes, events.put)


def collect_on_ray(
    args: argparse.Namespace, workers: int | None, collect: CollectFn, on_event: Callable[[tuple], None],
    poll_seconds: float = 0.2,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``args.episodes`` episodes on ``workers`` actors (default: one per CPU of the cluster);
    the actors' results and the errors to report. ``on_event`` sees every event in the driver."""
    with ray_session(args.address) as ray:
        from ray.util.queue import Queue

        n = workers if workers is not None else max(1, int(ray.cluster_resources().get("CPU", 1)))
        shards = split_episodes(args.episodes, n)
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
        events = Queue(actor_options={"num_cpus": 0})  # bookkeeping only: it must not take a collector's CPU
        # One CPU each, as a local worker process; no restarts and no task retries (module docstring).
        actor_class = ray.remote(CollectorActor).options(num_cpus=1, max_restarts=0, max_task_retries=0)
        actors = [actor_class.remote() for _ in shards]
        results: list[dict[str, Any]] = []
        errors: list[str] = []

        def drain() -> None:
            size = events.qsize()
            for event in events.get_nowait_batch(size) if size else []:
                on_event(event)

        with shared_fs_marker(args.out) as token:
            pending = {actor.run.remote(collect, args, shard, events, token): k
                       for k, (actor, shard) in enumerate(zip(actors, shards))}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1, timeout=poll_seconds)
                    drain()
                    for ref in done:
                        k = pending.pop(ref)
                        try:
                            results.append(ray.get(ref))
                        except ray.exceptions.RayError as exc:
                            lost = isinstance(exc, ray.exceptions.RayActorError)
                            errors.append(f"collector actor {k} ({len(shards[k])} episodes from episode {shards[k][0]}) "
                                          f"{'was lost (its process or node died)' if lost else 'failed'}; the "
                                          "trajectories it finished are in the buffer, its summary counts are lost; "
                                          f"the other actors were stopped:\n{exc}")
                    if errors:
                        break  # as the local engine does: stop the others (finally), report, exit non-zero
                drain()  # an actor puts each event before it returns, so this is the last of them
            finally:
                for actor in actors:
                    ray.kill(actor)
                events.shutdown()
    return results, errors


__all__ = ["CollectorActor", "collect_on_ray"]
