"""Command line: `aws-root-exporter [serve|sandbox|audit] ...`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from typing import Any

from exporter import __version__
from exporter.activity.state_file import StateFileError
from exporter.logs import setup_logging
from exporter.sandbox.scenario import Scenario, ScenarioError, load_scenario
from exporter.config.settings import ENV_PREFIX, Settings, SettingsError, load_settings

log = logging.getLogger("exporter")

EXIT_CONFIG = 2
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


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="YAML file with settings (see the Configuration section of README.md)")
    common.add_argument("--web.listen-address", dest="listen_address", metavar="HOST:PORT", help="address to serve /metrics on")
    common.add_argument("--web.config.file", dest="web_config_file", metavar="PATH", help="web configuration file for TLS and basic auth (see docs/security.md)")
    common.add_argument("--log.level", dest="log_level", metavar="LEVEL", help="debug, info, warning or error")
    common.add_argument("--log.format", dest="log_format", metavar="FORMAT", help="text or json")

    parser = argparse.ArgumentParser(
        prog="aws-root-exporter",
        description="Prometheus exporter for AWS root user posture and activity across an AWS Organization.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"aws-root-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", parents=[common], help="run the exporter (default)")
    sandbox = sub.add_parser("sandbox", parents=[common], help="run the exporter against the built-in sandbox organization")
    sandbox.add_argument("--scenario", metavar="FILE", help="sandbox scenario YAML (default: the built-in one)")
    sandbox.add_argument("--sandbox-port", type=int, default=0, help="port of the sandbox AWS endpoint (default: any free port)")
    sandbox.add_argument(
        "--no-prometheus", action="store_true", help="do not start Prometheus and Alertmanager with the shipped alerts (started when installed)"
    )
    classify = sub.add_parser("classify", parents=[common], help="classify CloudTrail records in files (log files, .gz, EventBridge events, JSON lines)")
    classify.add_argument("files", nargs="+", metavar="FILE")
    inject = sub.add_parser("inject", help="inject a root event into a running sandbox (demo)")
    inject.add_argument("--control-url", required=True, help="the sandbox control URL printed by `aws-root-exporter sandbox`")
    inject.add_argument("--account", required=True, help="12-digit account id")
    inject.add_argument("--kind", default="console-login", help="console-login, console-login-failure, password-recovery, api-call, break-glass, iam-user-login")
    inject.add_argument("--no-mfa", action="store_true", help="the record says MFA was not used")
    sub.add_parser("healthcheck", parents=[common], help="exit 0 if this host's exporter answers /-/healthy (for Docker's HEALTHCHECK)")
    audit = sub.add_parser("audit", parents=[common], help="collect once, print every account's root posture, exit 1 on findings")
    audit.add_argument("--format", choices=("table", "json"), default="table")
    audit.add_argument("--sandbox", action="store_true", help="audit a freshly started sandbox organization")
    audit.add_argument("--scenario", metavar="FILE", help="sandbox scenario YAML (with --sandbox)")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in ("listen_address", "web_config_file", "log_level", "log_format") if getattr(args, key, None)}


def _settings(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Settings:
    overrides = _overrides(args)
    overrides.update(extra or {})
    return load_settings(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    try:
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
    raise AssertionError(command)


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
        command = [sys.executable, "-m", "exporter.sandbox", "--port", str(port)]
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


def _sandbox_environment(endpoint_url: str) -> dict[str, Any]:
    from exporter.sandbox import SANDBOX_ENV

    os.environ.update(SANDBOX_ENV)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    extra: dict[str, Any] = {"endpoint_url": endpoint_url}
    return extra


def _sandbox(args: argparse.Namespace) -> int:
    from exporter.app import Exporter, run_until_signalled

    _require_sandbox()
    # The scenario is checked here, before anything starts; the child loads the same file.
    scenario = load_scenario(args.scenario)
    # Check the settings before starting anything.
    extra: dict[str, Any] = {"endpoint_url": "http://127.0.0.1:1"}
    if not args.listen_address and ENV_PREFIX + "LISTEN_ADDRESS" not in os.environ:
        extra["listen_address"] = "127.0.0.1:9784"
    if ENV_PREFIX + "POSTURE_INTERVAL_SECONDS" not in os.environ:
        extra["posture_interval_seconds"] = 30.0
    if ENV_PREFIX + "LOOKUP_EVENTS_INTERVAL_SECONDS" not in os.environ:
        extra["lookup_events_interval_seconds"] = 15.0
    if ENV_PREFIX + "SQS_WAIT_SECONDS" not in os.environ:
        extra["sqs_wait_seconds"] = 2
    _settings(args, extra)
    sandbox = _SandboxProcess(args.scenario, args.sandbox_port)
    demo = None
    try:
        extra.update(_sandbox_environment(sandbox.info["endpoint_url"]))
        for setting, key in (("eventbridge_queue_url", "events_queue_url"), ("s3_trail_queue_url", "trail_queue_url")):
            if ENV_PREFIX + setting.upper() not in os.environ:
                extra[setting] = sandbox.info[key]
        settings = _settings(args, extra)
        setup_logging(settings.log_level, settings.log_format.value)
        exporter = Exporter(settings, lambda: _settings(args, extra))

        def started(exp: Exporter) -> None:
            nonlocal demo
            print(
                "\nSandbox organization running ({accounts} accounts, {collected} collected; no AWS account needed).\n"
                "  Exporter metrics:  {url}/metrics\n"
                "  Exporter status:   {url}/\n"
                "  Sandbox AWS API:   {endpoint}\n"
                "Inject a root console login (it shows in /metrics within seconds):\n"
                "  aws-root-exporter inject --control-url {control} --account {account}\n"
                "Press Ctrl-C to stop.\n".format(
                    url=exp.url,
                    endpoint=sandbox.info["endpoint_url"],
                    accounts=sandbox.info["accounts"],
                    collected=len(_collected(scenario.all_accounts)),
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

    settings = _settings(args)
    return run_classify(args.files, settings.break_glass_windows, sys.stdout, sys.stderr)


def _inject(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    body = json.dumps({"kind": args.kind, "account_id": args.account, "mfa": not args.no_mfa}).encode()
    request = urllib.request.Request(args.control_url.rstrip("/") + "/inject", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"aws-root-exporter: inject: {json.loads(exc.read()).get('error', exc.reason)}", file=sys.stderr)
        # The sandbox refused the request (400): bad input, like any other.
        return EXIT_CONFIG if exc.code == 400 else 1
    except OSError as exc:
        print(f"aws-root-exporter: inject: cannot reach the sandbox at {args.control_url}: {exc}", file=sys.stderr)
        return 1
    print(f"injected {args.kind} in {args.account}: eventID {answer['eventID']}")
    return 0


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
        extra = _sandbox_environment(sandbox.endpoint_url)
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
