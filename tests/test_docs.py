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


ROOT = README.parent


def test_the_design_notes_point_nowhere_outside_the_repository_nor_at_issues():
    for path in [ROOT / "docs" / "DESIGN.md", ROOT / "README.md", ROOT / "CHANGELOG.md"]:
        text = path.read_text()
        assert "../" not in text, path
        assert not re.search(r"\bissues? #?\d+|(?<![\w&])#\d+\b", text, flags=re.I), path
    comments = [line.split("#", 1)[1] for line in (ROOT / "pyproject.toml").read_text().splitlines()
                if "#" in line]
    assert not [c for c in comments if re.search(r"\bissue\b|#\d", c, flags=re.I)]


def test_the_license_is_the_full_apache_2_text_that_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 11000
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog\n")


def test_the_readme_says_what_to_put_in_gitignore():
    text = README.read_text()
    block = text.split("What to put in `.gitignore`", 1)[1].split("```")[1]
    assert "regsync.state.json.lock" in block and "*.plan" in block


def test_the_commands_table_names_every_option_of_each_command():
    import typer.main

    from reconciler.cli import app

    rows = {}
    for line in README.read_text().splitlines():
        found = re.match(r"\| `regsync ([a-z-]+)", line)
        if found:
            rows[found[1]] = re.split(r"(?<!\\)\|", line)[1]  # not at an escaped \|
    group = typer.main.get_command(app)
    missing = []
    for name, command in group.commands.items():
        if name in ("github", "state"):  # a row each for several subcommands
            continue
        row = rows.get(name, "")
        for param in command.params:
            names = [o for o in param.opts + param.secondary_opts if o.startswith("-")]
            if not names or names[0] in ("--help", "--api-token", "--api-origin"):
                continue  # the API options are documented once, under the table
            if not any(re.search(re.escape(o) + r"(?![a-z-])", row) for o in names):
                missing.append(f"{name} {names[0]}")
    assert missing == [], missing
