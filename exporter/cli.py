"""Command line: `aws-root-exporter [serve|sandbox|audit|classify|inject|healthcheck] ...`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

from exporter import __version__
from exporter.activity.state_file import StateFileError
from exporter.logs import setup_logging
from exporter.sandbox.actions import ACTIONS
from exporter.sandbox.records import KINDS, MFA_DEVICES
from exporter.sandbox.scenario import Scenario, ScenarioError, load_scenario
from exporter.sandbox.server import check_port
from exporter.config.settings import CONFIG_FILE_ENV, Settings, SettingsError, load_settings

log = logging.getLogger("exporter")

EXIT_CONFIG = 2
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE, as a shell reports it
SANDBOX_HOST = "127.0.0.1"  # the sandbox organization's endpoints are local only
SANDBOX_EXTRA = "pip install 'aws-root-exporter[sandbox]'"


class SandboxMissing(Exception):
    """The sandbox's packages (moto with its server) are not installed."""


def _require_sandbox() -> None:
    """Fail with the install command when moto is missing (the production image has none)."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        raise SandboxMissing(
            f"the sandbox needs moto, which is not installed here ({exc}). Install it with: {SANDBOX_EXTRA}"
            " (the production container image does not include it)"
        ) from None


# The options several commands share. Each command takes only those it uses (`_OPTIONS_OF`);
# given before the command they apply to it, as after it.
_SHARED: dict[str, tuple[str, dict[str, Any]]] = {
    "config": ("--config", {"metavar": "PATH", "help": "YAML file with settings (see the Configuration section of README.md)"}),
    "listen_address": ("--web.listen-address", {"metavar": "HOST:PORT", "help": "address to serve /metrics on"}),
    "web_config_file": ("--web.config.file", {"metavar": "PATH", "help": "web configuration file for TLS and basic auth (see docs/security.md)"}),
    "log_level": ("--log.level", {"metavar": "LEVEL", "help": "debug, info, warning or error"}),
    "log_format": ("--log.format", {"metavar": "FORMAT", "help": "text or json"}),
}
_OPTIONS_OF: dict[str, tuple[str, ...]] = {
    "serve": tuple(_SHARED),
    "sandbox": tuple(_SHARED),
    "audit": ("config", "log_level", "log_format"),
    "classify": ("config",),  # for break_glass_windows and the tamper scope; it serves nothing and logs nothing
    "inject": (),
    "healthcheck": ("config", "listen_address", "web_config_file"),
}

_HELP_OF: dict[str, dict[str, str]] = {
    "classify": {
        "config": "YAML settings file (see the Configuration section of README.md); classify uses its break_glass_windows, "
        "and its forwarder_rule_name and queue URLs to count only changes to the monitoring's own EventBridge rules and "
        "SQS queues as tampering (without a configuration file, a change to any rule or queue counts)"
    },
    "healthcheck": {"listen_address": "the address the exporter serves on (the listen_address setting)"},
}


class _Parser(argparse.ArgumentParser):
    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        # One line, as for every other bad input; the usage is one `--help` away.
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


class _Formatter(argparse.HelpFormatter):
    def _split_lines(self, text: str, width: int) -> list[str]:
        # Kind names and flags hold hyphens: a line never breaks inside one ("iam-user-" / "login").
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _add_shared(parser: argparse.ArgumentParser, names: tuple[str, ...], helps: dict[str, str] | None = None) -> None:
    for name in names:
        flag, shared = _SHARED[name]
        options = {**shared, "help": (helps or {}).get(name, shared["help"])}
        # SUPPRESS: an option the command line does not give sets nothing, so a subcommand's
        # parser never overwrites a value given before the subcommand with its default.
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, **options)


def _parser() -> _Parser:
    parser = _Parser(
        prog="aws-root-exporter",
        formatter_class=_Formatter,
        description="Prometheus exporter for AWS root user posture and activity across an AWS Organization.",
        epilog="Options given before COMMAND apply to it (to serve when no COMMAND is given); "
        "`aws-root-exporter COMMAND --help` lists the options each command takes.",
    )
    parser.add_argument("--version", action="version", version=f"aws-root-exporter {__version__}")
    _add_shared(parser, tuple(_SHARED))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {
        "serve": "run the exporter (default)",
        "sandbox": "run the exporter against the built-in sandbox organization",
        "audit": "collect once, print every account's root posture, exit 1 on findings",
        "classify": "classify CloudTrail records in files (log files, .gz, EventBridge events, JSON lines)",
        "inject": "inject a root event into a running sandbox, or blind one of its monitoring paths (demo)",
        "healthcheck": "exit 0 if this host's exporter answers /-/healthy (for Docker's HEALTHCHECK)",
    }
    parsers = {}
    for command, text in commands.items():
        parsers[command] = sub.add_parser(command, help=text, description=text[0].upper() + text[1:] + ".", formatter_class=_Formatter)
        _add_shared(parsers[command], _OPTIONS_OF[command], _HELP_OF.get(command))
    parser.commands = parsers
    sandbox = parsers["sandbox"]
    sandbox.add_argument("--scenario", metavar="FILE", help="sandbox scenario YAML (default: the built-in one)")
    sandbox.add_argument("--sandbox-port", type=int, default=0, help="port of the sandbox AWS endpoint (default: any free port)")
    sandbox.add_argument(
        "--no-prometheus", action="store_true", help="do not start Prometheus and Alertmanager with the shipped alerts (started when installed)"
    )
    parsers["classify"].add_argument(
        "files", nargs="+", metavar="FILE", help='a CloudTrail log file ({"Records": [...]}, plain or .gz), EventBridge events or JSON lines'
    )
    inject = parsers["inject"]
    inject.add_argument("--control-url", required=True, help="the sandbox control URL printed by `aws-root-exporter sandbox`")
    inject.add_argument("--account", required=True, help="12-digit account id")
    inject.add_argument(
        "--kind", default="console-login", choices=(*KINDS, *ACTIONS), metavar="KIND",
        help=f"a record: one of {', '.join(KINDS)} (default: console-login); or a call that blinds or restores a path: "
        + "; ".join(f"{name}: {what}" for name, what in ACTIONS.items()),
    )
    inject.add_argument("--region", help="the region a blinding KIND acts in (default: the sandbox's region)")
    factor = inject.add_mutually_exclusive_group()
    factor.add_argument("--no-mfa", action="store_true", help="the record says MFA was not used")
    factor.add_argument("--mfa-kind", default="totp", choices=sorted(MFA_DEVICES), help="the MFA device a console login names (default: totp)")
    audit = parsers["audit"]
    audit.add_argument(
        "--format", choices=("table", "json"), default="table",
        help="table: one row per account, for people (default); json: the whole report as one JSON document, for scripts",
    )
    audit.add_argument("--sandbox", action="store_true", help="audit a freshly started sandbox organization")
    audit.add_argument("--scenario", metavar="FILE", help="sandbox scenario YAML (with --sandbox)")
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    args.command = args.command or "serve"
    # The command's own parser says what is wrong, and points to its own --help.
    command = parser.commands[args.command]
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    for name, (flag, _) in _SHARED.items():
        if not hasattr(args, name):
            setattr(args, name, None)
        elif name not in _OPTIONS_OF[args.command]:
            # Only before the command can it get here: after it, the command's parser refuses it.
            takes = ", ".join(_SHARED[n][0] for n in _OPTIONS_OF[args.command])
            command.error(f"{flag} (given before {args.command}): {args.command} does not use it; " + (f"it takes {takes}" if takes else "it takes none of these options"))
    return args


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in ("listen_address", "web_config_file", "log_level", "log_format") if getattr(args, key, None)}


def _settings(args: argparse.Namespace, extra: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None) -> Settings:
    overrides = _overrides(args)
    overrides.update(extra or {})
    return load_settings(args.config, overrides, defaults)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        status = _run_command(args)
        # Inside the try: a reader that went away shows here, not in Python's flush at exit.
        sys.stdout.flush()
        return status
    except SettingsError as exc:
        print(f"aws-root-exporter: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StateFileError as exc:
        print(f"aws-root-exporter: state file error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SandboxMissing as exc:
        print(f"aws-root-exporter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ScenarioError as exc:
        print(f"aws-root-exporter: scenario error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        return _reader_went_away()


def _run_command(args: argparse.Namespace) -> int:
    command = args.command
    if command == "serve":
        return _serve(args)
    if command == "sandbox":
        return _sandbox(args)
    if command == "audit":
        return _audit(args)
    if command == "classify":
        return _classify(args)
    if command == "inject":
        return _inject(args)
    if command == "healthcheck":
        return _healthcheck(args)
    raise AssertionError(command)


def _reader_went_away() -> int:
    """The reader of standard output closed it (`audit | head`, `classify ... | grep -q`): stop
    quietly with the status a shell gives a program that SIGPIPE ended, as Unix tools do. The
    output is pointed at /dev/null first, or Python's own flush at exit prints a traceback."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _healthcheck(args: argparse.Namespace) -> int:
    from exporter.web.healthcheck import check

    problem = check(_settings(args))
    if problem is not None:
        print(f"aws-root-exporter: not healthy: {problem}", file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    from exporter.app import Exporter, run_until_signalled

    settings = _settings(args)
    setup_logging(settings.log_level, settings.log_format.value)
    exporter = Exporter(settings, lambda: _settings(args))
    asyncio.run(run_until_signalled(exporter.run))
    return 0


class _SandboxProcess:
    """The sandbox organization in a child process, so moto never competes with the exporter's loop."""

    def __init__(self, scenario: str | None, port: int) -> None:
        command = [sys.executable, "-m", "exporter.sandbox", "--host", SANDBOX_HOST, "--port", str(port)]
        if scenario:
            command += ["--scenario", scenario]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            code = self.process.wait()
            raise SettingsError(f"scenario: the sandbox did not start (exit status {code})")
        self.info = json.loads(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _sandbox_environment(endpoint_url: str, region: str) -> dict[str, Any]:
    from exporter.sandbox import SANDBOX_ENV

    os.environ.update(SANDBOX_ENV)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    # The sandbox's region too: it decides the partition the sandbox answers in (GovCloud, China).
    extra: dict[str, Any] = {"endpoint_url": endpoint_url, "region": region}
    return extra


# The sandbox's own defaults: short intervals so that a change shows within seconds, and a
# local address. They are defaults only: a flag, an environment variable or the --config file
# sets each of them as for `serve`, at start and on a reload.
DEMO_DEFAULTS: dict[str, Any] = {
    "listen_address": "127.0.0.1:9784",
    "posture_interval_seconds": 30.0,
    "lookup_events_interval_seconds": 15.0,
    "sqs_wait_seconds": 2,
    # The sandbox delivers a canary in seconds (its scenario's delays: 2 s EventBridge, 5 s
    # trail file and LookupEvents, plus the 15 s poll): every reachable account is proven
    # within 30 s of start, and a path blinded with `inject --kind` goes blind within about
    # a minute (bound + interval) instead of AWS's 10 to 20, the checks saying why within 30 s.
    "canary_interval_seconds": 30.0,
    "canary_bounds_seconds": {"eventbridge_sqs": 30.0, "s3_trail": 60.0, "lookup_events": 60.0},
    "monitoring_checks_interval_seconds": 30.0,
}


def _sandbox(args: argparse.Namespace) -> int:
    from exporter.app import Exporter, run_until_signalled

    _require_sandbox()
    # The scenario is checked here, before anything starts; the child loads the same file.
    scenario = load_scenario(args.scenario)
    # Check the settings before starting anything (the sandbox's endpoint is not known yet).
    _settings(args, {"endpoint_url": "http://127.0.0.1:1"}, DEMO_DEFAULTS)
    try:
        check_port(SANDBOX_HOST, args.sandbox_port)
    except OSError as exc:
        raise SettingsError(
            f"--sandbox-port: cannot listen on {SANDBOX_HOST}:{args.sandbox_port}: {exc.strerror or exc}; "
            "choose another port, or leave --sandbox-port out for any free one"
        ) from None
    sandbox = _SandboxProcess(args.scenario, args.sandbox_port)
    demo = None
    try:
        # The endpoint is always the sandbox's: pointing the sandbox command elsewhere would
        # be `serve`. Its two queues are defaults like the intervals.
        overrides = _sandbox_environment(sandbox.info["endpoint_url"], sandbox.info["region"])
        defaults = {**DEMO_DEFAULTS, "eventbridge_queue_url": sandbox.info["events_queue_url"], "s3_trail_queue_url": sandbox.info["trail_queue_url"]}
        settings = _settings(args, overrides, defaults)
        setup_logging(settings.log_level, settings.log_format.value)
        exporter = Exporter(settings, lambda: _settings(args, overrides, defaults))

        def started(exp: Exporter) -> None:
            nonlocal demo
            print(
                "\nSandbox organization running ({accounts} accounts, {collected} collected; no AWS account needed).\n"
                "  Exporter metrics:  {url}/metrics\n"
                "  Exporter status:   {url}/\n"
                "  Sandbox AWS API:   {endpoint}\n"
                "{by_design}"
                "Inject a root console login (it shows in /metrics within seconds):\n"
                "  {program} inject --control-url {control} --account {account}\n"
                "Press Ctrl-C to stop.\n".format(
                    url=exp.url,
                    endpoint=sandbox.info["endpoint_url"],
                    accounts=sandbox.info["accounts"],
                    collected=len(_collected(scenario.all_accounts)),
                    by_design=_failing_by_design(scenario),
                    program=_program(),
                    control=sandbox.info["control_url"],
                    account=inject_account(scenario),
                ),
                flush=True,
            )
            if not args.no_prometheus:
                from exporter.sandbox import demo_stack

                demo = demo_stack.start_demo(exp.url, sys.stdout)

        asyncio.run(run_until_signalled(lambda: exporter.run(on_started=started)))
    finally:
        if demo is not None:
            demo.stop()
        sandbox.stop()
    return 0


def _program() -> str:
    """This program as a command that works as printed from any shell and directory: `make
    demo` runs it from .venv/bin, which is not on a new user's PATH."""
    script = Path(sys.executable).parent / "aws-root-exporter"
    if os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m exporter"


def _failing_by_design(scenario: Scenario) -> str:
    """The banner's lines on the scenario's accounts set up to fail, so that their warnings
    read as the demonstration they are."""
    lines = []
    for account in _collected(scenario.accounts):
        why = []
        if account.assume_role == "denied":
            why.append("the exporter's member role cannot be assumed, so nothing proves its sight: it shows as blind")
        for fault in account.faults:
            why.append("every IAM call is throttled" if fault == "throttle_iam" else f"IAM {fault.operation} fails ({fault.error})")
        if account.credential_report.malformed:
            why.append("its credential report is malformed")
        if why:
            lines.append(f"    {account.id} {account.name}: {'; '.join(why)}\n")
    if not lines:
        return ""
    return (
        "  Failing by design, to show how a failure is reported (in /metrics with its reason, and one warning in the log):\n"
        + "".join(lines)
    )


def _collected(accounts: list[Any]) -> list[Any]:
    """The scenario accounts whose Organizations state the exporter collects."""
    from exporter.discovery.accounts import SKIPPED_STATES

    return [a for a in accounts if a.state not in SKIPPED_STATES]


def inject_account(scenario: Scenario) -> str:
    """An account of the running scenario for the inject hint: a collected member whose root
    has a password and no MFA (the login a demo should page on), else one with a password
    (a console login is then plausible), else any collected one."""
    collected = _collected(scenario.accounts)
    with_password = [a for a in collected if a.root.password == "present"]
    without_mfa = [a for a in with_password if a.root.mfa == "none"]
    return (without_mfa or with_password or collected or [scenario.management])[0].id


def _classify(args: argparse.Namespace) -> int:
    from exporter.activity.classify_cli import run_classify
    from exporter.activity.tamper import TamperScope

    settings = _settings(args)
    # Without a configuration file the defaults name no queue: that is not knowing which
    # rules and queues are the monitoring's, and every one counts (fail closed).
    scope = TamperScope.from_settings(settings) if args.config or os.environ.get(CONFIG_FILE_ENV) else None
    return run_classify(args.files, settings.break_glass_windows, sys.stdout, sys.stderr, scope=scope)


def _inject(args: argparse.Namespace) -> int:
    import http.client
    import urllib.error
    import urllib.parse
    import urllib.request

    not_control = (
        f"aws-root-exporter: inject: {args.control_url} is not a sandbox control URL ({{}}); "
        "use the --control-url that `aws-root-exporter sandbox` prints"
    )
    parts = urllib.parse.urlsplit(args.control_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        print(not_control.format("it is not an http:// URL"), file=sys.stderr)
        return EXIT_CONFIG
    fields = {"kind": args.kind, "account_id": args.account, "mfa": not args.no_mfa, "mfa_kind": args.mfa_kind}
    if args.region:
        fields["region"] = args.region
    body = json.dumps(fields).encode()
    try:
        request = urllib.request.Request(args.control_url.rstrip("/") + "/inject", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = _json_object(response.read())
    except urllib.error.HTTPError as exc:
        error = _json_object(exc.read()).get("error")
        if exc.code == 400 and isinstance(error, str):
            # The sandbox refused the request: bad input, like any other.
            print(f"aws-root-exporter: inject: {error}", file=sys.stderr)
            return EXIT_CONFIG
        if isinstance(error, str):
            print(f"aws-root-exporter: inject: the sandbox answered HTTP {exc.code}: {error}", file=sys.stderr)
            return 1
        print(not_control.format(f"it answered HTTP {exc.code} {exc.reason}"), file=sys.stderr)
        return EXIT_CONFIG
    except (ValueError, http.client.HTTPException) as exc:
        # A URL urllib cannot open (a bad port, say), or no HTTP server there.
        print(not_control.format(str(exc) or type(exc).__name__), file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(
            f"aws-root-exporter: inject: cannot reach the sandbox at {args.control_url}: {getattr(exc, 'reason', exc)}; "
            "is `aws-root-exporter sandbox` still running? Use the --control-url it prints",
            file=sys.stderr,
        )
        return 1
    if not isinstance(answer.get("eventID"), str):
        print(not_control.format("its answer is not the sandbox's"), file=sys.stderr)
        return EXIT_CONFIG
    print(f"injected {args.kind} in {args.account}: eventID {answer['eventID']}")
    return 0


def _json_object(data: bytes) -> dict[str, Any]:
    """A JSON object from an answer; {} when the answer is anything else (not the sandbox)."""
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _audit(args: argparse.Namespace) -> int:
    from exporter.audit import audit_report, exit_status, print_json, print_table, run_audit

    sandbox = None
    extra: dict[str, Any] = {}
    if args.sandbox:
        _require_sandbox()
        from exporter.sandbox import Sandbox

        _settings(args)  # bad settings and a bad scenario stop us before the sandbox starts
        scenario = load_scenario(args.scenario)
        sandbox = Sandbox(scenario).start()
        extra = _sandbox_environment(sandbox.endpoint_url, sandbox.region)
    elif args.scenario:
        raise SettingsError("scenario: only used with --sandbox")
    try:
        settings = _settings(args, extra)
        setup_logging(settings.log_level if args.log_level else "warning", settings.log_format.value)
        snapshot = asyncio.run(run_audit(settings))
    finally:
        if sandbox is not None:
            sandbox.stop()
    report = audit_report(snapshot)
    (print_json if args.format == "json" else print_table)(report, sys.stdout)
    return exit_status(report)
