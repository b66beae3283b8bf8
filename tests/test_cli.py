"""The command line as a user meets it: --help texts and exit codes for bad input."""

from __future__ import annotations

import pytest
import typer

from reconciler.cli import app, main

COMMANDS = ["validate", "plan", "apply", "test", "import", "ls", "logs", "sandbox"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_of_every_command_says_what_it_does(name, capsys):
    command = typer.main.get_command(app).commands[name]
    bare = [p.opts[0] for p in command.params if isinstance(p, typer.core.TyperOption) and not p.help]
    assert bare == []
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: regsync {name} ") and " ".join(command.help.split()) in " ".join(out.split())


@pytest.mark.parametrize(
    ("text", "first_line"),
    [
        ("a: &x\n  <<: *x\n", "r.yaml:1:4: the document nests too deeply: an alias is used inside the node it names"),
        ("version: 1\nregistries:\n  - provider: !!bool ghcr\n", "r.yaml:3:15: this value is not a valid bool"),
        ("version: " + "1" * 5000 + "\n", "r.yaml:1:10: the number is too long (5000 characters)"),
    ],
)
@pytest.mark.parametrize("command", [["validate", "r.yaml"], ["plan", "-c", "r.yaml"], ["test", "-c", "r.yaml"]])
def test_a_bad_file_is_exit_1_with_positions_for_validate_plan_and_test(
    tmp_path, monkeypatch, capsys, command, text, first_line
):
    # plan and test fail on the file before any network call; the origin is never used
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLICATED_API_TOKEN", "t")
    monkeypatch.setenv("REPLICATED_API_ORIGIN", "http://127.0.0.1:9/vendor")
    (tmp_path / "r.yaml").write_text(text)
    assert main(command) == 1
    err = capsys.readouterr()
    shown = (err.out + err.err).splitlines()
    assert shown[0].startswith(first_line)
    assert "internal error" not in err.err
