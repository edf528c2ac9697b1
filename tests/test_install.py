"""The install stays what the platform notes measured: the pinned versions, as pinned."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, pinned = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not pinned with =="
            out[name.strip()] = pinned.strip()
    return out


def test_every_constraint_is_pinned_and_installed_as_pinned():
    pinned = pins()
    assert {"torch", "gymnasium", "stable-baselines3", "mani_skill"} <= set(pinned)
    for name, wanted in pinned.items():
        assert version(name).split("+")[0] == wanted, (name, version(name), wanted)
