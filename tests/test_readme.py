"""The README's Python example runs as written."""

from __future__ import annotations

import pathlib
import re
import tempfile

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    # SB3 makes an empty SB3-<date> folder in the temp dir when a run has no log folder.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert (tmp_path / "classifier.pt").is_file()
    assert len(list((tmp_path / "buffers").glob("*/*/meta.json"))) == 60
