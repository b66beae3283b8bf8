"""What a user reads: the text plan, the pull-request comment and the JSON document."""

from __future__ import annotations

import io
import json

from reconciler.diff import diff
from reconciler.model import Config, Settings
from reconciler.plan import Plan
from reconciler.render import registries_table, render_json, render_markdown, render_text
from reconciler.state import RegistryState, State
from tests.builders import CANARY, FP, T0, have, want


def small_plan(*, prune=True, max_deletes=1) -> Plan:
    """One of each: a create, an update (endpoint, app ids, rotated secret), a delete,
    an unchanged registry, an ignored one."""
    changed = want("acme-quay", 1, provider="quay", endpoint="quay.example.com",
                   app_ids=("app-2", "app-1"))
    same = want("acme-ghcr", 2, provider="ghcr", endpoint="ghcr.io", auth_type="token")
    state = State(key_id=FP.key_id, registries={
        "acme-quay": RegistryState("quay", "quay.io", FP.fingerprint(want("acme-quay", secret="old",
                                   provider="quay", endpoint="quay.io")), T0),
        "acme-ghcr": RegistryState("ghcr", "ghcr.io", FP.fingerprint(same), T0),
    })
    return diff(
        Config(path="registries.yaml",
               settings=Settings(max_deletes=max_deletes, ignore=("vendor-*",)),
               registries=(want("acme-hub", 0), changed, same)),
        [
            have("acme-quay", provider="quay", endpoint="quay.io", app_ids=("app-1",)),
            have("acme-ghcr", provider="ghcr", endpoint="ghcr.io", auth_type="token"),
            have("old-nexus", provider="nexus", endpoint="nexus.acme.io",
                 last_used_at="2026-03-04T05:06:07Z"),
            have("vendor-mirror"),
        ],
        state,
        FP,
        prune=prune,
    )


SMALL_TEXT = """\
regsync will perform these actions:

  + create acme-hub (dockerhub)
      provider: dockerhub
      endpoint: index.docker.io
      authType: password
      username: acme
      appIds: (all apps)
      credentials: (will be set)

  ~ update acme-quay (quay)
      endpoint: quay.io -> quay.example.com
      appIds: [app-1] -> [app-1, app-2]
      credentials: (changed)

  - destroy old-nexus (nexus)
      last used: 2026-03-04T05:06:07Z

Ignored (settings.ignore): vendor-mirror

Plan: 1 to add, 1 to change, 1 to destroy.
"""


def text(plan, color=False) -> str:
    out = io.StringIO()
    render_text(plan, out, color=color)
    return out.getvalue()


def markdown(plan) -> str:
    out = io.StringIO()
    render_markdown(plan, out)
    return out.getvalue()


def as_json(plan) -> str:
    out = io.StringIO()
    render_json(plan, out)
    return out.getvalue()


def test_text_plan_reads_like_terraform():
    assert text(small_plan()) == SMALL_TEXT


def test_text_plan_lists_unmanaged_registries_when_not_pruning():
    lines = text(small_plan(prune=False)).splitlines()
    i = lines.index("Not in the file (unmanaged; settings.prune or --prune deletes them):")
    assert lines[i + 1] == "    old-nexus (nexus), last used: 2026-03-04T05:06:07Z"
    assert lines[-1] == "Plan: 1 to add, 1 to change, 0 to destroy."
    assert not any("destroy old-nexus" in line for line in lines)


def test_no_changes_says_so():
    reg = want("acme-hub")
    state = State(registries={"acme-hub": RegistryState("dockerhub", "index.docker.io",
                                                        FP.fingerprint(reg), T0)})
    plan = diff(Config(path="r.yaml", settings=Settings(), registries=(reg,)),
                [have("acme-hub")], state, FP, prune=False)
    assert text(plan) == "No changes. The team's registries match the file.\n"
    assert markdown(plan) == "**No changes.** The team's registries match the file.\n"


def test_too_many_deletes_puts_a_warning_box_on_top():
    plan = small_plan(max_deletes=0)
    lines = text(plan).splitlines()
    assert lines[:5] == [
        "+----------------------------------------------------------------------------+",
        "| Warning: This plan destroys 1 registry, more than settings.max_deletes     |",
        "| (0). regsync apply refuses it without --force.                             |",
        "+----------------------------------------------------------------------------+",
        "",
    ]
    assert lines[-1] == "Plan: 1 to add, 1 to change, 1 to destroy."


def test_colour_only_when_asked():
    assert "\033[" not in text(small_plan())
    coloured = text(small_plan(), color=True)
    assert "\033[32m  + create acme-hub (dockerhub)\033[0m" in coloured
    assert "\033[33m  ~ update acme-quay (quay)\033[0m" in coloured
    assert "\033[31m  - destroy old-nexus (nexus)\033[0m" in coloured
    # the same words once the colour codes are gone
    for code in ("\033[32m", "\033[33m", "\033[31m", "\033[1m", "\033[0m"):
        coloured = coloured.replace(code, "")
    assert coloured == SMALL_TEXT


def test_markdown_summary_first_and_details_collapsed():
    md = markdown(small_plan(max_deletes=0))
    assert md == (
        "**Plan: 1 to add, 1 to change, 1 to destroy.**\n"
        "\n"
        "> [!WARNING]\n"
        "> This plan destroys 1 registry, more than settings.max_deletes (0). "
        "regsync apply refuses it without --force.\n"
        "\n"
        "<details><summary>Details</summary>\n"
        "\n"
        "```diff\n"
        "regsync will perform these actions:\n"
        "\n"
        "+ create acme-hub (dockerhub)\n"
        "+     provider: dockerhub\n"
        "+     endpoint: index.docker.io\n"
        "+     authType: password\n"
        "+     username: acme\n"
        "+     appIds: (all apps)\n"
        "+     credentials: (will be set)\n"
        "\n"
        "! update acme-quay (quay)\n"
        "!     endpoint: quay.io -> quay.example.com\n"
        "!     appIds: [app-1] -> [app-1, app-2]\n"
        "!     credentials: (changed)\n"
        "\n"
        "- destroy old-nexus (nexus)\n"
        "-     last used: 2026-03-04T05:06:07Z\n"
        "\n"
        "Ignored (settings.ignore): vendor-mirror\n"
        "```\n"
        "\n"
        "</details>\n"
    )


def test_a_backtick_fence_in_a_value_cannot_end_the_code_block():
    registries = (want("x", endpoint="a```b"),)
    plan = diff(Config(path="r.yaml", settings=Settings(), registries=registries),
                [], State(), FP, prune=False)
    md = markdown(plan)
    assert "\n````diff\n" in md and "\n````\n\n</details>\n" in md


def test_a_huge_plan_keeps_head_and_tail_within_a_pr_comment():
    registries = tuple(want(f"registry-{i:04d}", i) for i in range(2000))
    plan = diff(Config(path="r.yaml", settings=Settings(), registries=registries), [],
                State(), FP, prune=False)
    md = markdown(plan)
    assert len(md) <= 60_000
    lines = md.splitlines()
    assert lines[0] == "**Plan: 2000 to add, 0 to change, 0 to destroy.**"
    assert lines[2] == "<details><summary>Details</summary>"
    assert "+ create registry-0000 (dockerhub)" in lines
    assert "+ create registry-1999 (dockerhub)" in lines
    assert "+ create registry-1000 (dockerhub)" not in lines
    (note,) = [line for line in lines if line.startswith("... ")]
    head_count = sum(1 for line in lines if line.startswith("+ create"))
    assert note.startswith(f"... {2000 - head_count} changes (")
    assert "characters) cut here to fit a pull-request comment" in note
    # whole changes on both sides of the cut
    i = lines.index(note)
    assert lines[i - 1] == "" and lines[i + 1] == "" and lines[i + 2].startswith("+ create ")
    assert lines[-3:] == ["```", "", "</details>"]
    assert CANARY not in md


def test_json_is_the_plan_data_and_nothing_else():
    plan = small_plan()
    out = as_json(plan)
    assert out == json.dumps(plan.data, indent=2) + "\n"
    assert json.loads(out) == {
        "format_version": 1,
        "changes": [
            {"action": "create", "slug": "acme-hub", "provider": "dockerhub",
             "fields": ["provider", "endpoint", "authType", "username", "appIds", "credentials"],
             "reasons": [],
             "changed": [
                 {"field": "provider", "old": None, "new": "dockerhub"},
                 {"field": "endpoint", "old": None, "new": "index.docker.io"},
                 {"field": "authType", "old": None, "new": "password"},
                 {"field": "username", "old": None, "new": "acme"},
                 {"field": "appIds", "old": None, "new": []},
                 {"field": "credentials", "new": "(will be set)"},
             ]},
            {"action": "update", "slug": "acme-quay", "provider": "quay",
             "fields": ["endpoint", "appIds", "credentials"], "reasons": [],
             "changed": [
                 {"field": "endpoint", "old": "quay.io", "new": "quay.example.com"},
                 {"field": "appIds", "old": ["app-1"], "new": ["app-1", "app-2"]},
                 {"field": "credentials", "new": "(changed)"},
             ]},
            {"action": "delete", "slug": "old-nexus", "provider": "nexus", "fields": [],
             "reasons": [], "changed": [], "last_used_at": "2026-03-04T05:06:07Z"},
            {"action": "noop", "slug": "acme-ghcr", "provider": "ghcr", "fields": [],
             "reasons": [], "changed": []},
        ],
        "summary": {"create": 1, "update": 1, "delete": 1},
        "unmanaged": [],
        "ignored": ["vendor-mirror"],
        "warnings": [],
        # set by workflow.make_plan (tests/test_digest.py covers them)
        "file": "",
        "file_warnings": [],
        "digest": "",
        "digest_items": [],
    }


def test_no_rendering_shows_a_secret_or_a_fingerprint():
    for prune in (True, False):
        plan = small_plan(prune=prune, max_deletes=0)
        for rendered in (text(plan), text(plan, color=True), markdown(plan), as_json(plan)):
            assert CANARY not in rendered
            assert "hmac-sha256" not in rendered


def test_control_characters_from_the_api_cannot_reach_the_terminal():
    desired = want("acme-hub", username="acme")
    remote = [have("acme-hub", username="evil\x1b[2J\x1b[31m"), have("x\x07y", provider="quay")]
    plan = diff(Config(path="r.yaml", settings=Settings(), registries=(desired,)), remote,
                State(), FP, prune=False)
    for render in (lambda s: render_text(plan, s, color=False), lambda s: render_markdown(plan, s)):
        out = io.StringIO()
        render(out)
        text = out.getvalue()
        assert "\x1b" not in text and "\x07" not in text
        assert "evil\\x1b[2J\\x1b[31m -> acme" in text
        assert "x\\x07y (quay)" in text


def test_a_huge_or_reordering_value_from_the_api_is_escaped_and_clipped():
    remote = [have("acme", username="\u202eevil" + "u" * 100_000, provider="quay")]
    out = io.StringIO()
    registries_table(remote, out)
    row = out.getvalue().splitlines()[1]
    assert "\u202e" not in row and "\\u202eevil" in row
    assert len(row) < 1000 and "u..." in row
    plan = diff(Config(path="r.yaml", settings=Settings(), registries=(want("acme", username="a"),)),
                remote, State(), FP, prune=False)
    out = io.StringIO()
    render_text(plan, out, color=False)
    assert "\u202e" not in out.getvalue()
    assert max(len(line) for line in out.getvalue().splitlines()) <= 600
