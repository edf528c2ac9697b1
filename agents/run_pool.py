"""Bench runs in processes of their own, at most ``jobs`` at a time, surviving the death of any.

A ``concurrent.futures`` process pool breaks as a whole when one worker is killed (SIGKILL, the
OOM killer): every pending run fails with it. Here each run is a process with a pipe back; the
parent waits on the pipes and the processes' sentinels together, so it sees at once

* a result, or an exception the run raised (re-raised here once the runs beside it finish: a bug
  or a bad setting is not retried);
* a process that ended without a word: it died. The parent names the run and how it died, and
  starts it again, at most ``retries`` times, resuming from the run's last checkpoint when it has
  one (:mod:`agents.checkpoint`), while the other runs go on.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import traceback
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Hashable, Sequence

from agents.checkpoint import with_resume
from agents.config import TrainConfig

#: times a run whose process died is started again before the bench gives up on it
RETRIES = 2


class RunFailed(RuntimeError):
    """A run raised, or died more often than it may be retried; the other runs finished."""


def _child(target: Callable[..., dict[str, Any]], cfg: TrainConfig, step_seconds: float | None, conn: Connection) -> None:
    try:
        conn.send(("ok", target(cfg, step_seconds)))
    except BaseException:  # noqa: BLE001 - everything goes back to the parent, which re-raises it
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def how_it_died(exitcode: int | None) -> str:
    """``-9`` -> ``"killed by SIGKILL"``; ``1`` -> ``"exit code 1"``.

    >>> how_it_died(-9), how_it_died(3)
    ('killed by SIGKILL', 'exit code 3')
    """
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def run_pool(tasks: Sequence[tuple[Hashable, TrainConfig]], jobs: int, target: Callable[..., dict[str, Any]],
             step_seconds: float | None = None, on_done: Callable[[Hashable], None] = lambda key: None,
             retries: int = RETRIES) -> dict[Hashable, dict[str, Any]]:
    """Run ``target(cfg, step_seconds)`` for each ``(key, cfg)``; return ``{key: summary}``.

    Raises :class:`RunFailed` naming every run that raised or died ``retries + 1`` times, after the
    others finished.
    """
    ctx = multiprocessing.get_context("forkserver")
    waiting = deque((key, cfg, 0) for key, cfg in tasks)
    running: dict[Any, tuple[Hashable, TrainConfig, int, Any, Connection]] = {}  # sentinel -> run
    results: dict[Hashable, dict[str, Any]] = {}
    failures: list[str] = []
    while waiting or running:
        while waiting and len(running) < jobs:
            key, cfg, attempt = waiting.popleft()
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(target, cfg, step_seconds, child), daemon=False)
            proc.start()
            child.close()  # the parent's copy: the pipe reports EOF once the child is gone
            running[proc.sentinel] = (key, cfg, attempt, proc, parent)
        for ready in wait([*running, *(run[4] for run in running.values())]):
            sentinel = next((s for s, run in running.items() if ready in (s, run[4])), None)
            if sentinel is None:
                continue  # its pipe and its sentinel were both ready: handled once already
            key, cfg, attempt, proc, conn = running.pop(sentinel)
            message = _receive(conn)
            proc.join()
            conn.close()
            if message is not None and message[0] == "ok":
                results[key] = message[1]
                on_done(key)
            elif message is not None:
                failures.append(f"run {key} raised:\n{message[1]}")
            elif attempt < retries:
                again = with_resume(cfg)
                print(f"bench: run {key} (pid {proc.pid}) died ({how_it_died(proc.exitcode)}); starting it again "
                      f"({attempt + 1} of {retries}){', from its last checkpoint' if again.resume else ''}",
                      file=sys.stderr, flush=True)
                waiting.append((key, again, attempt + 1))
            else:
                failures.append(f"run {key} (pid {proc.pid}) died ({how_it_died(proc.exitcode)}) and was already "
                                f"started again {retries} times")
    if failures:
        raise RunFailed("\n".join(failures))
    return results


def _receive(conn: Connection) -> tuple[str, Any] | None:
    """The run's message, or None when its process ended without one (the pipe reports EOF)."""
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


__all__ = ["RETRIES", "RunFailed", "how_it_died", "run_pool"]
