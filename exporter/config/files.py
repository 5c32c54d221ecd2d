"""What every configuration source shares: the error the CLI reports, and reading a YAML file.

Its own module so that `settings` and `webconfig` (the web configuration file, which the
settings check at load time) both use it without importing each other; the sandbox's
scenario files are read the same way.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


class SettingsError(Exception):
    """A setting is invalid. The message names the setting; the CLI exits with status 2."""


class YamlFileError(ValueError):
    """A YAML file cannot be read or parsed. The message names the file; `reason` is the same
    without the file's name. Neither quotes a value from the file (settings hold secrets)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _DuplicateKey(Exception):
    def __init__(self, key: str, first_line: int, line: int) -> None:
        super().__init__(key)
        self.key, self.first_line, self.line = key, first_line, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping.

    YAML parsers keep the last of two equal keys, so a setting or an account's `root:` given
    twice would silently lose the first. Checked on the composed nodes, before `<<` merges
    are applied: a merge that a key then overrides is YAML's intended use, not a mistake.
    """

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            key = (key_node.tag, key_node.value)
            if key in first:
                raise _DuplicateKey(key_node.value, first[key], line)
            first[key] = line
        return node


def read_yaml_file(path: Path) -> Any:
    """The parsed content of a UTF-8 YAML file (None when it holds no document), or
    YamlFileError saying why not, in one line."""
    name = repr(str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise YamlFileError(f"cannot read {name}: {reason}", reason) from None
    not_text = _not_utf8_text(data)
    if not_text is not None:
        raise YamlFileError(f"{name} is {not_text}", not_text)
    try:
        return yaml.load(data.decode("utf-8"), Loader=_UniqueKeyLoader)
    except _DuplicateKey as exc:
        reason = f"line {exc.line}: key {exc.key!r} given twice in one mapping (also at line {exc.first_line}): remove one (YAML would keep only the last)"
        raise YamlFileError(f"{name} {reason}", reason) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = "not valid YAML" + (f" at line {mark.line + 1}" if mark else "")
        problem = getattr(exc, "problem", None)
        if problem:
            reason += f": {problem}"
        raise YamlFileError(f"{name} is {reason}", reason) from None


def _not_utf8_text(data: bytes) -> str | None:
    """Why `data` is not UTF-8 text, with the fix; None when it is."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return f"{encoding} text, not UTF-8: save it as UTF-8 (e.g. iconv -f {encoding} -t UTF-8)"
    nul = data.find(b"\x00")
    if nul >= 0:
        return (
            f"not a text file (a NUL byte at offset {nul}: binary, or UTF-16 without a byte order mark):"
            " give a YAML file saved as UTF-8"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): give a YAML file saved as UTF-8"
    return None
