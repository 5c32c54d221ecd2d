"""What every configuration source shares: the error the CLI reports, and reading a YAML file.

Its own module so that `settings` and `webconfig` (the web configuration file, which the
settings check at load time) both use it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class SettingsError(Exception):
    """A setting is invalid. The message names the setting; the CLI exits with status 2."""


class YamlFileError(ValueError):
    """A YAML file cannot be read or parsed; the message names the file, never its content."""


def read_yaml_file(path: Path) -> Any:
    """The parsed content of a YAML file (None when empty), or YamlFileError saying why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise YamlFileError(f"cannot read {str(path)!r}: {reason}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise YamlFileError(f"{str(path)!r} is not valid YAML{where}") from None
