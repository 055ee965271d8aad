"""The scope keys every claim of a test grid needs (`tests:` and `regime:`, required by the parser)."""

SCOPE = {"tests": "source", "regime": "a small CPU test"}
