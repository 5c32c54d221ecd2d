"""`python -m exporter serve` in its own process, against a sandbox endpoint."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

from exporter.sandbox import SANDBOX_ENV

from ..conftest import ROOT


class ServeProcess:
    """The exporter as its own process; `settings` become `AWS_ROOT_EXPORTER_*` variables."""

    def __init__(self, endpoint_url: str, **settings: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(SANDBOX_ENV)
        env.update(
            PYTHONUNBUFFERED="1",
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
            AWS_ROOT_EXPORTER_ENDPOINT_URL=endpoint_url,
            AWS_ROOT_EXPORTER_LOG_FORMAT="text",
        )
        env.update({"AWS_ROOT_EXPORTER_" + name.upper(): value for name, value in settings.items()})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "serve", "--web.listen-address", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        )
        self.lines: list[str] = []
        self.url = ""

    async def started(self) -> None:
        async with asyncio.timeout(30):
            while not self.url:
                line = await asyncio.to_thread(self.process.stdout.readline)
                assert line, "exporter exited:\n" + "".join(self.lines)
                self.lines.append(line)
                match = re.search(r"(http://127\.0\.0\.1:\d+)/metrics", line)
                if match:
                    self.url = match.group(1)
        # Keep draining the output so the child never blocks on a full pipe.
        asyncio.get_running_loop().run_in_executor(None, lambda: self.lines.extend(self.process.stdout))
