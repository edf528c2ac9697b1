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


def test_vulkan_installer_reuses_the_debian_mirror_whatever_sorts_first(tmp_path):
    import subprocess

    (tmp_path / "a-docker.sources").write_text(
        "Types: deb\nURIs: https://download.docker.com/linux/debian\nSuites: bookworm\nComponents: stable\n"
        "Signed-By: /etc/apt/keyrings/docker.asc\n")
    (tmp_path / "b-cuda.sources").write_text("Types: deb\nURIs: https://developer.download.nvidia.com/x\nSuites: /\n")
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    script = ROOT / "scripts" / "install_vulkan.sh"
    found = subprocess.run(["bash", str(script), "--find-mirror", str(tmp_path)], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["http://mirror.example/debian", "/usr/share/keyrings/debian-archive-keyring.gpg"]
    (tmp_path / "debian.sources").unlink()
    missing = subprocess.run(["bash", str(script), "--find-mirror", str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode != 0 and missing.stdout == ""
    assert "http" not in "".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))
