"""The config-key table of docs/grids-and-config.md, generated from `TrainConfig` itself.

    python -m charrnn.report.config_keys docs/grids-and-config.md

rewrites the lines between CONFIG_KEYS_START and CONFIG_KEYS_END: one row per field in class order,
under the class's `# --- section ---` headings, with its default, its valid values (`CHOICES`,
`RANGES`, or the type) and its meaning (the field's comment in `config.py`), plus the tasks it
applies to (`registry.TASK_KEYS`). tests/test_docs.py fails when the file drifts from the class.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import sys

from charrnn import registry
from charrnn.config import CHOICES, FIELD_TYPES, RANGES, TrainConfig, format_value
from .base import section_main, splice_between

CONFIG_KEYS_START = "<!-- config-keys:start (generated from TrainConfig: python -m charrnn.report.config_keys) -->"
CONFIG_KEYS_END = "<!-- config-keys:end -->"
FIELD_LINE = re.compile(r"^\s{4}(\w+):\s*[^=]+=\s*.+?(?:#\s*(.*))?$")
SECTION_LINE = re.compile(r"^\s{4}#\s*---\s*(.+?)\s*---\s*$")
COMMENT_LINE = re.compile(r"^\s+#\s*(.*)$")
TYPE_WORDS = {bool: "true \\| false", int: "an integer", float: "a number", str: "a string"}


def documented_fields() -> list[tuple[str, str, str]]:
    """(section, key, comment) of every field, from the class source: a comment-only line right
    after a field continues that field's comment."""
    rows: list[tuple[str, str, str]] = []
    section = ""
    for line in inspect.getsource(TrainConfig).splitlines():
        if match := SECTION_LINE.match(line):
            section = match.group(1)
        elif match := FIELD_LINE.match(line):
            rows.append((section, match.group(1), (match.group(2) or "").strip()))
        elif (match := COMMENT_LINE.match(line)) and rows and line.startswith(" " * 8):
            last = rows[-1]
            rows[-1] = (last[0], last[1], f"{last[2]} {match.group(1).strip()}".strip())
        elif line.strip().startswith("def "):
            break
    return rows


def valid_values(key: str) -> str:
    if key in CHOICES:
        return " \\| ".join(CHOICES[key])
    if key in RANGES:
        return RANGES[key][2]
    return TYPE_WORDS[FIELD_TYPES[key]]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def key_table() -> str:
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    lines, section = [], None
    header = ["| key | default | valid | meaning |", "|---|---|---|---|"]
    for where, key, comment in documented_fields():
        if where != section:
            lines += ([""] if lines else []) + [f"**{where}**", "", *header]
            section = where
        tasks = registry.TASK_KEYS.get(key)
        meaning = _cell(comment) + (f" (only task={', '.join(tasks)})" if tasks else "")
        default = format_value(defaults[key]) or '""'
        lines.append(f"| `{key}` | `{default}` | {valid_values(key)} | {meaning} |")
    return "\n".join(lines)


def splice(document: str, block: str) -> str:
    return splice_between(document, block, CONFIG_KEYS_START, CONFIG_KEYS_END)


def main(argv: list[str] | None = None) -> int:
    return section_main(argv, "Rewrite the config-key table of a markdown file.",
                        (CONFIG_KEYS_START, CONFIG_KEYS_END), key_table, "config_keys")

if __name__ == "__main__":
    sys.exit(main())
