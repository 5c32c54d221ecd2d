"""The security alternate contact is read once per `security_contact_max_age_seconds`, not
on every sweep: its age, a failed read (tried again at the next sweep) and an account that
leaves the organization, against the sandbox with the sweeper's clock set by the test."""

from __future__ import annotations

from pathlib import Path

from exporter.app import make_aws
from exporter.engine.state import ExporterState, Snapshot
from exporter.engine.sweep import SECURITY_CONTACT, PostureSweeper
from exporter.sandbox import Sandbox, load_scenario

from .conftest import sandbox_settings

READ = "account:GetAlternateContact"
MANAGEMENT, WITH_CONTACT, WITHOUT_CONTACT = "123456789012", "210000000001", "210000000002"
MEMBERS = """\
  - {id: "210000000001", name: with-contact, email: a@corp.example, root: {mfa: hardware}}
  - {id: "210000000002", name: without-contact, email: b@corp.example, root: {mfa: hardware}, security_contact: %s}
"""
SCENARIO = 'management: {id: "123456789012", name: management, email: m@corp.example, root: {mfa: hardware}}\naccounts:\n'


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _scenario(sandbox: Sandbox, tmp_path: Path, text: str) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    sandbox.reset(load_scenario(path))


def _contacts(snapshot: Snapshot) -> dict[str, bool | None]:
    return {aid: p.recovery.security_contact.present for aid, p in snapshot.posture.items() if p.recovery and p.recovery.security_contact}


async def test_a_contact_is_read_again_only_when_older_than_the_max_age(sandbox: Sandbox, tmp_path: Path) -> None:
    _scenario(sandbox, tmp_path, SCENARIO + MEMBERS % "false")
    settings = sandbox_settings(sandbox, security_contact_max_age_seconds=3600)
    state, clock = ExporterState(600), Clock()
    async with make_aws(settings, state) as aws:
        sweeper = PostureSweeper(aws, settings, state, clock=clock)
        first = await sweeper.sweep()
        assert _contacts(first) == {MANAGEMENT: True, WITH_CONTACT: True, WITHOUT_CONTACT: False}
        assert state.api.requests[READ] == 3
        # The contact is set now; a sweep within the max age still shows what was read.
        _scenario(sandbox, tmp_path, SCENARIO + MEMBERS % "true")
        clock.now += 3599
        assert _contacts(await sweeper.sweep()) == _contacts(first)
        assert state.api.requests[READ] == 3
        # At the max age every account is read again, and the change shows.
        clock.now += 1
        assert _contacts(await sweeper.sweep()) == {MANAGEMENT: True, WITH_CONTACT: True, WITHOUT_CONTACT: True}
        assert state.api.requests[READ] == 6


async def test_max_age_zero_reads_on_every_sweep(sandbox: Sandbox, tmp_path: Path) -> None:
    _scenario(sandbox, tmp_path, SCENARIO + MEMBERS % "true")
    settings = sandbox_settings(sandbox, security_contact_max_age_seconds=0)
    state = ExporterState(600)
    async with make_aws(settings, state) as aws:
        sweeper = PostureSweeper(aws, settings, state, clock=Clock())
        await sweeper.sweep()
        await sweeper.sweep()
    assert state.api.requests[READ] == 6


async def test_a_failed_read_is_tried_again_at_the_next_sweep(sandbox: Sandbox, tmp_path: Path) -> None:
    # Trusted access for Account Management off: the members' contacts cannot be read; the
    # management account reads its own (no AccountId) and keeps it.
    _scenario(sandbox, tmp_path, "organization: {account_trusted_access: false}\n" + SCENARIO + MEMBERS % "true")
    settings = sandbox_settings(sandbox, security_contact_max_age_seconds=3600)
    state, clock = ExporterState(600), Clock()
    async with make_aws(settings, state) as aws:
        sweeper = PostureSweeper(aws, settings, state, clock=clock)
        assert _contacts(await sweeper.sweep()) == {MANAGEMENT: True, WITH_CONTACT: None, WITHOUT_CONTACT: None}
        assert state.api.requests[READ] == 3
        clock.now += 60
        assert _contacts(await sweeper.sweep()) == {MANAGEMENT: True, WITH_CONTACT: None, WITHOUT_CONTACT: None}
        assert state.api.requests[READ] == 5
        assert state.collector_errors[(WITH_CONTACT, SECURITY_CONTACT, "access_denied")] == 2
        # Trusted access enabled: the next sweep reads the members, and then keeps them.
        _scenario(sandbox, tmp_path, SCENARIO + MEMBERS % "true")
        clock.now += 60
        assert _contacts(await sweeper.sweep()) == {MANAGEMENT: True, WITH_CONTACT: True, WITHOUT_CONTACT: True}
        assert state.api.requests[READ] == 7
        clock.now += 60
        await sweeper.sweep()
        assert state.api.requests[READ] == 7


async def test_an_account_that_left_and_came_back_is_read_again(sandbox: Sandbox, tmp_path: Path) -> None:
    _scenario(sandbox, tmp_path, SCENARIO + MEMBERS % "true")
    settings = sandbox_settings(sandbox, security_contact_max_age_seconds=3600)
    state, clock = ExporterState(600), Clock()
    async with make_aws(settings, state) as aws:
        sweeper = PostureSweeper(aws, settings, state, clock=clock)
        await sweeper.sweep()
        assert state.api.requests[READ] == 3
        _scenario(sandbox, tmp_path, SCENARIO + MEMBERS.splitlines(keepends=True)[0])
        clock.now += 60
        gone = await sweeper.sweep()
        assert WITHOUT_CONTACT not in gone.posture and state.api.requests[READ] == 3
        # Back (without a contact now): nothing of its earlier answer is kept.
        _scenario(sandbox, tmp_path, SCENARIO + MEMBERS % "false")
        clock.now += 60
        back = await sweeper.sweep()
        assert _contacts(back) == {MANAGEMENT: True, WITH_CONTACT: True, WITHOUT_CONTACT: False}
        assert state.api.requests[READ] == 4
