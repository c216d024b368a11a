"""``python -m torch2ort``."""

from torch2ort.cli import entry

entry()
