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


@pytest.mark.parametrize("command", [["validate", "r.yaml"], ["plan", "-c", "r.yaml"]])
def test_a_file_with_thousands_of_problems_lists_the_first_few_hundred(
    tmp_path, monkeypatch, capsys, command
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLICATED_API_TOKEN", "t" * 20)
    monkeypatch.setenv("REPLICATED_API_ORIGIN", "http://127.0.0.1:9/vendor")
    entries = "".join(f"  - provider: nope{i}\n" for i in range(2000))
    (tmp_path / "r.yaml").write_text("version: 1\nregistries:\n" + entries)
    assert main(command) == 1
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    problems = [line for line in lines if line.startswith("r.yaml:")]
    assert len(problems) == 300
    assert problems[0].startswith("r.yaml:3:") and "nope0" in problems[0]
    assert "... and 1700 more not listed" in lines
    if command[0] == "validate":
        assert "2000 error(s), 0 warning(s) in 1 file" in captured.err


def test_an_error_quoting_terminal_escapes_is_printed_escaped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLICATED_API_TOKEN", "t" * 20)
    monkeypatch.setenv("REPLICATED_API_ORIGIN", "http://127.0.0.1:9/\x1b[2J")
    assert main(["ls"]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2J" in err


@pytest.mark.parametrize("command", [["plan"], ["apply", "--auto-approve"], ["test"], ["import"], ["ls"], ["logs"]])
def test_every_command_without_a_token_says_the_same_one_line(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REPLICATED_API_TOKEN", raising=False)
    monkeypatch.setenv("REPLICATED_API_ORIGIN", "http://127.0.0.1:9/vendor")
    monkeypatch.setenv("GH_TOKEN", "ghp_" + "x" * 36)
    (tmp_path / "registries.yaml").write_text(
        "version: 1\nregistries:\n  - provider: ghcr\n    username: bot\n    token: ${GH_TOKEN}\n"
        "    tests: [ghcr.io/acme/app:1]\n")
    assert main(command) == 1
    assert capsys.readouterr().err == (
        "error: no Vendor API token: set REPLICATED_API_TOKEN (or pass --api-token); "
        "for the local sandbox, use the token it printed when it started\n")
