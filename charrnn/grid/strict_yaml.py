"""YAML as grid files may write it: PyYAML's safe loader, stricter.

- an alias (`*name`, and so a `<<: *name` merge) is refused where the parser meets it, before
  anything is built: a few hundred bytes of nested aliases would otherwise expand to gigabytes
  the moment a value is printed;
- a key given twice in one mapping is refused, naming both lines (YAML keeps the last one silently);
- a float must be finite (`.inf`, `.nan`);
- a text is at most MAX_TEXT_CHARS characters.

A problem raises `StrictYAMLError`: one line, with where in the file it is; no value is quoted whole.
"""
from __future__ import annotations

import math
from typing import Any

import yaml

MAX_TEXT_CHARS = 2_000   # any one scalar (a claim's quoted sentence, a question, a path)
FLOAT_TAG = "tag:yaml.org,2002:float"


class StrictYAMLError(ValueError):
    """A grid file that parses, but is refused: one line, its position included."""


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}"


class StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases while composing; `load` checks the composed nodes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise StrictYAMLError(f"alias *{event.anchor[:40]} at {_at(event.start_mark)}: aliases are not "
                                  "allowed; valid: write the value out")
        return super().compose_node(parent, index)


def load(text: str) -> Any:
    """The document in `text` (None when empty), checked as the module docstring says. A syntax
    error is PyYAML's `yaml.YAMLError`; a refused document is StrictYAMLError."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(loader, node, "")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check(loader: StrictLoader, node: yaml.Node, where: str) -> None:
    """Duplicate keys, non-finite floats and over-long texts anywhere under `node` (a tree: no aliases)."""
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            _check(loader, key_node, where)
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            name = f"{where}.{key}" if where else str(key)
            if key is not None and key != "<<":
                if key in first_line:
                    raise StrictYAMLError(f"{name}: duplicate key at lines {first_line[key]} and "
                                          f"{key_node.start_mark.line + 1}; valid: each key once")
                first_line[key] = key_node.start_mark.line + 1
            _check(loader, value_node, name)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check(loader, item, f"{where}[{i}]")
    elif isinstance(node, yaml.ScalarNode):
        if len(node.value) > MAX_TEXT_CHARS:
            raise StrictYAMLError(f"{where or 'value'}: a text of {len(node.value)} characters at "
                                  f"{_at(node.start_mark)}; valid: at most {MAX_TEXT_CHARS} characters")
        if node.tag == FLOAT_TAG and not math.isfinite(loader.construct_yaml_float(node)):
            raise StrictYAMLError(f"{where or 'value'}: {node.value} at {_at(node.start_mark)}: not a finite "
                                  "number; valid: a finite number")
