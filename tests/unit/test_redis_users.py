"""The Redis users' table: every key a service's code builds is within its user's patterns,
no service's key is within another's, the ACL file and the docs come from the table, and a
service's Redis settings reach its client."""

from __future__ import annotations

import ast
import re
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from goalwatch import dead_letters
from goalwatch.checkpoints import KEY_PREFIX as CHECKPOINT_PREFIX
from goalwatch.connections import redis_client
from goalwatch.contracts import AlertState, subjects
from goalwatch.redis_users import (
    OPERATOR,
    REPLAY_MARKS,
    USERS,
    acl_file,
    main,
    markdown_table,
    password_hash,
    service_users,
    user,
)
from goalwatch.settings import ServiceSettings, settings_or_exit
from services.evaluator import (
    absences,
    directory_store,
    fraud_store,
    goal_overdue_store,
    impact_store,
    streaks,
)
from services.evaluator import app as evaluator_app
from services.goals import keys as goal_keys
from services.goals import people
from services.notifier import app as notifier_app
from services.notifier import deliveries, groups, inbox, ordering, silences

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("goals", "evaluator", "notifier")


def _built_keys() -> dict[str, list[str]]:
    """Keys as each service's own functions and constants build them."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "goals": [
            goal_keys.goal("g1"),
            goal_keys.up("g1"),
            goal_keys.down("g1"),
            goal_keys.deps("g1"),
            goal_keys.dependents("g1"),
            goal_keys.check_ins("g1"),
            goal_keys.check_in_ids("g1"),
            goal_keys.index("status", "on_track"),
            goal_keys.person("p1"),
            goal_keys.org_unit("u1"),
            goal_keys.GOAL_IDS,
            goal_keys.OUTBOX,
            goal_keys.PROGRESS,
            goal_keys.OWN_PROGRESS,
            goal_keys.ORG_UNIT_IDS,
            goal_keys.PEOPLE_IDS,
            goal_keys.PERSON_VERSIONS,
            goal_keys.ORG_UNIT_VERSIONS,
            goal_keys.DIRECTORY_OUTBOX,
            # The scripts add their own suffixes to the graph prefix they are given.
            goal_keys.GRAPH + "rdeps:g1",
            people._key("p1"),
            people._IDS,
        ],
        "evaluator": [
            streaks.state_key("s1", "m1"),
            *streaks.legacy_keys("fp"),
            absences._key("fp"),
            absences._legacy_key("fp"),
            directory_store.key_of("person", "p1"),
            directory_store.key_of("org_unit", "u1"),
            fraud_store._key("fp"),
            f"{fraud_store.KEY_PREFIX}peers:{{rule}}:group",
            impact_store.state_key("rule", "g1"),
            goal_overdue_store.state_key("rule", "g1"),
            *(
                f"{CHECKPOINT_PREFIX}{spec.name}"
                for spec in (
                    evaluator_app.CONSUMER,
                    evaluator_app.TIMERS_CONSUMER,
                    evaluator_app.GOAL_OVERDUE_CONSUMER,
                    evaluator_app.IMPACT_CONSUMER,
                    evaluator_app.DIRECTORY_CONSUMER,
                )
            ),
        ],
        "notifier": [
            inbox.episode_key("e1"),
            inbox.episodes_key("fp"),
            inbox.recipient_index("p1"),
            inbox.rule_index("r1"),
            inbox.org_unit_index("u1"),
            inbox.fingerprint_index("fp"),
            inbox.state_index(AlertState.FIRING),
            inbox.INDEX_ALL,
            inbox.LEGACY_PREFIX + "fp",
            deliveries.record_key("o1"),
            deliveries.INDEX_ALL,
            deliveries.recipient_index("p1"),
            deliveries.alert_index("fp"),
            deliveries.episode_index("e1"),
            groups.group_key("g1"),
            f"{inbox.PREFIX}rate:target:60000",  # services/notifier/limits.py
            f"{inbox.PREFIX}claim:webhook:group:g1:1",  # services/notifier/flush.py
            ordering.marker_key("webhook", fingerprint="fp", started_at=at),
            silences.KEY,
            *(
                f"{CHECKPOINT_PREFIX}{name}"
                for name in (
                    notifier_app.ALERTS_CONSUMER,
                    *notifier_app.REPLACED_CONSUMERS,
                    notifier_app.TIMERS_CONSUMER,
                )
            ),
        ],
    }


def _goals_checkpoints() -> list[str]:
    # The goals service names its checkpoints in its app module only.
    source = (REPO / "services" / "goals" / "app.py").read_text()
    names = re.findall(r'consumer="([^"]+)"', source)
    assert names, "no checkpoint names found in services/goals/app.py"
    return [f"{CHECKPOINT_PREFIX}{name}" for name in names]


def _prefix_literals(service: str) -> set[str]:
    """Every string literal in the service's code that starts a goalwatch key name."""
    found: set[str] = set()
    for path in (REPO / "services" / service).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.match(r"goalwatch:[a-z_-]+:", node.value)
            ):
                found.add(node.value)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_key_a_service_builds_is_its_users(service: str) -> None:
    built = _built_keys()[service]
    if service == "goals":
        built += _goals_checkpoints()
    owner = user(service)
    outside = [key for key in built if not owner.may_use(key)]
    assert not outside, f"{service} builds keys its Redis user may not use: {outside}"
    others = [u for u in service_users() if u.name != service]
    shared = [(key, u.name) for key in built for u in others if u.may_use(key)]
    assert not shared, f"keys of {service} another service's user may use too: {shared}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_key_prefix_in_a_services_code_is_its_own(service: str) -> None:
    """A new prefix (a literal ``goalwatch:<x>:``) in a service needs its user's patterns."""
    literals = _prefix_literals(service)
    assert literals
    owner = user(service)
    outside = sorted(lit for lit in literals if not owner.may_use(lit + "probe"))
    assert not outside, f"prefixes in services/{service} outside its Redis user: {outside}"


def test_ingestion_keeps_nothing_in_redis_but_the_marks_of_its_replays() -> None:
    sources = "".join(p.read_text() for p in (REPO / "services" / "ingestion").glob("*.py"))
    assert not re.search(r"goalwatch:[a-z_-]+:", sources)
    assert user("ingestion").keys == (REPLAY_MARKS,)
    assert user("ingestion").may_use(f"{dead_letters.REPLAY_MARKS}42")


def test_the_replay_marks_are_shared_by_the_services_that_replay_and_no_other() -> None:
    """The one shared prefix: each dead letter is replayed once whichever service replays
    it, and goals lists them all."""
    mark = f"{dead_letters.REPLAY_MARKS}42"
    replaying = {
        dead_letters.replayer(subject)
        for subject in (
            subjects.METRICS_IN,
            subjects.ALERTS_FIRED,
            subjects.metrics_partition_subject(0),
        )
    }
    assert replaying == {"goals", "evaluator", "ingestion"}
    assert {u.name for u in service_users() if u.may_use(mark)} == replaying


def test_the_notifier_alone_has_the_inbox_channel() -> None:
    assert user("notifier").channels == (inbox.UPDATES,)
    assert all(not u.channels for u in service_users() if u.name != "notifier")


def test_service_users_cannot_run_what_redis_calls_dangerous() -> None:
    for each in service_users():
        assert each.commands[0] == "-@all"
        assert "-@dangerous" in each.commands
        assert "+@all" not in each.commands
        assert "*" not in each.keys
    assert user(OPERATOR).keys == ("*",)


def test_the_acl_file_switches_the_default_user_off_and_hashes_passwords() -> None:
    passwords = {u.name: f"pw-{u.name}" for u in USERS}
    text = acl_file(passwords)
    lines = text.splitlines()
    assert lines[0].startswith("user default off ")
    assert "-@all" in lines[0].split()
    for each in USERS:
        line = next(x for x in lines if x.startswith(f"user {each.name} "))
        assert f"#{password_hash(passwords[each.name])}" in line.split()
        assert passwords[each.name] not in line.split()
        assert line.split()[2] == "on"
    with pytest.raises(ValueError, match="notifier"):
        acl_file({k: v for k, v in passwords.items() if k != "notifier"})


def test_the_acl_file_is_printed_from_a_folder_of_passwords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for each in USERS:
        (tmp_path / each.name).write_text(f"pw-{each.name}\n")
    assert main(["--passwords", str(tmp_path)]) == 0
    assert capsys.readouterr().out == acl_file({u.name: f"pw-{u.name}" for u in USERS})
    (tmp_path / OPERATOR).unlink()
    assert main(["--passwords", str(tmp_path)]) == 2
    assert "operator" in capsys.readouterr().err


def test_the_docs_show_the_table_as_the_code_has_it() -> None:
    doc = (REPO / "docs" / "security-redis.md").read_text()
    assert markdown_table() in doc, (
        "docs/security-redis.md is out of date: paste `python -m goalwatch.redis_users "
        "--markdown` over its table"
    )


def test_a_services_user_and_password_reach_its_client() -> None:
    settings = ServiceSettings(
        redis_url="redis://10.0.0.7:6380/0",
        redis_username="goals",
        redis_password=SecretStr("s3cret"),
    )
    kwargs = redis_client(settings).connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["username"], kwargs["password"]) == (
        "10.0.0.7",
        6380,
        "goals",
        "s3cret",
    )
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())


def test_a_rediss_url_verifies_the_server_against_the_given_ca(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    settings = ServiceSettings(
        redis_url="rediss://redis.goalwatch.svc:6379/0",
        redis_tls_ca_file=ca,
        redis_tls_cert_file=cert,
        redis_tls_key_file=key,
    )
    pool = redis_client(settings).connection_pool
    kwargs = pool.connection_kwargs
    assert pool.connection_class.__name__ == "SSLConnection"
    assert kwargs["ssl_ca_certs"] == str(ca)
    assert (kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (str(cert), str(key))
    assert kwargs["ssl_min_version"] == ssl.TLSVersion.TLSv1_2
    # Hostname checks and certificate verification stay at redis-py's defaults: on.
    assert "ssl_check_hostname" not in kwargs and "ssl_cert_reqs" not in kwargs


def test_tls_files_need_a_rediss_url() -> None:
    with pytest.raises(ValidationError, match="rediss://"):
        ServiceSettings(redis_url="redis://h:6379/0", redis_tls_ca_file=Path("ca.pem"))


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError, match="together"):
        ServiceSettings(redis_url="rediss://h:6379/0", redis_tls_cert_file=Path("c.pem"))
    with pytest.raises(ValidationError, match="together"):
        ServiceSettings(redis_url="rediss://h:6379/0", redis_tls_key_file=Path("c.key"))


def test_a_bad_tls_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOALWATCH_REDIS_TLS_CA_FILE", "/etc/ca.pem")
    with pytest.raises(SystemExit):
        settings_or_exit(ServiceSettings)
    assert "GOALWATCH_REDIS_TLS_CA_FILE" in capsys.readouterr().err
