"""The wheel carries the JSON Schemas, and an installed regsync validates with them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROVIDERS = ("ecr", "dockerhub", "ghcr", "gar", "gcr", "quay", "nexus", "other")


def test_the_wheel_ships_the_schemas_and_an_installed_copy_uses_them(tmp_path):
    # No build isolation and no dependencies: nothing is fetched, hatchling is a dev dependency.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("regsync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "reconciler/schema/registries.schema.json" in names
    for provider in PROVIDERS:
        assert f"reconciler/schema/providers/{provider}.schema.json" in names

    # Unpacked away from the repository, the package finds its own copy and validates.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    bad = tmp_path / "registries.yaml"
    bad.write_text("version: 1\nregistries:\n  - provider: ghcr\n    usernme: bot\n")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(site)!r})
        from reconciler.schema import schema_dir
        from reconciler.config import check_files
        print(schema_dir())
        for d in check_files([{str(bad)!r}]):
            print(d)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env={"PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(site / "reconciler" / "schema")
    assert any('unknown field "usernme"; did you mean "username"?' in line for line in lines[1:])


def test_setup_skips_pip_when_pyproject_is_unchanged():
    # Only the suite's own venv: setup.sh in the checkout, run twice; the second run
    # (and, when the first found the stamp current, both) must not run pip at all.
    runs = [subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs
    assert runs[1].stdout.strip().splitlines()[-1] == (
        "setup: .venv is up to date (pyproject.toml unchanged since the last install)")
    assert "installing regsync" not in runs[1].stdout
