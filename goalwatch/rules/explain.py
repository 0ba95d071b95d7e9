"""A rule in plain words, in English or Chinese, as a reviewer reads it (``goalwatch rules
explain``).

Each sentence is built from the validated rule, so it says what the evaluator will do, not
what the file's comments claim: what is watched, when the alert fires, when it resolves, how
loud it is, who is told and what they read.
"""

# The Chinese sentences use full-width Chinese punctuation on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Final, Literal

from goalwatch.contracts import RuleKind
from goalwatch.durations import duration_text
from goalwatch.rules.fraud_spec import (
    BurstCondition,
    DuplicateCondition,
    FraudCondition,
    JumpCondition,
    OffHoursCondition,
    OutlierCondition,
)
from goalwatch.rules.goal_overdue_spec import GoalOverdueRuleSpec
from goalwatch.rules.impact_spec import ImpactRuleSpec
from goalwatch.rules.spec import LabelMatch, NotIn, RuleSpec, ThresholdCondition, group_name

Language = Literal["en", "zh"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "zh")

_OPS: Final[dict[str, tuple[str, str]]] = {
    ">": ("above", "高于"),
    ">=": ("at or above", "不低于"),
    "<": ("below", "低于"),
    "<=": ("at or below", "不高于"),
    "==": ("equal to", "等于"),
    "!=": ("not equal to", "不等于"),
    "between": ("between", "介于"),
    "outside": ("outside", "超出"),
}
_PERIODS: Final[dict[str, tuple[str, str]]] = {
    "day": ("days", "天"),
    "week": ("weeks", "周"),
    "month": ("months", "个月"),
}
_AGGREGATES: Final[dict[str, tuple[str, str]]] = {
    "last": ("last value", "最后一个值"),
    "avg": ("average", "平均值"),
    "sum": ("sum", "总和"),
    "min": ("lowest value", "最小值"),
    "max": ("highest value", "最大值"),
    "count": ("number of observations", "记录条数"),
    "rate": ("sum per day", "日均总和"),
}
_RECIPIENTS: Final[dict[str, tuple[str, str]]] = {
    "subject": ("the person it is about", "当事人"),
    "manager": ("the person's manager", "当事人的直属上级"),
    "owner": ("the goal's owner", "目标负责人"),
    "unit_head": ("the head of the person's org unit", "当事人所在部门的负责人"),
    "hrbp": ("the HR business partner of the person's org unit", "当事人所在部门的 HRBP"),
}
_SEVERITIES: Final[dict[str, tuple[str, str]]] = {
    "info": ("info", "提示"),
    "warning": ("warning (yellow)", "警告（黄色）"),
    "critical": ("critical (red)", "严重（红色）"),
}


def explain(
    spec: RuleSpec | ImpactRuleSpec | GoalOverdueRuleSpec,
    lang: Language = "en",
    *,
    unit: str | None = None,
) -> list[str]:
    """The rule ``spec`` as sentences in ``lang``; ``unit``: its metric's, from the
    catalogue (a ratio's 0.1 is said 10%)."""
    say = _Words(lang)
    lines = [say(f"Rule {spec.id}: {spec.name}", f"规则 {spec.id}：{spec.name}")]
    if isinstance(spec, ImpactRuleSpec):
        lines += _impact(spec, say)
    elif isinstance(spec, GoalOverdueRuleSpec):
        lines += _goal_overdue(spec, say)
    else:
        lines.append(_watched(spec, say))
        if spec.kind is RuleKind.THRESHOLD:
            lines += _threshold(spec, say, unit)
        elif spec.kind is RuleKind.FRAUD:
            lines += _fraud(spec.fraud, say)
        else:
            absent = duration_text(spec.overdue.absent_for)
            lines.append(
                say(
                    f"Fires when no new value has arrived for {absent} after the last one, "
                    "without waiting for an event; the next value resolves it.",
                    f"自上一次数据起 {absent} 内没有新数据时触发（无需等待新事件）；"
                    "收到下一条数据即恢复。",
                )
            )
        lines += _loudness(spec, say)
    lines.append(_told(spec.notify, say))
    lines.append(say(f"Message: {spec.message.strip()}", f"消息：{spec.message.strip()}"))
    if spec.resolved_message:
        text = spec.resolved_message.strip()
        lines.append(say(f"When resolved: {text}", f"恢复时：{text}"))
    return lines


class _Words:
    """Picks the sentence of the chosen language."""

    def __init__(self, lang: Language) -> None:
        self.zh = lang == "zh"

    def __call__(self, en: str, zh: str) -> str:
        return zh if self.zh else en

    def of(self, table: dict[str, tuple[str, str]], key: str) -> str:
        en, zh = table.get(key, (key, key))
        return zh if self.zh else en


def _watched(spec: RuleSpec, say: _Words) -> str:
    parts = [say(f"Watches {spec.metric}", f"监测指标 {spec.metric}")]
    for name, match in sorted(spec.where.items()):
        parts.append(_label(name, match, say))
    if spec.scope:
        units = ", ".join(spec.scope)
        parts.append(
            say(
                f"for people in {units} or any unit below",
                f"仅限 {units} 及其下属单位的人员",
            )
        )
    if spec.by:
        labels = ", ".join(spec.by)
        parts.append(say(f"one alert per person and {labels}", f"按人员和 {labels} 分别告警"))
    return say("; ".join(parts) + ".", "；".join(parts) + "。")


def _label(name: str, match: LabelMatch, say: _Words) -> str:
    if isinstance(match, NotIn):
        values = ", ".join(match.not_in)
        return say(f"except where {name} is {values}", f"排除 {name} 为 {values} 的数据")
    values = match if isinstance(match, str) else ", ".join(match)
    return say(f"only where {name} is {values}", f"仅限 {name} 为 {values} 的数据")


def _threshold(spec: RuleSpec, say: _Words, unit: str | None) -> list[str]:
    condition = spec.threshold
    compared = _compared(condition, say)
    op = say.of(_OPS, condition.op)
    value = _value(condition.value, unit)
    run = _run(condition, say)
    if run:
        lines = [say(f"Fires when {compared} is {op} {value} {run}.",
                     f"当{compared}{op} {value}，{run}时触发。")]  # fmt: skip
    else:  # one value is enough
        lines = [say(f"Fires when {compared} is {op} {value}.",
                     f"当{compared}{op} {value} 时触发。")]  # fmt: skip
    if condition.for_ is not None:
        held = duration_text(condition.for_)
        lines.append(
            say(
                f"It must keep holding for {held} first; the alert then fires when that time "
                "is up, without waiting for an event.",
                f"且须持续 {held}；时间一到即触发，无需等待新事件。",
            )
        )
    if condition.resolve_at is not None:
        back = _value(condition.resolve_at, unit)
        lines.append(
            say(
                f"Once firing, it resolves only when the value is back past {back} "
                "(values in between keep it firing).",
                f"触发后，只有数值回到 {back} 以外才恢复（介于两者之间保持告警）。",
            )
        )
    else:
        lines.append(say("It resolves at the first value that no longer breaches.",
                         "出现第一个不再超限的数值时恢复。"))  # fmt: skip
    return lines


def _compared(condition: ThresholdCondition, say: _Words) -> str:
    aggregate = say.of(_AGGREGATES, condition.aggregate or "last")
    if condition.window is not None:
        window = duration_text(condition.window)
        if condition.compare == "previous":
            return say(
                f"the change of the {aggregate} over {window} from the {window} before "
                "(-0.3 is down 30%)",
                f"近 {window} 的{aggregate}相对前 {window} 的变化（-0.3 即下降 30%）",
            )
        return say(f"the {aggregate} over the last {window}", f"近 {window} 的{aggregate}")
    if condition.per is not None:
        period = say.of(_PERIODS, condition.per)
        return say(f"each calendar {period.rstrip('s')}'s {aggregate}", f"每{period}的{aggregate}")
    return say("the value", "数值")


def _run(condition: ThresholdCondition, say: _Words) -> str:
    count = condition.consecutive
    if condition.per is not None:
        period = say.of(_PERIODS, condition.per)
        zone = condition.time_zone or say("the person's time zone", "当事人所在时区")
        gap = (
            say("a period with no data breaks the run", "无数据的周期会中断连续计数")
            if condition.missing != "skipped"
            else say("periods with no data are skipped", "无数据的周期跳过不计")
        )
        return say(
            f"for {count} {period} in a row ({zone}; {gap})",
            f"连续 {count} {period}（{zone}；{gap}）",
        )
    if count == 1:
        return ""
    return say(f"on {count} observations in a row", f"连续 {count} 次")


def _value(value: float | tuple[float, float], unit: str | None = None) -> str:
    if isinstance(value, tuple):
        return f"{_number(value[0], unit)}–{_number(value[1], unit)}"
    return _number(value, unit)


def _number(value: float, unit: str | None) -> str:
    """``value`` as a reader of a metric in ``unit`` writes it: a ratio's 0.08 is 8%."""
    if unit == "ratio":
        return f"{round(value * 100, 6):g}%"
    if unit == "percent":
        return f"{value:g}%"
    return f"{value:g}"


def _fraud(condition: FraudCondition, say: _Words) -> list[str]:
    within = getattr(condition, "within", None)
    window = "" if within is None else duration_text(within)
    if isinstance(condition, BurstCondition):
        finding = say(
            f"{condition.count} or more records from one person within {window}",
            f"同一人在 {window} 内记录 {condition.count} 条及以上",
        )
    elif isinstance(condition, DuplicateCondition):
        fields = ", ".join(condition.fields)
        finding = say(
            f"the same {fields} under a different event id within {window}",
            f"{window} 内以不同事件编号提交相同的 {fields}",
        )
    elif isinstance(condition, JumpCondition):
        parts = []
        if condition.max_step is not None:
            parts.append(say(f"a move of more than {condition.max_step:g} in one step",
                             f"单次变化超过 {condition.max_step:g}"))  # fmt: skip
        if condition.range is not None:
            low, high = condition.range
            parts.append(say(f"a value outside {low:g}–{high:g}", f"数值超出 {low:g}–{high:g}"))
        finding = say(" or ".join(parts), " 或 ".join(parts))
    elif isinstance(condition, OffHoursCondition):
        finding = say(
            f"{condition.count} or more records within {window} outside working hours "
            f"({condition.hours}, {', '.join(condition.days)})",
            f"{window} 内在工作时间（{condition.hours}，{', '.join(condition.days)}）"
            f"以外记录 {condition.count} 条及以上",
        )
    else:
        assert isinstance(condition, OutlierCondition)
        finding = say(
            f"a value {condition.z:g} or more standard deviations from its peers' over {window} "
            f"(peers: {_peers(condition)}; at least {condition.min_group} of them)",
            f"数值偏离同组（{_peers(condition)}，至少 {condition.min_group} 人）"
            f"近 {window} 均值 {condition.z:g} 个标准差及以上",
        )
    quiet = duration_text(condition.quiet_for)
    return [
        say(f"Fires at the first record that shows {finding}.", f"出现{finding}时触发。"),
        say(
            f"It resolves once {quiet} pass with no such finding.",
            f"连续 {quiet} 无此类情况后恢复。",
        ),
    ]


def _peers(condition: OutlierCondition) -> str:
    peers = condition.peers
    return peers if isinstance(peers, str) else ", ".join(f"{k}: {v}" for k, v in peers.items())


def _loudness(spec: RuleSpec, say: _Words) -> list[str]:
    severity = say.of(_SEVERITIES, spec.severity.value)
    lines = [say(f"Severity: {severity}.", f"级别：{severity}。")]
    for step in spec.escalate:
        after = duration_text(step.after)
        rises = say.of(_SEVERITIES, step.severity.value)
        lines.append(
            say(
                f"Rises to {rises} {after} after the breach began, as a change of the same alert.",
                f"超限开始 {after} 后升级为{rises}（同一告警，非新告警）。",
            )
        )
    return lines


def _told(notify: Sequence[str], say: _Words) -> str:
    def who(name: str) -> str:
        if name in _RECIPIENTS:
            return say.of(_RECIPIENTS, name)
        if name.startswith("manager:"):
            level = int(name.partition(":")[2])
            return say(
                f"the manager {level} levels up the person's chain"
                + (" (the manager's manager)" if level == 2 else ""),
                f"当事人往上第 {level} 级上级" + ("（上级的上级）" if level == 2 else ""),
            )
        group = group_name(name)
        if group is not None:
            return say(f"everyone in the group {group}", f"{group} 组的全体成员")
        return say(f"person {name}", f"人员 {name}")

    names = [who(name) for name in notify]
    return say(f"Tells {', '.join(names)}.", f"通知：{'、'.join(names)}。")


def _impact(spec: ImpactRuleSpec, say: _Words) -> list[str]:
    statuses = ", ".join(str(status) for status in spec.when.status)
    lines = [
        say(
            f"When a goal's status becomes {statuses}, lists every goal that depends on it "
            "(directly or through others), with its owner and manager, and tells each owner.",
            f"当目标状态变为 {statuses} 时，列出所有直接或间接依赖它的目标及其负责人和上级，"
            "并通知各负责人。",
        ),
    ]
    if spec.min_weight:
        lines.append(
            say(
                f"Only dependencies of weight {spec.min_weight:g} or more are followed.",
                f"仅追踪权重不低于 {spec.min_weight:g} 的依赖。",
            )
        )
    lines.append(_severity_only(spec.severity.value, say))
    return lines


def _goal_overdue(spec: GoalOverdueRuleSpec, say: _Words) -> list[str]:
    condition = spec.condition.model_dump(exclude_none=True, by_alias=True)
    form = ", ".join(f"{key}: {_plain(value)}" for key, value in condition.items() if value)
    goals = spec.goals.model_dump(exclude_none=True, by_alias=True)
    which = ", ".join(f"{key}: {_plain(value)}" for key, value in goals.items() if value) or say(
        "every goal", "所有目标"
    )
    return [
        say(
            f"Watches goals ({which}) on time, without waiting for an event: {form}.",
            f"按时间监测目标（{which}），无需等待新事件：{form}。",
        ),
        _severity_only(spec.severity.value, say),
    ]


def _plain(value: object) -> str:
    if isinstance(value, timedelta):
        return duration_text(value)
    if value is True:
        return "yes"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return str(value)


def _severity_only(severity: str, say: _Words) -> str:
    level = say.of(_SEVERITIES, severity)
    return say(f"Severity: {level}.", f"级别：{level}。")
