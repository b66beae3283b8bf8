"""YAML with positions: every key and value keeps its 1-based line and column."""

from __future__ import annotations

import pytest

from reconciler import yamlpos


def load(text: str):
    return yamlpos.load(text, "r.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(yamlpos.YamlError) as info:
        load(text)
    return [str(d) for d in info.value.diagnostics]


def test_values_and_positions_by_path():
    doc = load("version: 1\nregistries:\n  - provider: ghcr\n    username: bot\n")
    assert doc.data == {"version": 1, "registries": [{"provider": "ghcr", "username": "bot"}]}
    assert doc.keys[("registries", 0, "username")] == (4, 5)
    assert doc.values[("registries", 0, "username")] == (4, 15)
    assert doc.values[("registries", 0)] == (3, 5)
    assert doc.value_pos(("registries", 0, "missing")) == (3, 5)  # nearest parent
    assert doc.key_pos(("registries", 0)) == (3, 5)  # a list item has no key


def test_scalars_are_plain_python_and_dates_stay_text():
    doc = load("a: 1\nb: true\nc: ~\nd: 1.5\ne: 2024-01-02\nf: '007'\n")
    assert doc.data == {"a": 1, "b": True, "c": None, "d": 1.5, "e": "2024-01-02", "f": "007"}


def test_duplicate_key_is_reported_at_the_second_key():
    assert problems("version: 1\nregistries: []\nversion: 1\n") == [
        'r.yaml:3:1: duplicate key "version" (first at line 1); keep only one'
    ]


def test_every_duplicate_is_reported_at_once():
    text = "registries:\n  - provider: ghcr\n    token: a\n    token: b\n  - provider: x\n    provider: y\n"
    assert problems(text) == [
        'r.yaml:4:5: duplicate key "token" (first at line 3); keep only one',
        'r.yaml:6:5: duplicate key "provider" (first at line 5); keep only one',
    ]


def test_syntax_error_has_the_problem_position():
    assert problems("version: 1\nregistries:\n  - provider: ghcr\n   username: bot\n") == [
        "r.yaml:4:4: YAML syntax error: did not find expected '-' indicator "
        "(while parsing a block collection); check this line's indentation: "
        "the fields of one entry line up under each other"
    ]


def test_a_line_indented_too_far_says_to_check_the_indentation():
    text = "version: 1\nregistries:\n  - provider: ghcr\n    username: bot\n     token: x\n"
    assert problems(text) == [
        "r.yaml:5:11: YAML syntax error: mapping values are not allowed in this context; "
        "check this line's indentation: the fields of one entry line up under each other"
    ]


def test_tab_indentation():
    assert problems("a:\n\tb: 1\n") == [
        "r.yaml:2:1: a tab character: YAML indents with spaces only; replace the tab with spaces"
    ]


def test_two_documents_are_refused():
    assert problems("version: 1\n---\nversion: 1\n") == [
        "r.yaml:2:1: the file holds more than one YAML document (---); regsync reads exactly one"
    ]


def test_custom_tags_are_refused():
    assert problems("a: !!python/object:os.system x\nb: !env X\n") == [
        "r.yaml:1:4: unsupported YAML tag tag:yaml.org,2002:python/object:os.system; write plain YAML",
        "r.yaml:2:4: unsupported YAML tag !env; write plain YAML",
    ]


def test_non_string_keys_are_refused():
    assert problems("? [a, b]\n: 1\n") == ["r.yaml:1:3: a mapping key must be a plain string"]


def test_control_characters_are_reported():
    assert problems("a: 1\nb: \x07\n") == [
        "r.yaml:2:4: cannot read YAML: unacceptable character #x0007: control characters are not allowed"
    ]


def test_anchors_and_merges_give_plain_data():
    doc = load("base: &b {username: bot, password: x}\nr:\n  <<: *b\n  username: other\n")
    assert doc.data["r"] == {"username": "other", "password": "x"}
    assert doc.keys[("r", "username")] == (4, 3)


def test_recursive_alias_does_not_hang():
    msgs = problems("a: &x [*x]\n")
    assert msgs and all("nests too deeply" in m for m in msgs)


def test_empty_document_is_none():
    assert load("# only a comment\n").data is None


@pytest.mark.parametrize(
    "text",
    [
        "a: &x\n  <<: *x\n",  # a mapping merged into itself
        "registries:\n  - &e\n    <<: [*e]\n    provider: ghcr\n",
        "a: &x [*x, *x, *x, *x]\n",  # without cycle detection: 4**64 values before the depth limit
        "a: &x {b: *x, c: *x}\n",
    ],
)
def test_recursive_aliases_and_merges_are_one_problem_not_a_crash_or_a_hang(text):
    msgs = problems(text)
    assert msgs and all("recursive alias" in m for m in msgs)


def test_alias_expansion_bomb_is_refused_quickly():
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for n in "bcdefghi":  # 10**9 values once expanded
        prev = chr(ord(n) - 1)
        text += f"{n}: &{n} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
    msgs = problems(text)
    assert len(msgs) == 1 and "expands to more than 1,000,000 values through its aliases" in msgs[0]


def test_a_number_too_long_for_python_is_a_problem_not_a_crash():
    msgs = problems("version: 1\nsettings:\n  max_deletes: " + "9" * 5000 + "\n")
    assert msgs == ["r.yaml:3:16: the number is too long (5000 characters); write a smaller one"]


def test_an_alias_used_twice_side_by_side_is_not_recursive():
    doc = load("base: &b {u: x}\nr: [*b, *b, {<<: *b}, {<<: [*b, *b]}]\n")
    assert doc.data["r"] == [{"u": "x"}] * 4


def test_an_explicit_tag_on_text_that_is_not_of_its_type_is_a_problem_not_a_crash():
    # `!!bool dockerhub` raised KeyError from PyYAML's constructor, `!!int x` ValueError (exit 3)
    secret = "CANARY-hunter2"
    msgs = problems(f"a: !!bool dockerhub\nb: !!int {secret}\nc: !!float x\nd: !!int 0x1F\n")
    assert msgs == [
        "r.yaml:1:4: this value is not a valid bool, as its tag !!bool says; remove the tag",
        "r.yaml:2:4: this value is not a valid int, as its tag !!int says; remove the tag",
        "r.yaml:3:4: this value is not a valid float, as its tag !!float says; remove the tag",
    ]
    assert load("d: !!int 0x1F\ne: !!bool yes\n").data == {"d": 31, "e": True}
