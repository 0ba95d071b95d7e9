"""The rule language: validation errors that point at file:line, templates, the shipped rules."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from goalwatch.contracts import RuleKind, Severity
from goalwatch.routing.spec import Name as RoutingName
from goalwatch.rules import RuleLoadError, load_rule_file, load_rules
from goalwatch.rules.spec import GROUP_NAME_PATTERN, NotIn, labels_match
from goalwatch.rules.template import TemplateError, check_template, render

REPO = Path(__file__).resolve().parents[2]

VALID = """\
id: report-rework-rate-high
name: Report rework rate above 8% on 3 consecutive days
kind: threshold
metric: report_rework_rate
where: {department: radiology}
condition: {op: ">", value: 0.08, consecutive: 3}
severity: warning
notify: [subject, manager]
message: "{subject}: rework rate {value:.0%} ({labels[department]})"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(RuleLoadError) as caught:
        load_rules(directory)
    return [str(error) for error in caught.value.errors]


def test_valid_rule_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "rework.yaml", VALID)
    [rule] = load_rules(tmp_path)
    assert rule.path == path
    spec = rule.spec
    assert (spec.id, spec.kind, spec.metric) == (
        "report-rework-rate-high",
        "threshold",
        "report_rework_rate",
    )
    assert spec.where == {"department": "radiology"}
    assert (spec.condition.op, spec.condition.value, spec.condition.consecutive) == (">", 0.08, 3)
    assert spec.severity is Severity.WARNING
    assert spec.notify == ["subject", "manager"]


def test_a_named_group_reads_as_group_colon_name(tmp_path: Path) -> None:
    # Written like manager: 2 in the list, which YAML reads as a one-key mapping.
    text = VALID.replace("[subject, manager]", "[subject, group: quality-leads, 'group:qa_2']")
    write(tmp_path, "r.yaml", text)
    [rule] = load_rules(tmp_path)
    assert rule.spec.notify == ["subject", "group:quality-leads", "group:qa_2"]


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        ("[group: Quality Leads]", "'group:Quality Leads': a group name is 1-63 lower-case"),
        ("[group: ]", "'group:': a group name is 1-63 lower-case"),
        ("[{group: qa, manager: 2}]", "is not a recipient: use subject, manager, manager: N"),
        ("[group: qa, 'group:qa']", "lists someone twice"),
    ],
)
def test_a_group_name_is_checked(tmp_path: Path, notify: str, expected: str) -> None:
    write(tmp_path, "r.yaml", VALID.replace("[subject, manager]", notify))
    [error] = errors_of(tmp_path)
    assert error.startswith(f"{tmp_path}/r.yaml:8: notify"), error
    assert expected in error


def test_a_rule_names_groups_as_the_routing_file_does() -> None:
    # A group a rule may name is one the routing file may define, and the other way round.
    [constraint] = RoutingName.__metadata__
    assert constraint.pattern == GROUP_NAME_PATTERN


def test_consecutive_defaults_to_one_and_where_to_empty(tmp_path: Path) -> None:
    text = VALID.replace("where: {department: radiology}\n", "").replace(", consecutive: 3", "")
    text = text.replace(" ({labels[department]})", "")
    write(tmp_path, "r.yaml", text)
    [rule] = load_rules(tmp_path)
    assert rule.spec.condition.consecutive == 1
    assert rule.spec.where == {}


def test_wrong_operator_points_at_its_line(tmp_path: Path) -> None:
    text = VALID.replace(
        'condition: {op: ">", value: 0.08, consecutive: 3}',
        ("condition:\n  op: gt\n  value: 0.08\n  consecutive: 3"),
    )
    write(tmp_path, "report-rework-rate.yaml", text)
    assert errors_of(tmp_path) == [
        f"{tmp_path}/report-rework-rate.yaml:7: condition.op: 'gt' is not one of "
        '>, >=, <, <=, ==, !=, between, outside — write e.g. op: ">"'
    ]


def test_all_errors_of_all_files_are_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        VALID.replace("severity: warning", "severity: yellow").replace(
            "metric: report_rework_rate", "metric: Report Rework"
        ),
    )
    write(
        tmp_path,
        "b.yaml",
        VALID.replace("id: report-rework-rate-high", "id: b").replace(
            "kind: threshold", "kind: fraud"
        ),
    )
    errors = errors_of(tmp_path)
    assert errors == [
        f"{tmp_path}/a.yaml:4: metric: 'Report Rework' is not a metric name: use lower "
        "snake_case (dots allowed), e.g. report_rework_rate",
        f"{tmp_path}/a.yaml:7: severity: 'yellow' is not one of info, warning, critical "
        "(warning is yellow, critical is red)",
        f"{tmp_path}/b.yaml:6: condition: a fraud rule's condition is written like "
        "condition: {pattern: burst, count: 30, within: 2m}; other patterns: duplicate, jump, "
        "off_hours, outlier",
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("consecutive: 3", "consecutive: 0", "6: condition.consecutive: must be at least 1, got 0"),
        ("value: 0.08", "value: 8%", "6: condition.value: 8% is not a number; write a fraction"),
        ("value: 0.08", "value: 0.00001", "6: condition.value: 1e-05 is outside what the rules"),
        ("consecutive: 3", "consecutive: 3, for: 72", "6: condition.for: 72 is not a duration"),
        (
            "consecutive: 3",
            "consecutive: 3, resolve_at: 0.09",
            "6: condition.resolve_at: must be below the threshold 0.08",
        ),
        (
            "severity: warning",
            "severity: warning\nseverty: info",
            "8: severty: unknown field 'severty'; did you mean 'severity'?",
        ),
        (
            "[subject, manager]",
            "[subject, yes]",
            '8: notify[1]: expected text, got yes; quote it: "yes"',
        ),
        ("[subject, manager]", "[]", "8: notify: must not be empty, e.g. [subject, manager]"),
        ("[subject, manager]", "[subject, subject]", "8: notify: lists someone twice"),
        (
            "{department: radiology}",
            "{department: 042}",
            "5: where.department: expected text, got 042",
        ),
        (
            "{department: radiology}",
            "{dept name: x}",
            "5: where.dept name: 'dept name' is not a label name",
        ),
        (
            "id: report-rework-rate-high",
            "id: Report_Rework",
            "1: id: 'Report_Rework' is not a valid id",
        ),
        (
            'condition: {op: ">", value: 0.08, consecutive: 3}',
            "condition: 5",
            "6: condition: expected a mapping, e.g. condition: {op:",
        ),
        ("[subject, manager]", "subject", "8: notify: expected a list, e.g. [subject, manager]"),
        (
            "kind: threshold",
            "kind: ratio",
            "3: kind: 'ratio' is not a rule kind; supported: threshold, overdue, fraud, "
            "dependency_impact",
        ),
        (
            "name: Report rework rate above 8% on 3 consecutive days\n",
            "",
            "1: name: required field is missing; add e.g. name: ",
        ),
        ('op: ">"', "op: >", "6: not valid YAML"),
        (
            "{department: radiology}",
            "{department: {in: [radiology]}}",
            "5: where.department: {'in': ['radiology']} is not a label filter: write one value",
        ),
        (
            "{department: radiology}",
            "{department: []}",
            "5: where.department: an empty list matches no event",
        ),
        (
            "{department: radiology}",
            "{site: {not_in: training}}",
            "5: where.site: not_in takes a list of values",
        ),
    ],
)
def test_field_errors(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID
    write(tmp_path, "r.yaml", VALID.replace(old, new))
    [error] = errors_of(tmp_path)
    assert error.startswith(f"{tmp_path}/r.yaml:{expected}"), error


def test_bare_operator_in_block_mapping_explains_quoting(tmp_path: Path) -> None:
    text = VALID.replace(
        'condition: {op: ">", value: 0.08, consecutive: 3}',
        "condition:\n  op: >\n  value: 0.08",
    )
    write(tmp_path, "r.yaml", text)
    [error] = errors_of(tmp_path)
    assert error.startswith(f"{tmp_path}/r.yaml:7: condition.op: is empty: a bare > starts")


def test_bare_greater_equal_is_a_yaml_error_with_a_hint(tmp_path: Path) -> None:
    text = VALID.replace(
        'condition: {op: ">", value: 0.08, consecutive: 3}', "condition:\n  op: >=\n  value: 1"
    )
    write(tmp_path, "r.yaml", text)
    [error] = errors_of(tmp_path)
    assert error.startswith(f"{tmp_path}/r.yaml:7: not valid YAML:")
    assert error.endswith('quote comparison operators, e.g. op: ">="')


def test_duplicate_ids_name_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", VALID)
    assert errors_of(tmp_path) == [
        f"{tmp_path}/b.yaml:1: id: 'report-rework-rate-high' is already the id of "
        f"{tmp_path}/a.yaml:1; rule ids must be unique"
    ]


def test_duplicate_keys_empty_files_lists_and_two_documents(tmp_path: Path) -> None:
    write(
        tmp_path, "a.yaml", VALID.replace("severity: warning", "severity: warning\nseverity: info")
    )
    write(tmp_path, "b.yaml", "")
    write(tmp_path, "c.yaml", "- id: x\n")
    write(
        tmp_path, "d.yaml", VALID.replace("id: report-rework-rate-high", "id: d") + "---\nid: e\n"
    )
    assert errors_of(tmp_path) == [
        f"{tmp_path}/a.yaml:8: severity: appears twice (first on line 7)",
        f"{tmp_path}/b.yaml: the file is empty; write a rule",
        f"{tmp_path}/c.yaml:1: expected a rule: a mapping of fields such as id:, name:, kind:, metric:",
        f"{tmp_path}/d.yaml:10: one rule per file: move the rule after --- to its own file",
    ]


def test_missing_directory(tmp_path: Path) -> None:
    assert errors_of(tmp_path / "nope") == [
        f"{tmp_path}/nope: no rules folder at {(tmp_path / 'nope').resolve()}; create it, or "
        "point GOALWATCH_RULES_DIR at the folder that holds the rule files"
    ]


def test_only_yaml_files_at_the_top_are_rules(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", VALID)
    (tmp_path / "tests").mkdir()
    write(tmp_path / "tests", "r.yaml", "given: []\n")
    write(tmp_path, "README.md", "# rules\n")
    assert [rule.spec.id for rule in load_rules(tmp_path)] == ["report-rework-rate-high"]


def test_yml_files_are_rules_too(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", VALID)
    write(tmp_path, "b.yaml", VALID.replace("id: report-rework-rate-high", "id: other"))
    assert [rule.spec.id for rule in load_rules(tmp_path)] == ["report-rework-rate-high", "other"]


def test_load_rule_file(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", VALID)
    assert load_rule_file(path).spec.id == "report-rework-rate-high"
    bad = write(tmp_path, "bad.yaml", VALID.replace("kind: threshold", "kind: fraud"))
    with pytest.raises(RuleLoadError, match=r"bad.yaml:6: condition: a fraud rule's condition"):
        load_rule_file(bad)


def test_shipped_rules_load_without_errors() -> None:
    rules = {rule.spec.id: rule.spec for rule in load_rules(REPO / "rules")}
    rule = rules["report-rework-rate-high"]
    assert rule.metric == "report_rework_rate"
    assert (rule.condition.op, rule.condition.value, rule.condition.consecutive) == (">", 0.08, 3)
    assert rule.severity is Severity.WARNING
    assert rule.notify == ["subject", "manager"]


# Templates


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{subject_nmae}: high", "unknown field {subject_nmae}; did you mean {subject_name}?"),
        ("{valeu}", "unknown field {valeu}; did you mean {value}?"),
        ("{labels}", "write one label at a time, e.g. {labels[department]}"),
        ("{subject[0]}", "only labels can be indexed"),
        ("{value.real}", "only plain fields such as {value}"),
        ("{}", "name the field instead of using a position"),
        ("{0}", "name the field instead of using a position"),
        ("{value:d}", "{value:d} cannot be rendered: Unknown format code 'd'"),
        ("{subject:.0%}", "{subject:.0%} cannot be rendered"),
        ("{value:{threshold}}", "nested fields in a format spec are not supported"),
        ("rate {", "not a valid template"),
        ("rate }", "not a valid template"),
    ],
)
def test_bad_templates(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        check_template(template)
    assert message in str(caught.value)


def test_good_template_renders_every_field() -> None:
    template = (
        "{rule_id}/{rule_name}/{severity}: {subject_name} ({subject}) {metric} {value:.0%} {op} "
        "{threshold:.1%} "
        "x{consecutive} in {labels[department]} ({labels[ward]}) {{literal}}"
    )
    check_template(template)
    text = render(
        template,
        subject="emp-1",
        subject_name="Dr. Li Na",
        metric="report_rework_rate",
        value=0.113,
        threshold=0.08,
        op=">",
        consecutive=3,
        rule_id="r",
        rule_name="R",
        severity="warning",
        labels={"department": "放射科"},
    )
    assert text == (
        "r/R/warning: Dr. Li Na (emp-1) report_rework_rate 11% > 8.0% x3 in 放射科 (-) {literal}"
    )


def test_resolved_message_is_checked_like_message(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", VALID + 'resolved_message: "{subject_name} back to {valu}"\n')
    [error] = errors_of(tmp_path)
    assert error.startswith(
        f"{tmp_path}/r.yaml:10: resolved_message: unknown field {{valu}}; did you mean {{value}}?"
    )


def test_template_error_in_a_rule_file_has_its_line(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", VALID.replace("{subject}:", "{subjet}:"))
    [error] = errors_of(tmp_path)
    assert error.startswith(
        f"{tmp_path}/r.yaml:9: message: unknown field {{subjet}}; did you mean {{subject}}?"
    )


@pytest.mark.parametrize(
    ("template", "threshold", "value", "text"),
    [
        ("{threshold} {value}", 3.0, 2.0, "3 2"),
        ("{threshold} {value}", 4.5, 0.11, "4.5 0.11"),
        ("{threshold:.0%} {value:.1f} {threshold:g}", 3.0, 2.0, "300% 2.0 3"),
        ("{threshold} {value}", -0.0, 1e20, "0 1e+20"),
        ("{consecutive}", 3.0, 2.0, "3"),
    ],
)
def test_whole_numbers_without_a_format_spec_render_without_a_fraction(
    template: str, threshold: float, value: float, text: str
) -> None:
    assert (
        render(
            template,
            subject="s",
            subject_name="S",
            metric="m",
            value=value,
            threshold=threshold,
            op=">",
            consecutive=3,
            rule_id="r",
            rule_name="R",
            severity="info",
            labels={},
        )
        == text
    )


def test_kind_is_the_contracts_rule_kind(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", VALID)
    [rule] = load_rules(tmp_path)
    assert rule.spec.kind is RuleKind.THRESHOLD


def test_label_filters_take_a_value_a_list_or_not_in(tmp_path: Path) -> None:
    where = "{department: radiology, ward: [icu, er], site: {not_in: [training, demo]}}"
    write(tmp_path, "r.yaml", VALID.replace("{department: radiology}", where))
    [rule] = load_rules(tmp_path)
    assert rule.spec.where == {
        "department": "radiology",
        "ward": ["icu", "er"],
        "site": NotIn(not_in=["training", "demo"]),
    }
    passes = {"department": "radiology", "ward": "er", "site": "main"}
    assert labels_match(rule.spec.where, passes)
    assert labels_match(rule.spec.where, {"department": "radiology", "ward": "icu"})  # no site
    assert not labels_match(rule.spec.where, {**passes, "ward": "ward-3"})
    assert not labels_match(rule.spec.where, {**passes, "site": "training"})
    assert not labels_match(rule.spec.where, {"ward": "er"})


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{op: between, value: 0.08}", "between compares with two numbers, the low and the high"),
        ("{op: outside, value: [0.08, 0.05]}", "the low end comes first and is below the high end"),
        ("{op: between, value: [0.05, x]}", "both ends must be numbers"),
        (
            '{op: ">", value: [0.05, 0.08]}',
            "a list of two numbers is for op: between or op: outside",
        ),
    ],
)
def test_range_operators_take_two_numbers_low_first(
    tmp_path: Path, condition: str, expected: str
) -> None:
    write(tmp_path, "r.yaml", VALID.replace('{op: ">", value: 0.08, consecutive: 3}', condition))
    [error] = errors_of(tmp_path)
    assert f"r.yaml:6: condition.value: {expected}" in error, error


def test_a_range_rule_has_low_and_high_in_its_messages(tmp_path: Path) -> None:
    between = VALID.replace(
        '{op: ">", value: 0.08, consecutive: 3}', "{op: between, value: [0.05, 0.08]}"
    ).replace("({labels[department]})", "above {threshold:.0%}")
    write(tmp_path, "r.yaml", between)
    [error] = errors_of(tmp_path)
    assert "a between or outside rule has two thresholds, {low} and {high}" in error
    write(tmp_path, "r.yaml", between.replace("{threshold:.0%}", "{low:.0%}-{high:.0%}"))
    [rule] = load_rules(tmp_path)
    condition = rule.spec.threshold
    assert (condition.bounds, condition.text()) == ((0.05, 0.08), "between 0.05 and 0.08")
    assert condition.fields() == {"low": 0.05, "high": 0.08, "op": "between", "consecutive": 1}


def test_errors_come_in_the_order_of_the_file(tmp_path: Path) -> None:
    # The message first, the severity last: not the order the rule's fields are declared in.
    message = 'message: "{subject}: rework rate {value:.0%} ({labels[department]})"\n'
    text = message.replace("{subject}", "{subjct}") + VALID.replace(message, "")
    text = text.replace("severity: warning\n", "").replace("condition: {", "condition: 5 #{")
    write(tmp_path, "r.yaml", text + "severity: yellow\n")
    lines = [int(error.split(":")[1]) for error in errors_of(tmp_path)]
    assert lines == [1, 7, 9]


@pytest.mark.parametrize(
    ("added", "expected"),
    [
        # An option of the condition, written at the top of the rule.
        ("window: 7d", "10: window: 'window' belongs under condition:, not here; move it there"),
        # Nothing like it anywhere: no unrelated suggestion.
        (
            "colour: red",
            "10: colour: unknown field 'colour'; allowed: id, name",
        ),
    ],
)
def test_an_unknown_option_says_where_it_belongs_or_that_it_does_not_exist(
    tmp_path: Path, added: str, expected: str
) -> None:
    write(tmp_path, "r.yaml", VALID + added + "\n")
    [error] = errors_of(tmp_path)
    assert error.startswith(f"{tmp_path}/r.yaml:{expected}")


def test_a_misspelt_required_field_is_reported_once_where_it_is_written(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", VALID.replace("severity: warning", "severty: warning"))
    assert errors_of(tmp_path) == [
        f"{tmp_path}/r.yaml:7: severty: unknown field 'severty'; did you mean 'severity'? "
        "allowed: id, name, description, kind, metric, where, org_unit, condition, severity, by, "
        "escalate, notify, message, resolved_message"
    ]
