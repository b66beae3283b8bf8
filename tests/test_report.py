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


def test_html_and_links_from_the_api_are_shown_as_text_not_rendered():
    """A job summary renders HTML and markdown links: a registry's or the API's text
    must not draw an image (a tracking pixel), a heading or a link that hides its URL."""
    hostile = ('<img src="https://evil.example/p.png"> <h1>All good</h1> &amp; '
               '[docs](https://evil.example/x) ![x](https://evil.example/y.png)')
    result = ApplyResult(
        changes=(ChangeOutcome(Change("update", "quay", "quay"), "failed", error=hostile),),
        tests=(ImageTestOutcome("hub", "acme/api:v1", 401, False, error=hostile),),
    )
    text = apply_markdown(result)
    assert "<" not in text and ">" not in text and "](" not in text
    assert text.count("&lt;img src=\"https://evil.example/p.png\"&gt; &lt;h1&gt;All good&lt;/h1&gt; "
                      "&amp;amp; [docs]\\(https://evil.example/x)") == 2
