"""`apply --report-format markdown`: the job summary a CI run shows, on plain data."""

from __future__ import annotations

from reconciler.apply import ApplyResult, ChangeOutcome, ImageTestOutcome
from reconciler.plan import Change
from reconciler.report import apply_markdown


def test_a_failed_change_and_test_say_apply_failed_with_escaped_cells():
    result = ApplyResult(
        changes=(
            ChangeOutcome(Change("create", "hub", "dockerhub"), "succeeded"),
            ChangeOutcome(Change("update", "quay", "quay"), "failed", error="bad | request\x1b[2J"),
        ),
        tests=(ImageTestOutcome("hub", "acme/api:v1", 401, False, error="unauthorized",
                                advice="check the token"),),
    )
    lines = apply_markdown(result).splitlines()
    assert lines[:3] == [
        "### regsync apply",
        "",
        "**Apply failed: 1 of 2 changes failed, 1 of 1 image tests failed; 1 added, 0 changed, "
        "0 destroyed; tests: 0 passed, 1 failed.**",
    ]
    assert "| hub | create | ✅ succeeded |  |" in lines
    assert "| quay | update | ❌ failed | bad \\| request\\x1b[2J |" in lines
    assert "| hub | acme/api:v1 | ❌ failed | 401 | unauthorized check the token |" in lines


def test_nothing_to_do_says_so():
    text = apply_markdown(ApplyResult())
    assert text == ("### regsync apply\n\n**Apply complete: 0 added, 0 changed, 0 destroyed; "
                    "tests: 0 passed, 0 failed.**\n\nNo changes were needed.\n")
