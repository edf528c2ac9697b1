"""Mark recorded trajectories' first success frame: one label per trajectory (``rewardswap label``).

For buffers recorded where nobody reported success (a real robot, an env with no success key),
or to put a person's judgement in place of a flag. Per trajectory, the labeller marks the **first
success frame** (frames from it on are successes, frames before it are not) or says it **never
succeeds**; that mark is one label. ``collectors.labelling`` rewrites ``labels.npy``, ``meta.json``
and the positive/negative split atomically under the buffer's lock.

Sources (``--labeller``): ``web`` (a page on 127.0.0.1 shows each trajectory's frames; arrow keys
pick a frame, ``s`` marks it, ``f`` never, ``space`` skips), ``module:callable`` (called with all
frames of one trajectory plus ``episode`` and ``step`` arrays, one True/False/None per frame: the
first True is the mark, all None skips it) and ``env`` (the recorded flags themselves, for
benchmarks: each trajectory so marked is counted as a label too).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from typing import Any, Optional

import numpy as np

from agents.labelling.server import LabelServer, display_parts
from agents.labelling.sources import LabelSource, parse_labeller, with_ids
from collectors import Trajectory, load_trajectories
from collectors.labelling import TrajectoryBusyError, claim, finish_moves, mark_trajectory

#: Seconds the page stays up after the last mark, so a person sees it was taken.
PAGE_LINGER_SECONDS = 2.0


def first_success(answers: list[Optional[bool]]) -> tuple[bool, Optional[int]]:
    """(answered, first success frame) from per-frame answers: the first True; no True means never;
    no answer at all means skipped.

    >>> first_success([False, None, True, True]), first_success([False, False]), first_success([None])
    ((True, 2), (True, None), (False, None))
    """
    if all(a is None for a in answers):
        return False, None
    return True, next((i for i, a in enumerate(answers) if a), None)


def trajectory_frames(traj: Trajectory) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in traj.obs.items()}


def recorded_mark(traj: Trajectory) -> Optional[int]:
    """The first frame the recorded flags call a success (None: never)."""
    if not traj.labelled:
        raise ValueError(f"trajectory {traj.path} was recorded without success flags: --labeller env has nothing to "
                         "read; use --labeller web or module:callable")
    hits = np.flatnonzero(np.asarray(traj.labels) >= 0.5)
    return int(hits[0]) if len(hits) else None


class TrajectoryPage:
    """Recorded trajectories, one at a time, on the labelling page (a ``server.Session``)."""

    def __init__(self, trajectories: list[Trajectory], source: str) -> None:
        self.todo = list(trajectories)
        self.source = source
        self.marked = self.skipped = self.busy = 0
        self.done = threading.Event()
        self._lock = threading.RLock()
        self._claim: Optional[contextlib.ExitStack] = None
        self._current: Optional[Trajectory] = None
        self._frames: dict[str, np.ndarray] = {}
        self._advance()

    def _advance(self) -> None:
        """Release the current trajectory; claim the next one no other page holds."""
        if self._claim is not None:
            self._claim.close()
        self._claim, self._current = None, None
        while self.todo:
            traj = self.todo.pop(0)
            stack = contextlib.ExitStack()
            try:
                stack.enter_context(claim(traj.path))
            except TrajectoryBusyError as exc:
                print(f"rewardswap label: {exc}", file=sys.stderr)
                self.busy += 1
                continue
            self._claim, self._current, self._frames = stack, traj, trajectory_frames(traj)
            return
        self.done.set()

    def state(self) -> dict[str, Any]:
        with self._lock:
            current = None
            if self._current is not None:
                frames = []
                for t in range(len(self._current) + 1):
                    images, states = display_parts({k: v[t] for k, v in self._frames.items()})
                    frames.append({"images": [f"/frame/{self._current.id}/{t}.png"] if images else [], "state": states})
                current = {"id": self._current.id, "frames": frames}
            return {"mode": "trajectories", "title": "RewardSwap: mark each trajectory's first success frame",
                    "marked": self.marked, "left": len(self.todo) + (current is not None), "labels_used": self.marked,
                    "source": self.source, "current": current}

    def frame(self, item: str, index: int) -> Optional[np.ndarray]:
        with self._lock:
            if self._current is None or item != self._current.id:
                return None
            images, _ = display_parts({k: v[0] for k, v in self._frames.items()})
            return self._frames[images[0]][index] if images and 0 <= index <= len(self._current) else None

    def answer(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._current is None or str(payload.get("id")) != self._current.id:
                raise KeyError(f"trajectory {payload.get('id')} is not the one on the page")
            label = str(payload.get("label"))
            if label == "success":
                mark_trajectory(self._current.path, int(payload["frame"]), self.source)
                self.marked += 1
            elif label == "failure":
                mark_trajectory(self._current.path, None, self.source)
                self.marked += 1
            elif label == "skip":
                self.skipped += 1
            else:
                raise ValueError(f"label must be success, failure or skip, got {label!r}")
            self._advance()
            return {"ok": True, "marked": self.marked}


def label_now(trajectories: list[Trajectory], source: LabelSource) -> tuple[int, int, int]:
    """Mark trajectories with a source that answers at once; (marked, skipped, busy)."""
    from tqdm.auto import tqdm

    marked = skipped = busy = 0
    for episode, traj in enumerate(tqdm(trajectories, desc="labelling", unit="traj", disable=None)):
        try:
            with claim(traj.path):
                labels = None
                if source.name == "env":  # the recorded per-frame flags stay as they are; the mark is counted
                    answered, first, labels = True, recorded_mark(traj), np.array(traj.labels)
                else:
                    steps = np.arange(len(traj) + 1)
                    frames = with_ids(trajectory_frames(traj), np.full(len(steps), episode), steps)
                    answered, first = first_success(source.answer(frames, truth=lambda: np.zeros(0)) or [])
                if answered:
                    mark_trajectory(traj.path, first, source.name, labels=labels)
                    marked += 1
                else:
                    skipped += 1
        except TrajectoryBusyError as exc:
            print(f"rewardswap label: {exc}", file=sys.stderr)
            busy += 1
    return marked, skipped, busy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR", help="the buffer to label (from `rewardswap collect`)")
    parser.add_argument("--labeller", required=True, metavar="SOURCE",
                        help="web (a page on --label-host:--label-port), module:callable, or env (the recorded flags)")
    parser.add_argument("--all", action="store_true",
                        help="also re-mark trajectories that already carry labels (by default only unlabelled ones; "
                             "with --labeller env every trajectory not yet marked)")
    add_page_arguments(parser)


def add_page_arguments(parser: argparse.ArgumentParser) -> None:
    """The labelling page's options, shared by ``label`` and ``train-agent``."""
    parser.add_argument("--label-host", default="127.0.0.1",
                        help="interface the labelling page listens on; anything but loopback is a warning (no authentication)")
    parser.add_argument("--label-port", type=int, default=0, help="the page's port; 0: any free port (the URL is printed)")


def run(args: argparse.Namespace) -> int:
    try:
        source = parse_labeller(args.labeller)
        moved = finish_moves(args.data)
        trajectories = load_trajectories(args.data)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rewardswap label: error: {exc}", file=sys.stderr)
        return 2
    if moved:
        print(f"finished {moved} interrupted labelling move(s)")
    if args.all:
        todo = trajectories
    elif source.name == "env":
        todo = [t for t in trajectories if not t.meta.get("label")]
    else:
        todo = [t for t in trajectories if not t.labelled]
    print(f"{len(todo)} of {len(trajectories)} trajectories in {args.data} to mark ({source.name}); one label each")
    if source.live:
        page = TrajectoryPage(todo, source.name)
        server = LabelServer(page, args.label_host, args.label_port)
        print(f"labelling page: {server.url}  (Ctrl-C stops; marks already made are kept)", flush=True)
        try:
            page.done.wait()
            time.sleep(PAGE_LINGER_SECONDS)  # the page polls each second: let it show that all is done
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        finally:
            server.close()
        marked, skipped, busy = page.marked, page.skipped, page.busy
    else:
        try:
            marked, skipped, busy = label_now(todo, source)
        except ValueError as exc:
            print(f"rewardswap label: error: {exc}", file=sys.stderr)
            return 2
    left = sum(not t.labelled for t in load_trajectories(args.data))
    print(f"marked {marked} trajectories ({marked} labels), skipped {skipped}, held by another page {busy}; "
          f"{left} still unlabelled")
    return 0
