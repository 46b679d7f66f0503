"""The alerting rules: promtool accepts them and their unit tests pass, every alert is complete
(for, severity, summary, description, runbook_url), uses only metrics the service exposes, has a
firing and a quiet unit test, and has its section in ops/RUNBOOK.md. The expressions are checked
by a real Prometheus over samples of every exported series (tests/ops/prometheus.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata

import pytest
import yaml

from tests.ops.prometheus import ROOT, require

RULES = ROOT / "ops" / "alerts" / "recon-rules.yml"
RULE_TESTS = ROOT / "ops" / "alerts" / "recon-rules.test.yml"
RUNBOOK = ROOT / "ops" / "RUNBOOK.md"
#: Labels an alert may keep: all bounded (never order, payment or message ids).
BOUNDED_LABELS = {"gateway", "kind", "outcome", "queue", "state", "age", "source", "status_class", "endpoint",
                  "plan", "reason", "actor", "result", "origin", "bucket", "le"}
EXPECTED_ALERTS = {"StuckPendingOrders", "NoSuccessfulSweep", "WebhookSignatureFailuresSpike", "GatewayErrorRate",
                   "GatewayCircuitOpen", "DeadLetters", "OrdersNeedReview", "InboxBacklog", "QueueBacklog",
                   "GatewayRateLimited", "GatewayUnknownStatus", "DisputeResponseDueSoon", "RefundFailed",
                   "RefundStuck", "CreditShortfall", "WebhooksSilent", "EventDeliveriesDead",
                   "EventDeliveryLagging", "SettledNotCredited", "CreditedNotSettled", "SettlementMismatch"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require("promtool")


def _run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def _alert_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file (lower case, punctuation dropped,
    spaces to hyphens, repeats numbered)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1)).strip().lower()
        slug = "".join(ch for ch in text if ch in "- " or unicodedata.category(ch)[0] in "LN" or ch == "_")
        slug = slug.replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def runbook_problems(rules: list[dict], markdown: str) -> list[str]:
    anchors = github_anchors(markdown)
    problems = []
    for rule in rules:
        url = rule.get("annotations", {}).get("runbook_url", "")
        match = re.fullmatch(r"ops/RUNBOOK\.md#([a-z0-9_-]+)", url)
        if not match:
            problems.append(f"{rule['alert']}: runbook_url {url!r} is not ops/RUNBOOK.md#<anchor>")
        elif match.group(1) not in anchors:
            problems.append(f"{rule['alert']}: no heading in ops/RUNBOOK.md with anchor #{match.group(1)}")
        elif match.group(1) != github_anchors(f"# {rule['alert']}").pop():
            problems.append(f"{rule['alert']}: runbook_url should point at the section named after the alert")
    return problems


def test_promtool_check_rules(promtool):
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests(promtool):
    result = _run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_wrong_expectation(promtool, tmp_path):
    """The unit tests can fail: a copy expecting another severity is rejected."""
    shutil.copy(RULES, tmp_path / RULES.name)
    text = RULE_TESTS.read_text()
    expected = "severity: ticket\n              gateway: razorpay"
    broken = text.replace(expected, expected.replace("ticket", "page"), 1)
    assert broken != text
    (tmp_path / RULE_TESTS.name).write_text(broken)
    result = _run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout


def test_promtool_check_rules_rejects_a_broken_expression(promtool, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("> 0\n        for: 15m", "> > 0\n        for: 15m", 1))
    assert broken.read_text() != RULES.read_text()
    assert _run(promtool, "check", "rules", str(broken)).returncode != 0


def test_group_and_alert_set():
    doc = yaml.safe_load(RULES.read_text())
    assert [group["name"] for group in doc["groups"]] == ["gateway-recon"]
    assert {rule["alert"] for rule in _alert_rules()} == EXPECTED_ALERTS


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_is_complete(rule):
    assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{rule['alert']}: `for:` missing"
    assert rule.get("labels", {}).get("severity") in ("page", "ticket")
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{rule['alert']}: annotation {key} missing"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_uses_existing_metrics_and_bounded_labels(rule, prometheus):
    """Prometheus evaluates it over every exported series: it selects some and, with all of them busy,
    fires; the labels the alert would carry are bounded ones."""
    check = prometheus.check(rule["expr"])
    assert check.problems() == [], rule["alert"]
    unbounded = check.result_labels - BOUNDED_LABELS
    assert not unbounded, f"{rule['alert']}: unbounded labels {sorted(unbounded)}"
    assert not re.search(r"\b(order_id|payment_id|message_id|instance)\b", rule["expr"])


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                fires.add(case["alertname"])
                for alert in case["exp_alerts"]:
                    assert alert.get("exp_labels", {}).get("severity"), f"{case['alertname']}: labels not checked"
                    assert alert.get("exp_annotations", {}).get("runbook_url"), \
                        f"{case['alertname']}: annotations not checked"
            else:
                quiet.add(case["alertname"])
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - fires == set(), "alerts never seen firing"
    assert names - quiet == set(), "alerts never seen quiet"


def test_every_alert_has_a_runbook_section():
    assert runbook_problems(_alert_rules(), RUNBOOK.read_text()) == []


def test_runbook_check_reports_missing_sections():
    rules = [{"alert": "StuckPendingOrders", "annotations": {"runbook_url": "ops/RUNBOOK.md#stuckpendingorders"}},
             {"alert": "NoSuchAlert", "annotations": {"runbook_url": "ops/RUNBOOK.md#nosuchalert"}},
             {"alert": "NoUrl", "annotations": {}}]
    problems = runbook_problems(rules, "# Runbook\n\n## StuckPendingOrders\n\ntext\n")
    assert len(problems) == 2
    assert "NoSuchAlert" in problems[0] and "NoUrl" in problems[1]


def test_github_anchors():
    assert github_anchors("## Before you start\n## DeadLetters\n```\n# not a heading\n```\n## DeadLetters\n") == {
        "before-you-start", "deadletters", "deadletters-1"}


def runbook_commands(markdown: str) -> list[list[str]]:
    """The `recon …` command lines in the runbook's code blocks, as argument lists."""
    import shlex

    commands, in_code = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        words = shlex.split(line, comments=True) if in_code and line.startswith("recon ") else []
        if words:
            commands.append(words[1:])
    return commands


def cli_problems(commands: list[list[str]]) -> list[str]:
    """What the real `recon` CLI says about each command line (unknown commands, bad or missing options)."""
    import typer.main

    from ops.cli import app

    # typer may vendor its own click: recognise groups and usage errors by shape, not by class.
    root, problems = typer.main.get_command(app), []
    for args in commands:
        command, rest, path = root, list(args), ["recon"]
        while hasattr(command, "commands") and rest and rest[0] in command.commands:
            path.append(rest[0])
            command = command.commands[rest.pop(0)]
        if hasattr(command, "commands"):
            problems.append(f"recon {' '.join(args)}: unknown command")
            continue
        try:
            command.make_context(" ".join(path), rest)
        except Exception as exc:  # noqa: BLE001  (any click error is a problem to report)
            problems.append(f"recon {' '.join(args)}: {getattr(exc, 'format_message', exc.__str__)()}")
    return problems


def test_runbook_recon_commands_parse():
    """Every `recon …` line in the runbook is accepted by the real CLI (commands, options, required ones)."""
    commands = runbook_commands(RUNBOOK.read_text())
    assert len(commands) >= 10
    assert cli_problems(commands) == []


def test_cli_check_reports_bad_commands():
    commands = runbook_commands("```sh\nrecon inbox replay 12 --by me\nrecon dlq purge\n"
                                "recon recheck X --by me --frobnicate\nrecon order show X\n```\n")
    problems = cli_problems(commands)
    assert len(problems) == 3, problems
