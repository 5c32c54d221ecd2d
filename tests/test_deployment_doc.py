"""docs/deployment.md, checked offline as a new user pastes it.

The fenced blocks are parsed as a shell reads them (continuation lines, heredocs, `;`, `&&`,
`|`, redirections), in document order, and checked against the real things:

- every repository path a command or the prose names exists (or an earlier step makes it);
- every file a step reads was made by an earlier step or is in the repository;
- every shell variable a step expands was set by an earlier step;
- every `aws` command names an operation of botocore's service model (the CLI spells it in
  kebab case) and only options the CLI has, with the required ones; CloudFormation
  parameters and outputs exist in the template deployed under that stack name;
- every YAML and JSON block and file parses; every setting named exists in Settings;
- the Helm values files the steps write render with the real chart (helm-python-sdk), the
  exporter loads the rendered configuration, and the production values turn the
  EventBridge queue on;
- the steps that can run here do: the password, hash and web config file of "TLS and basic
  auth" (checked with the exporter's own web config loader), the amtool checks of the
  Alertmanager step, `helm/sync_files.py --check`.

Each checker returns the problems it finds as lines; the tests at the end feed each one a
bad snippet to show it can fail.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import botocore.session
import pytest
import yaml
from botocore import xform_name
from botocore.exceptions import DataNotFoundError, UnknownServiceError

from exporter.config.settings import Settings, load_settings
from exporter.config.webconfig import load_web_config

from .conftest import tool
from .test_aws_permissions_files import ACTIONS, _CfnLoader
from .test_helm import NAMESPACE, RELEASE, _config_file, _render, _validate, chart, chart_dir  # noqa: F401 - fixtures
from .test_webconfig import _cert, _key, _write

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "deployment.md"

# Values for the variables the steps set from AWS's answers, as AWS would give them.
SAMPLE_ENV = {
    "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/222222222222/aws-root-activity",
    "QUEUE_ARN": "arn:aws:sqs:us-east-1:222222222222:aws-root-activity",
    "CENTRAL_BUS_ARN": "arn:aws:events:us-east-1:222222222222:event-bus/aws-root-activity",
    "DLQ_URL": "https://sqs.us-east-1.amazonaws.com/222222222222/aws-root-activity-dlq",
    "HASH": bcrypt.hashpw(b"sample", bcrypt.gensalt(4)).decode(),
}
SHELL_VARIABLES = {"PWD", "HOME"}
# Top-level entries of the repository a path in the doc may start with.
REPO_TOP = ("deploy/", "helm/", "alerts/", "dashboards/", "docs/", "tests/", "scripts/", "exporter/", "benchmarks/")
REPO_FILES = {"Dockerfile", "README.md", "Makefile", "CHANGELOG.md", "pyproject.toml"}

# AWS CLI options valid on every command (`aws help`, "Global options").
AWS_GLOBAL_OPTIONS = {
    "--region", "--output", "--query", "--profile", "--endpoint-url", "--no-paginate", "--no-cli-pager",
    "--debug", "--no-verify-ssl", "--no-sign-request", "--color", "--cli-read-timeout", "--cli-connect-timeout",
}
AWS_GENERATED_OPTIONS = {"--cli-input-json", "--cli-input-yaml", "--generate-cli-skeleton"}
AWS_PAGINATION_OPTIONS = {"--starting-token", "--page-size", "--max-items"}
# Commands the AWS CLI adds on top of the service APIs, with their options: `aws cloudformation
# deploy` is DeployCommand.ARG_TABLE of awscli/customizations/cloudformation/deploy.py. It
# uploads templates over 51,200 bytes only with --s3-bucket, and accepts these capabilities.
AWS_CUSTOM_COMMANDS = {
    ("cloudformation", "deploy"): {
        "--template-file", "--stack-name", "--s3-bucket", "--force-upload", "--s3-prefix", "--kms-key-id",
        "--parameter-overrides", "--capabilities", "--no-execute-changeset", "--role-arn", "--notification-arns",
        "--fail-on-empty-changeset", "--no-fail-on-empty-changeset", "--tags", "--disable-rollback",
    },
}
AWS_CUSTOM_REQUIRED = {("cloudformation", "deploy"): {"--template-file", "--stack-name"}}
DEPLOY_TEMPLATE_LIMIT = 51200
CAPABILITIES = {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"}

_BOTOCORE = botocore.session.get_session()


# ------------------------------------------------------------------------ the doc as a shell reads it


@dataclass
class Block:
    lang: str
    text: str
    line: int


@dataclass
class Command:
    """One simple command: its words (comments dropped), where it is, and what it writes."""

    words: list[str]
    line: int
    block: int
    heredoc: tuple[str, str, bool] | None = None  # (tag, body, expanded)
    writes: list[str] = field(default_factory=list)  # files made by `> FILE`
    assigns: str | None = None  # NAME of `NAME=$(...)` / `NAME=value`

    @property
    def program(self) -> str:
        return self.words[0] if self.words else ""


def fenced_blocks(text: str) -> list[Block]:
    """Fenced code blocks, also inside list items (indented fences), in document order."""
    found = []
    for match in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.M | re.S):
        indent = len(match.group(1))
        body = "".join(line[indent:] if line[:indent].strip() == "" else line for line in match.group(3).splitlines(True))
        found.append(Block(match.group(2), body, text.count("\n", 0, match.start()) + 1))
    return found


_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
_OPERATORS = {";", "&&", "||", "|", "&"}


def _split_words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def shell_commands(block: Block, index: int) -> list[Command]:
    lines = block.text.splitlines()
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        start = i
        logical = lines[i]
        while logical.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            logical = logical.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        heredoc = None
        found = _HEREDOC.search(logical)
        if found:
            tag, body_lines = found.group(2), []
            while i < len(lines) and lines[i].strip() != tag:
                body_lines.append(lines[i])
                i += 1
            i += 1  # the closing tag
            heredoc = (tag, "\n".join(body_lines) + "\n", not found.group(1))
            logical = logical[: found.start()] + logical[found.end():]
        commands.extend(_simple_commands(logical, block.line + 1 + start, index, heredoc))
    return commands


def _simple_commands(logical: str, line: int, index: int, heredoc: tuple[str, str, bool] | None) -> list[Command]:
    assignment = re.match(r"^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=\$\((.*)\)\s*$", logical)
    if assignment:  # NAME=$(command): the command runs, NAME is set
        inner = _simple_commands(assignment.group(2), line, index, None)
        if inner:
            inner[-1].assigns = assignment.group(1)
        return inner
    words = _split_words(logical)
    commands, current = [], Command([], line, index)
    pending_write = False
    for word in [*words, ";"]:
        if word in _OPERATORS:
            if current.words or current.writes:
                commands.append(current)
            current = Command([], line, index)
        elif word in (">", ">>"):
            pending_write = True
        elif pending_write:
            current.writes.append(word)
            pending_write = False
        elif not current.words and re.fullmatch(r"(?:export\s+)?[A-Z_][A-Z0-9_]*=.*", word):
            current.assigns = word.split("=", 1)[0]
        else:
            current.words.append(word)
    if heredoc is not None and commands:
        commands[0].heredoc = heredoc
    return commands


def doc_commands(text: str) -> list[Command]:
    commands = []
    for index, block in enumerate(fenced_blocks(text)):
        if block.lang in ("bash", "sh"):
            commands.extend(shell_commands(block, index))
    return commands


def _option_values(words: list[str], option: str) -> list[str]:
    """Values of `--option v1 v2 ...` (up to the next option) and of `--option=v`."""
    values: list[str] = []
    for i, word in enumerate(words):
        if word == option:
            for value in words[i + 1:]:
                if value.startswith("--"):
                    break
                values.append(value)
        elif word.startswith(option + "="):
            values.append(word.split("=", 1)[1])
    return values


def _short_option_values(words: list[str], option: str) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == option]


# ------------------------------------------------------------------------------------- checkers


def _repo_path(value: str) -> str | None:
    value = value.removeprefix("file://").removeprefix("./")
    if value in REPO_FILES or value.startswith(REPO_TOP):
        return value
    return None


def files_created(command: Command) -> list[str]:
    made = [w.removeprefix("./") for w in command.writes]
    if command.program in ("cp", "install", "mmdebstrap") and len(command.words) > 2:
        made.append(command.words[-1].removeprefix("./"))
    return made


def files_used(command: Command) -> list[str]:
    words, used = command.words, []
    for word in words:
        if word.startswith("file://"):
            used.append(word.removeprefix("file://"))
        for pattern in (r"^--from-file=(?:[\w.-]+=)?(.+)$", r"^--config\.file=(.+)$", r"open\(\"([^\"]+)\""):
            used.extend(re.findall(pattern, word))
    if command.program == "helm":
        used += _short_option_values(words, "-f") + _short_option_values(words, "--values")
        if len(words) > 3 and words[1] == "upgrade":
            positional = [w for w in words[2:] if not w.startswith("-")]
            used.append(positional[1])  # the chart
    if command.program == "kubectl":
        used += [v for v in _short_option_values(words, "-f") if v != "-"]
    if command.program == "amtool" and words[1:2] == ["check-config"]:
        used += words[2:]
    if command.program == "podman" and words[1:2] == ["import"]:
        positional = [w for i, w in enumerate(words[2:], 2) if not w.startswith("-") and words[i - 1] != "--change"]
        used.append(positional[0])
    if command.program == "cp":
        used.append(words[-2])
    if command.program == "aws":
        used += _option_values(words, "--template-file")
    return [u.removeprefix("./") for u in used]


def problems_files(commands: list[Command]) -> list[str]:
    """Every file a step reads exists in the repository or an earlier step made it."""
    made: set[str] = set()
    problems = []
    for command in commands:
        for used in files_used(command):
            if used in made:
                continue
            if _repo_path(used) is not None and (ROOT / used).exists():
                continue
            if used.startswith("/"):  # absolute paths: system files, or made under a named directory
                continue
            problems.append(f"line {command.line}: {command.program} uses {used}, which no earlier step makes")
        made.update(files_created(command))
    return problems


def problems_paths(text: str) -> list[str]:
    """Repository paths named in commands and in the prose exist (or are made by a step)."""
    made = {f for c in doc_commands(text) for f in files_created(c)}
    problems = []
    candidates = set(re.findall(r"`([\w./*-]+/[\w.*-]+)`", text))
    for command in doc_commands(text):
        candidates.update(w for w in command.words if _repo_path(w) is not None)
        candidates.update(files_used(command))
    for candidate in sorted(candidates):
        path = candidate.removeprefix("file://").removeprefix("./")
        if path in made or not re.search(r"\.(ya?ml|json|py|md|sh|tar|conf)$|/$|\*", path):
            continue
        if path.startswith("/") or ":" in path:
            continue
        if "*" in path:
            if not list(ROOT.glob(path)):
                problems.append(f"{candidate}: matches nothing in the repository")
        elif not (ROOT / path).exists() and not (DOC.parent / path).exists():
            problems.append(f"{candidate}: no such file in the repository")
    return problems


def problems_variables(commands: list[Command]) -> list[str]:
    """Every variable a step expands was set by an earlier step."""
    assigned: set[str] = set(SHELL_VARIABLES)
    problems = []
    for command in commands:
        texts = list(command.words)
        if command.heredoc is not None and command.heredoc[2]:
            texts.append(command.heredoc[1])
        for text in texts:
            for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text):
                if name not in assigned and not name.islower():
                    problems.append(f"line {command.line}: ${name} is not set by an earlier step")
        if command.assigns:
            assigned.add(command.assigns)
    return problems


def _cli_name(name: str) -> str:
    return "--" + xform_name(name, "-")


def _template(path: str) -> dict[str, Any]:
    return yaml.load((ROOT / path).read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def problems_aws(commands: list[Command]) -> list[str]:
    """`aws` commands name real operations and options; stacks' parameters and outputs exist."""
    problems: list[str] = []
    stacks: dict[str, str] = {}  # stack or stack set name -> template path
    for command in commands:
        words = command.words
        if command.program != "aws":
            continue
        where = f"line {command.line}: aws {' '.join(words[1:3])}"
        if len(words) < 3:
            problems.append(f"{where}: no operation")
            continue
        service, operation = words[1], words[2]
        options = {w.split("=", 1)[0] for w in words[3:] if w.startswith("--")}
        if (service, operation) in AWS_CUSTOM_COMMANDS:
            allowed = AWS_CUSTOM_COMMANDS[(service, operation)]
            required = AWS_CUSTOM_REQUIRED[(service, operation)]
        else:
            try:
                model = _BOTOCORE.get_service_model(service)
            except UnknownServiceError:
                problems.append(f"{where}: no service {service!r} in botocore")
                continue
            names = {xform_name(op, "-"): op for op in model.operation_names}
            if operation not in names:
                problems.append(f"{where}: {service} has no operation {operation!r}")
                continue
            shape = model.operation_model(names[operation]).input_shape
            members = shape.members if shape is not None else {}
            allowed = {_cli_name(m) for m in members}
            allowed |= {"--no-" + _cli_name(m)[2:] for m, s in members.items() if s.type_name == "boolean"}
            required = {_cli_name(m) for m in (shape.required_members if shape is not None else [])}
            if _has_paginator(service, names[operation]):
                allowed |= AWS_PAGINATION_OPTIONS
            allowed |= AWS_GENERATED_OPTIONS
        for option in sorted(options - allowed - AWS_GLOBAL_OPTIONS):
            problems.append(f"{where}: no option {option}")
        # A required boolean is given as --x or --no-x.
        for option in sorted(required - options - {'--' + o[5:] for o in options if o.startswith('--no-')}):
            problems.append(f"{where}: the required option {option} is missing")
        for capability in _option_values(words, "--capabilities"):
            if capability not in CAPABILITIES:
                problems.append(f"{where}: no capability {capability}")
        problems += _check_stack(command, where, stacks)
    return problems


def _has_paginator(service: str, operation: str) -> bool:
    try:
        _BOTOCORE.get_paginator_model(service).get_paginator(operation)
    except (ValueError, DataNotFoundError):  # no paginator for it, or none for the service
        return False
    return True


def _check_stack(command: Command, where: str, stacks: dict[str, str]) -> list[str]:
    words, problems = command.words, []
    names = _option_values(words, "--stack-name") + _option_values(words, "--stack-set-name")
    name = names[0] if names else None
    template_path = next(iter(_option_values(words, "--template-file")), None)
    body = next(iter(_option_values(words, "--template-body")), None)
    if body is not None:
        template_path = body.removeprefix("file://")
    if template_path is not None:
        if not (ROOT / template_path).is_file():
            return [f"{where}: no template {template_path}"]
        if words[2] == "deploy" and (ROOT / template_path).stat().st_size > DEPLOY_TEMPLATE_LIMIT:
            problems.append(f"{where}: {template_path} is over {DEPLOY_TEMPLATE_LIMIT} bytes: deploy needs --s3-bucket")
        parameters = _template(template_path).get("Parameters", {})
        given = {v.split("=", 1)[0] for v in _option_values(words, "--parameter-overrides")}
        given |= set(re.findall(r"ParameterKey=(\w+)", " ".join(_option_values(words, "--parameters"))))
        for key in sorted(given - set(parameters)):
            problems.append(f"{where}: {template_path} has no parameter {key}")
        if name is not None and name not in stacks:  # the first deploy must give what has no default
            for key in sorted(k for k, p in parameters.items() if "Default" not in p and k not in given):
                problems.append(f"{where}: {template_path} needs the parameter {key}")
        if name is not None:
            stacks.setdefault(name, template_path)
    for output in re.findall(r"OutputKey=='(\w+)'", " ".join(_option_values(words, "--query"))):
        if name not in stacks:
            problems.append(f"{where}: no earlier step deploys the stack {name}")
        elif output not in _template(stacks[name]).get("Outputs", {}):
            problems.append(f"{where}: {stacks[name]} has no output {output}")
    return problems


SETTINGS = set(Settings.model_fields)
# Named in the doc as what Kubernetes would inject for a Service and the exporter refuses.
NOT_SETTINGS = {"SERVICE_HOST"}


def problems_settings(text: str) -> list[str]:
    """Settings named in the prose (`config.x`, `x` settings, AWS_ROOT_EXPORTER_X) exist."""
    problems = []
    for name in sorted(set(re.findall(r"`config\.([a-z][a-z0-9_]*)", text))):
        if name not in SETTINGS:
            problems.append(f"config.{name}: no such setting")
    for name in sorted(set(re.findall(r"AWS_ROOT_EXPORTER_([A-Z0-9_]+)", text))):
        if name.lower() not in SETTINGS and name not in NOT_SETTINGS:
            problems.append(f"AWS_ROOT_EXPORTER_{name}: no such setting")
    for name in sorted(set(re.findall(r"`([a-z][a-z0-9_]+)` setting|setting[s]?,? `([a-z][a-z0-9_]+)`", text))):
        for value in name:
            if value and value not in SETTINGS:
                problems.append(f"{value}: no such setting")
    return problems


# ------------------------------------------------------------------------ running what can run here


def run_heredoc(command: Command, directory: Path, env: dict[str, str]) -> Path:
    """Write the file of `cat > FILE <<TAG` as bash does, with `env` for its expansions."""
    assert command.heredoc is not None and command.writes, command
    tag, body, expanded = command.heredoc
    quote = "" if expanded else "'"
    script = f"cat > {shlex.quote(command.writes[0])} <<{quote}{tag}{quote}\n{body}{tag}\n"
    subprocess.run(["bash", "-euc", script], cwd=directory, env={**os.environ, **env}, check=True)
    return directory / command.writes[0]


def written_files(commands: list[Command], directory: Path) -> dict[str, Path]:
    """Every file the doc writes with a heredoc, written in `directory` (sample variables)."""
    return {c.writes[0]: run_heredoc(c, directory, SAMPLE_ENV) for c in commands if c.heredoc and c.writes}


def block_of(text: str, makes: str) -> Block:
    (block,) = [
        b for i, b in enumerate(fenced_blocks(text))
        if b.lang == "bash" and any(makes in files_created(c) for c in shell_commands(b, i))
    ]
    return block


TEXT = DOC.read_text(encoding="utf-8")
COMMANDS = doc_commands(TEXT)


# ------------------------------------------------------------------------------------ the doc


def test_the_doc_has_the_steps_it_is_checked_by() -> None:
    programs = {c.program for c in COMMANDS}
    assert {"aws", "helm", "kubectl", "amtool", "python3"} <= programs
    assert sum(c.program == "aws" for c in COMMANDS) >= 15


def test_every_repository_path_exists() -> None:
    assert problems_paths(TEXT) == []


def test_every_file_a_step_uses_is_made_first() -> None:
    assert problems_files(COMMANDS) == []


def test_every_variable_is_set_first() -> None:
    assert problems_variables(COMMANDS) == []


def test_every_aws_command_is_a_real_operation_with_real_options() -> None:
    assert problems_aws(COMMANDS) == []


def test_every_setting_named_exists() -> None:
    assert problems_settings(TEXT) == []


def test_yaml_and_json_parse(tmp_path: Path) -> None:
    for block in fenced_blocks(TEXT):
        if block.lang == "yaml":
            list(yaml.safe_load_all(block.text))
        elif block.lang == "json":
            json.loads(block.text)
    files = written_files(COMMANDS, tmp_path)
    for name, path in files.items():
        if name.endswith((".yml", ".yaml")):
            assert yaml.safe_load(path.read_text()), name
        elif name.endswith(".json"):
            json.loads(path.read_text())
    for command in COMMANDS:  # `kubectl apply -f -` with a heredoc
        if command.heredoc and not command.writes:
            assert yaml.safe_load(command.heredoc[1]), command.line


def test_organization_delegation_grants_what_the_exporter_calls(tmp_path: Path) -> None:
    policy = json.loads(written_files(COMMANDS, tmp_path)["org-delegation.json"].read_text())
    (statement,) = policy["Statement"]
    exporter = {a for a in ACTIONS["principals"]["exporter"]["actions"] if a.startswith("organizations:")}
    assert set(statement["Action"]) == exporter


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of values files: maps deeply, anything else replaced."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def test_helm_values_render_and_turn_the_queue_on(chart, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = written_files(COMMANDS, tmp_path)
    releases = [c for c in COMMANDS if c.program == "helm" and c.words[1:2] == ["upgrade"]]
    assert len(releases) >= 2
    for release in releases:
        values: dict[str, Any] = {}
        for name in _short_option_values(release.words, "-f"):
            values = _merge(values, yaml.safe_load(files[name.removeprefix("./")].read_text()))
        docs = _render(chart, values)
        for doc in docs:
            _validate(doc)
        config_file = tmp_path / "config.yaml"
        config_file.write_text(_config_file(docs), encoding="utf-8")
        for name in list(os.environ):
            if name.startswith("AWS_ROOT_EXPORTER_"):
                monkeypatch.delenv(name)
        settings = load_settings(config_file)
        # The queue the stack of step 3 made, read from its output into QUEUE_URL.
        assert settings.eventbridge_queue_url == SAMPLE_ENV["QUEUE_URL"], release.line
    assert (RELEASE, NAMESPACE) == (releases[0].words[3], _option_values(releases[0].words, "--namespace")[0])


def test_the_web_config_steps_run_and_the_exporter_accepts_the_password(tmp_path: Path) -> None:
    block = block_of(TEXT, "web-config.yml")
    commands = shell_commands(block, 0)
    assert {c.program for c in commands} <= {"install", "python3", "cat"}, "the block must only make local files"
    # What cert-manager's Secret holds, projected beside the web config file.
    key = _key()
    _write(tmp_path / "tls.crt", cert=_cert("aws-root-exporter.monitoring.svc", key, "aws-root-exporter.monitoring.svc", key))
    _write(tmp_path / "tls.key", key=key)
    # The doc asks for a python3 with bcrypt: this one (the exporter needs it too).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-euc", block.text], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    password = (tmp_path / "prometheus-password").read_bytes()
    assert len(password) >= 24 and not password.endswith(b"\n")
    assert (tmp_path / "prometheus-password").stat().st_mode & 0o077 == 0
    config = load_web_config(tmp_path / "web-config.yml")
    assert config.tls and config.auth is not None
    assert config.auth.check("prometheus", password)
    assert not config.auth.check("prometheus", password + b"x")


def test_the_alertmanager_steps_run(tmp_path: Path) -> None:
    block = block_of(TEXT, "alertmanager.yml")
    (tmp_path / "alerts").symlink_to(ROOT / "alerts")
    env = {**os.environ, "PATH": f"{Path(tool('amtool')).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-euc", block.text], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # The doc says critical alerts page: the routing test of the block answers the pager.
    assert result.stdout.strip().splitlines()[-1] == "pager", result.stdout


def test_the_sync_check_runs() -> None:
    commands = [c for c in COMMANDS if c.words[:2] == ["python3", "helm/sync_files.py"]]
    assert commands
    for command in commands:  # the refresh and the check: in a checkout in step, both change nothing
        result = subprocess.run([sys.executable, *command.words[1:], "--check"], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------- the checks can fail


def _bash(text: str) -> list[Command]:
    return doc_commands(f"```bash\n{text}```\n")


def test_path_check_finds_a_missing_path() -> None:
    assert problems_paths("see `ci/static-credentials-values.yaml`\n") == [
        "ci/static-credentials-values.yaml: no such file in the repository"
    ]
    assert problems_paths("see `helm/aws-root-exporter/ci/static-credentials-values.yaml`\n") == []


def test_file_check_finds_a_file_used_before_it_is_made() -> None:
    used_first = "kubectl create secret generic s --from-file=password=./prometheus-password\necho x > prometheus-password\n"
    assert problems_files(_bash(used_first)) == ["line 2: kubectl uses prometheus-password, which no earlier step makes"]
    made_first = "echo x > prometheus-password\nkubectl create secret generic s --from-file=password=./prometheus-password\n"
    assert problems_files(_bash(made_first)) == []
    assert problems_files(_bash("helm upgrade --install r helm/aws-root-exporter -f values-production.yaml\n")) == [
        "line 2: helm uses values-production.yaml, which no earlier step makes"
    ]


def test_variable_check_finds_an_unset_variable() -> None:
    assert problems_variables(_bash('aws sqs get-queue-attributes --queue-url "$QUEUE_URL"\n')) == [
        "line 2: $QUEUE_URL is not set by an earlier step"
    ]
    assert problems_variables(_bash("QUEUE_URL=$(echo u)\ncat > v.yaml <<YAML\nq: ${QUEUE_URL}\nYAML\n")) == []


def test_aws_check_finds_bad_operations_options_parameters_and_outputs() -> None:
    bad = _bash(
        "aws cloudformation describe-stack --stack-name x\n"
        "aws sqs receive-message --queue-url u --wait-seconds 5\n"
        "aws sqs receive-message --wait-time-seconds 5\n"
        "aws cloudformation deploy --stack-name s --template-file deploy/cloudformation/member-role.yaml --capabilities CAPABILITY_NAMED_IAM\n"
        "aws cloudformation deploy --stack-name q --template-file deploy/cloudformation/root-activity-eventbridge.yaml --parameter-overrides QueueUrl=x\n"
        "aws cloudformation describe-stacks --stack-name q --query \"Stacks[0].Outputs[?OutputKey=='QueueURL'].OutputValue\"\n"
    )
    assert problems_aws(bad) == [
        "line 2: aws cloudformation describe-stack: cloudformation has no operation 'describe-stack'",
        "line 3: aws sqs receive-message: no option --wait-seconds",
        "line 4: aws sqs receive-message: the required option --queue-url is missing",
        "line 5: aws cloudformation deploy: deploy/cloudformation/member-role.yaml needs the parameter ExporterPrincipalArn",
        "line 6: aws cloudformation deploy: deploy/cloudformation/root-activity-eventbridge.yaml has no parameter QueueUrl",
        "line 7: aws cloudformation describe-stacks: deploy/cloudformation/root-activity-eventbridge.yaml has no output QueueURL",
    ]


def test_settings_check_finds_an_unknown_setting() -> None:
    assert problems_settings("set `config.eventbridge_queue` and AWS_ROOT_EXPORTER_QUEUE_URL\n") == [
        "config.eventbridge_queue: no such setting",
        "AWS_ROOT_EXPORTER_QUEUE_URL: no such setting",
    ]
    assert problems_settings("set `config.eventbridge_queue_url` (AWS_ROOT_EXPORTER_EVENTBRIDGE_QUEUE_URL)\n") == []
