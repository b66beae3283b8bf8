"""What the README shows a user is true: its registries files validate."""

from __future__ import annotations

import re
from pathlib import Path

from reconciler.config import check_files

README = Path(__file__).resolve().parents[1] / "README.md"


def registries_blocks() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    return [b for b in blocks if re.search(r"^registries:", b, flags=re.M)]


def test_every_registries_file_in_the_readme_validates(tmp_path):
    blocks = registries_blocks()
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        if not re.search(r"^version:", block, flags=re.M):
            block = "version: 1\n" + block
        path = tmp_path / f"readme-{i}.yaml"
        path.write_text(block)
        errors = [str(d) for d in check_files([str(path)]) if d.severity == "error"]
        assert errors == [], block
