"""No credential, session token or secret value ever appears in logs, metrics, error
messages or the landing page, after a full run that used recognisable secrets.

The run covers role assumption (with an external id), AssumeRoot audit sessions, all three
activity sources, a failing account (its error message is logged) and debug logging,
formatted exactly as the exporter formats its own logs.
"""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from exporter.logs import setup_logging
from exporter.sandbox import Sandbox
from exporter.sandbox.records import make_record

from .conftest import http_get, running_exporter, sandbox_settings

SECRET_KEY = "SECRETKEY-do-not-leak-0123456789abcdefXYZ"
EXTERNAL_ID = "external-id-DO-NOT-LEAK-4242"


async def test_no_secret_in_logs_metrics_or_pages(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    setup_logging("debug", "json", stream)
    try:
        for assume_root in (False, True):
            settings = sandbox_settings(
                sandbox,
                external_id=EXTERNAL_ID,
                assume_root_audit=assume_root,
                lookup_events_enabled=True,
                eventbridge_queue_url=sandbox.events_queue_url,
                s3_trail_queue_url=sandbox.trail_queue_url,
                sqs_wait_seconds=1,
                include_account_ids=["123456789012", "210000000003", "210000000009", "210000000013"],
            )
            async with running_exporter(settings) as exporter:
                await exporter.wait_for_sweeps(1)
                sandbox.inject(make_record("console-login", "210000000003"))
                async with asyncio.timeout(30):
                    while "root activity" not in stream.getvalue():
                        await asyncio.sleep(0.1)
                await exporter.exporter.activity.poll_lookup_events()
                metrics = await exporter.metrics_text()
                _, _, landing = await asyncio.to_thread(http_get, exporter.url + "/")
                credentials = list(exporter.exporter.sweeper.aws._credentials.values())
                assert credentials, "the run assumed roles"
                secrets = {SECRET_KEY, EXTERNAL_ID}
                for c in credentials:
                    secrets |= {c.secret_access_key, c.session_token}
                    assert c.access_key_id[:4] + "..." in repr(c) and c.secret_access_key not in repr(c)
                text = "\n".join([stream.getvalue(), metrics, landing.decode()])
                for secret in secrets:
                    assert secret and secret not in text, f"a secret ({secret[:6]}...) leaked"
                # The logs did say what happened, including the failing account's error.
                assert "210000000009" in stream.getvalue()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
