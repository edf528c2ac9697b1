"""The labelling page: a small Flask app, served from a background thread on 127.0.0.1.

One page (``page.html``) serves both uses; what it shows comes from a *session* object:

* :class:`QueryPage`: a training run's open queries (``train-agent --labeller web``), with the
  model's score, the budget spent and left, the last refit and the monitor's figures;
* ``agents.labelling.command.TrajectoryPage``: recorded trajectories to mark (``rewardswap label``).

A session has ``state() -> dict`` (JSON for the page), ``frame(item, index) -> array | None`` (an
image to show) and ``answer(payload) -> dict``. Keys on the page: ``s`` success, ``f`` failure,
``space`` skip (and, over a trajectory, the arrow keys move between frames). The server binds
127.0.0.1 unless told otherwise; nothing on it is authenticated, so another interface is a warning.

>>> import numpy as np
>>> display_parts({"rgb": np.zeros((8, 8, 3), np.uint8), "state": np.arange(3.0)})
(['rgb'], {'state': [0.0, 1.0, 2.0]})
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import cv2
import numpy as np

from agents.labelling.queue import LabelQueue

PAGE = Path(__file__).with_name("page.html")
#: Images are enlarged (nearest neighbour) until their longer side is at least this many pixels.
DISPLAY_SIDE = 256
#: State vectors longer than this are cut on the page (the whole vector is still what is labelled).
MAX_STATE_VALUES = 64


class Session(Protocol):
    def state(self) -> dict[str, Any]: ...
    def frame(self, item: str, index: int) -> Optional[np.ndarray]: ...
    def answer(self, payload: dict[str, Any]) -> dict[str, Any]: ...


def is_image(array: np.ndarray) -> bool:
    """An observation a person can look at: uint8 ``(H, W, C)`` with 1, 3 or 4 channels."""
    return array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] in (1, 3, 4)


def display_parts(frames: dict[str, np.ndarray]) -> tuple[list[str], dict[str, list[float]]]:
    """The image keys of one frame, and its other keys as short lists of rounded numbers."""
    images = [k for k, v in frames.items() if is_image(np.asarray(v))]
    states = {k: [round(float(x), 3) for x in np.asarray(v, np.float64).reshape(-1)[:MAX_STATE_VALUES]]
              for k, v in frames.items() if k not in images}
    return images, states


def png(image: np.ndarray) -> bytes:
    """``image`` (uint8 HWC, RGB) enlarged to at least :data:`DISPLAY_SIDE` pixels, as PNG bytes."""
    image = np.asarray(image)
    scale = max(1, math.ceil(DISPLAY_SIDE / max(image.shape[:2])))
    big = cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    if big.ndim == 3 and big.shape[-1] == 3:
        big = cv2.cvtColor(big, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", big)
    if not ok:  # pragma: no cover - uint8 images always encode
        raise ValueError("could not encode the frame as PNG")
    return data.tobytes()


def make_app(session: Session):  # noqa: ANN201 - a flask.Flask
    from flask import Flask, Response, abort, jsonify, request

    app = Flask("rewardswap-labelling")

    @app.get("/")
    def page() -> Response:
        return Response(PAGE.read_text(), mimetype="text/html")

    @app.get("/api/state")
    def state() -> Response:
        return jsonify(session.state())

    @app.get("/frame/<item>/<int:index>.png")
    def frame(item: str, index: int) -> Response:
        image = session.frame(item, index)
        if image is None:
            abort(404)
        return Response(png(image), mimetype="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/answer")
    def answer() -> Response:
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            return jsonify({"error": "expected a JSON object"}), 400
        try:
            return jsonify(session.answer(payload))
        except (KeyError, ValueError) as exc:
            return jsonify({"error": str(exc)}), 409

    return app


def check_host(host: str) -> None:
    """Warn when the page would listen beyond this machine (it has no authentication)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        warnings.warn(f"the labelling page listens on {host}: anyone who can reach this machine can answer its "
                      "queries (there is no authentication); use 127.0.0.1 and an SSH tunnel instead", RuntimeWarning,
                      stacklevel=3)


class LabelServer:
    """``session`` served on ``host:port`` (port 0: any free one) from a daemon thread."""

    def __init__(self, session: Session, host: str = "127.0.0.1", port: int = 0) -> None:
        from werkzeug.serving import make_server

        check_host(host)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in the run's log
        self.server = make_server(host, int(port), make_app(session), threaded=True)
        self.host, self.port = host, int(self.server.server_port)
        self.thread = threading.Thread(target=self.server.serve_forever, name="labelling-page", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class QueryPage:
    """A training run's queue on the page. ``status()`` adds the run's figures (monitor, refits)."""

    def __init__(self, queue: LabelQueue, status: Callable[[], dict[str, Any]] = dict, title: str = "") -> None:
        self.queue = queue
        self.status = status
        self.title = title

    def state(self) -> dict[str, Any]:
        items = []
        for query in self.queue.open():
            images, states = display_parts(query.frames)
            items.append({"id": str(query.id), "episode": query.episode, "step": query.step,
                          "score": round(query.score, 4), "images": [f"/frame/{query.id}/{i}.png" for i in range(len(images))],
                          "state": states})
        return {"mode": "queries", "title": self.title, "labels": self.queue.counts(),
                "remaining": self.queue.remaining, "items": items, **self.status()}

    def frame(self, item: str, index: int) -> Optional[np.ndarray]:
        query = self.queue.queries.get(int(item)) if item.isdigit() else None
        if query is None:
            return None
        images, _ = display_parts(query.frames)
        return query.frames[images[index]] if 0 <= index < len(images) else None

    def answer(self, payload: dict[str, Any]) -> dict[str, Any]:
        label = {"success": True, "failure": False, "skip": None}[str(payload.get("label"))]
        self.queue.answer(int(payload["id"]), label)
        return {"ok": True, "labels": self.queue.counts()}


__all__ = ["LabelServer", "QueryPage", "make_app", "png", "display_parts", "check_host"]
