"""Text datasets from files: one sample per row, its index = its row (line) number from 0.

Formats, chosen by the path:

* a directory — a ``datasets`` dataset written by ``Dataset.save_to_disk`` (``load_from_disk``);
* ``.jsonl`` / ``.ndjson`` — one JSON object per line (``Dataset.to_json`` writes this);
* ``.json`` — JSON Lines as above, or one JSON array of objects;
* ``.parquet`` — a table (``Dataset.to_parquet``);
* anything else — plain text, one sample per line: line ``i + 1`` is sample ``i``.

Blank lines are refused (naming the line), never skipped, so an index is always a line
number; a sample that should be empty is an empty string in a JSON/parquet row. Texts come
from ``text_field`` (default ``text``); ids from ``id_field`` when given, else the row index.
Every problem raises :class:`~direct_opt.errors.ExtractionError` naming the file, the row and the fix;
a ``group_field`` (validation group labels) that the rows lack or leave empty raises
:class:`~direct_opt.errors.InvalidParameterError` (the option names the wrong field).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExtractionError, InvalidParameterError

JSON_LINES = (".jsonl", ".ndjson")


@dataclass
class TextRows:
    """Texts of a file, their ids (N,) (row indices unless an id column was named) and group
    labels (N,) (None unless a group column was named)."""

    path: Path
    texts: list[str]
    ids: np.ndarray
    format: str
    groups: np.ndarray | None = None


def read_records(path: str | Path, text_field: str = "text") -> tuple[list[Any], str]:
    """(rows, format) of one file or ``save_to_disk`` directory: every row as it is stored (a
    text file's line ``i + 1`` is row ``i`` = ``{text_field: line}``)."""
    path = Path(path)
    if not path.exists():
        raise ExtractionError(f"{path}: no such file or directory.")
    if path.is_dir():
        return _read_disk(path), "save_to_disk"
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path), "parquet"
    text = _read_utf8(path)
    if path.suffix.lower() in JSON_LINES or (path.suffix.lower() == ".json" and not text.lstrip().startswith("[")):
        return _parse_json_lines(path, text), "jsonl"
    if path.suffix.lower() == ".json":
        return _parse_json_array(path, text), "json"
    return [{text_field: line} for line in _text_lines(path, text)], "text"


def read_rows(path: str | Path, text_field: str = "text", id_field: str | None = None,
              group_field: str | None = None) -> TextRows:
    """The texts, ids and (``group_field``) group labels of one file or ``save_to_disk``
    directory (see the module docstring)."""
    rows, fmt = read_records(path, text_field)
    out = _columns(Path(path), rows, text_field, id_field, fmt)
    if group_field is not None:
        out.groups = _group_labels(Path(path), rows, group_field, fmt)
    return out


def _group_labels(path: Path, rows: list[Any], field: str, fmt: str) -> np.ndarray:
    """(N,) labels (integers or strings, none missing or empty) of column ``field``."""
    if fmt == "text":
        raise InvalidParameterError(
            f"--val-groups {field}: {path} is a text file (one sample per line), which has no fields; write the "
            "validation set as JSONL, parquet or a save_to_disk directory with a text and a group column.")
    labels = []
    for i, row in enumerate(rows):
        where = f"{path}:{i + 1}" if fmt == "jsonl" else f"{path} row {i}"
        if field not in row:
            raise InvalidParameterError(f"--val-groups {field}: {where} has no field {field!r}; its fields are "
                                        f"{sorted(row)}.")
        value = row[field]
        if value is None or value == "" or isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidParameterError(f"--val-groups {field}: {where} has group label {value!r}; every validation "
                                        "example needs a non-empty integer or string label (its task).")
        labels.append(value)
    if len({type(v) for v in labels}) > 1:
        raise InvalidParameterError(f"--val-groups {field}: {path} mixes integer and string labels; use one kind.")
    return np.asarray(labels, dtype=np.int64 if labels and isinstance(labels[0], int) else str)


def _read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ExtractionError(f"{path}: not UTF-8 text (byte {exc.start}, line {line}: {exc.reason}); "
                              "convert it to UTF-8 (e.g. iconv -t UTF-8).") from None


def _text_lines(path: Path, text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it starts no sample
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    for no, ln in enumerate(lines, 1):
        if not ln.strip():
            raise ExtractionError(
                f"{path}:{no}: blank line. In a text file every line is one sample and its index is its line "
                "number - 1, so blank lines are not skipped; remove them, or use JSONL for empty samples.")
    return lines


def _parse_json_lines(path: Path, text: str) -> list[Any]:
    rows = []
    for no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            if no == len(text.split("\n")):  # trailing newline
                continue
            raise ExtractionError(f"{path}:{no}: blank line in JSON Lines; every line must be one JSON object "
                                  "(row index = line number - 1).")
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ExtractionError(f"{path}:{no}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
    return rows


def _parse_json_array(path: Path, text: str) -> list[Any]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractionError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}).") from None
    if not isinstance(rows, list):
        raise ExtractionError(f"{path}: expected a JSON array of objects or JSON Lines, got a {type(rows).__name__}.")
    return rows


def _read_parquet(path: Path) -> list[Any]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise ExtractionError(f"{path}: not a readable parquet file ({exc}).") from None


def _read_disk(path: Path) -> list[Any]:
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("reading a save_to_disk directory needs the datasets package: pip install datasets") from exc
    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise ExtractionError(f"{path}: a directory but not a dataset written by Dataset.save_to_disk ({exc}).") from None
    if isinstance(ds, datasets.DatasetDict):
        raise ExtractionError(f"{path} holds a DatasetDict with splits {list(ds)}; pass one split's directory "
                              f"(e.g. {path / list(ds)[0]}).")
    return ds.to_list()


def _columns(path: Path, rows: list[Any], text_field: str, id_field: str | None, fmt: str) -> TextRows:
    texts: list[str] = []
    ids: list[Any] = []
    for i, row in enumerate(rows):
        where = f"{path}:{i + 1}" if fmt == "jsonl" else f"{path} row {i}"
        if not isinstance(row, dict):
            raise ExtractionError(f"{where}: expected an object with field {text_field!r}, got "
                                  f"{type(row).__name__} {json.dumps(row)[:40]}.")
        if text_field not in row:
            raise ExtractionError(f"{where}: no field {text_field!r} (fields: {sorted(row)[:8]}); use --text-field.")
        if not isinstance(row[text_field], str):
            raise ExtractionError(f"{where}: field {text_field!r} is {type(row[text_field]).__name__}, not text.")
        texts.append(row[text_field])
        if id_field is not None:
            if id_field not in row or not isinstance(row[id_field], (int, str)) or isinstance(row[id_field], bool):
                raise ExtractionError(f"{where}: id field {id_field!r} missing or not an integer/string.")
            ids.append(row[id_field])
    if id_field is None:
        arr = np.arange(len(texts), dtype=np.int64)
    else:
        kinds = {type(v) for v in ids}
        if len(kinds) > 1:
            raise ExtractionError(f"{path}: id field {id_field!r} mixes integers and strings.")
        arr = np.asarray(ids, dtype=np.int64 if kinds == {int} else str)
        uniq, counts = np.unique(arr, return_counts=True)
        if uniq.size != arr.size:
            raise ExtractionError(f"{path}: id field {id_field!r} repeats {uniq[counts > 1][0]!r}; ids must be unique.")
    return TextRows(path, texts, arr, fmt)
