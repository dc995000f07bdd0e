"""Reading YAML files from folders that may come from anywhere (exemplar folders).

:func:`load_yaml` reads only a regular file (a link is followed, but a device, FIFO, socket or
folder is refused), at most :data:`MAX_FILE_BYTES`, with PyYAML's safe loader, refusing a key
given twice in one mapping, nesting deeper than :data:`MAX_NESTING` levels, and aliases
(``*name``), which would let a few kB stand for gigabytes. Every refusal is an
:class:`~mlmatch.errors.ExemplarError` that names the file (and the line, for YAML).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from mlmatch.errors import ExemplarError

__all__ = ["MAX_FILE_BYTES", "MAX_NESTING", "load_yaml"]

# The bundled files are 1 to 60 kB; the limit keeps a wrong or hostile file (a link to
# /dev/zero, a dump of a database) from filling memory before YAML ever sees it.
MAX_FILE_BYTES = 4 * 1024 * 1024
# A category file nests four levels (fields, groups, a group, its exemplars); far deeper nesting
# is no exemplar file, and would exhaust the YAML composer's recursion.
MAX_NESTING = 32


def load_yaml(path: Path) -> Any:
    """The YAML document in the file at ``path``, read within the limits above."""
    try:
        return yaml.load(_read_bytes(path).decode("utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as error:
        raise ExemplarError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ExemplarError(f"{path}: invalid YAML at {where}{problem}") from None


def _read_bytes(path: Path) -> bytes:
    """The bytes of the regular file at ``path`` (links followed), refused past MAX_FILE_BYTES.

    Opened without blocking, so a FIFO cannot hang the open, and checked again once open, so a
    file swapped for a device in between is refused all the same.
    """
    try:
        _check_kind(path, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as error:
        raise ExemplarError(
            f"{path} cannot be read ({error.strerror or error}); check the file and its permissions"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        _check_kind(path, os.fstat(fd).st_mode)
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ExemplarError(
            f"{path} is larger than {MAX_FILE_BYTES:,} bytes, the limit for one exemplar file "
            "(the bundled ones are under 60 kB); check that it is the file you meant"
        )
    return data


def _check_kind(path: Path, mode: int) -> None:
    """Refuse anything but a regular file, saying what it is and where a link led."""
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    ]
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    via = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise ExemplarError(
        f"{path}{via} is {kind}; exemplar files must be regular YAML files, so replace it "
        "with one or remove it from the folder"
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe YAML loader, with limits for files from anywhere.

    It refuses a mapping that gives one key twice (YAML keeps the last), nesting deeper than
    :data:`MAX_NESTING`, and aliases: ``*name`` stands for a whole earlier node, so a file of a
    few kB could stand for gigabytes of text.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                f"the alias *{event.anchor} is not allowed in exemplar files; write the value out",
                mark,
            )
        if self._depth >= MAX_NESTING:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested deeper than {MAX_NESTING} levels; an exemplar file nests four",
                mark,
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
