"""Write the selected rows of a dataset back to disk: JSONL, parquet or ``save_to_disk``.

:func:`write_back` maps the selection's stats columns to dataset rows through
``stats.sample_ids`` (the row index, or an id column), writes those rows in selection
order and an index file ``<out>.index.json`` (indices, sample ids, source, stats checksum).
Both appear atomically: they are written under temporary names beside the target and
renamed into place; an existing target is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError
from ..stats import GradientStats, write_text_atomic
from .inputs import read_records

FORMATS = ("jsonl", "parquet", "save_to_disk")


def output_format(out: str | Path) -> str:
    """``jsonl`` for .jsonl/.json, ``parquet`` for .parquet, ``save_to_disk`` for a path without suffix."""
    suffix = Path(out).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    if suffix == "":
        return "save_to_disk"
    raise InvalidParameterError(f"--write-back {out}: unknown format {suffix!r}; use .jsonl, .parquet or a "
                                "directory name (save_to_disk).")


def index_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".index.json")


def selected_rows(stats: GradientStats, indices: Sequence[int], data: str | Path, text_field: str = "text",
                  id_field: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``data`` that the stats columns ``indices`` describe, in that order."""
    rows, _ = read_records(data, text_field)
    idx = np.asarray(indices, dtype=np.int64)
    ids = stats.sample_ids if stats.sample_ids is not None else np.arange(stats.n)
    chosen = ids[idx]
    if id_field is not None:
        where = {}
        for i, r in enumerate(rows):
            if isinstance(r, dict) and id_field in r:
                where[r[id_field]] = i
        pos = []
        for sid in chosen.tolist():
            if sid not in where:
                raise InvalidInputError(f"{data}: no row with {id_field} = {sid!r} (an id in the stats); is this the "
                                        "dataset the stats were extracted from?")
            pos.append(where[sid])
    else:
        if chosen.dtype.kind not in "iu":
            raise InvalidInputError("the stats' sample ids are strings (an id column); pass --id-field to find the rows.")
        if len(rows) != stats.n and stats.sample_ids is None:
            raise InvalidInputError(f"{data} has {len(rows)} rows but the stats describe N={stats.n} samples.")
        bad = chosen[(chosen < 0) | (chosen >= len(rows))]
        if bad.size:
            raise InvalidInputError(f"{data} has {len(rows)} rows but the stats name row {int(bad[0])}; is this the "
                                    "dataset the stats were extracted from?")
        pos = chosen.tolist()
    return [rows[int(p)] for p in pos]


def write_back(rows: list[dict[str, Any]], out: str | Path, index_record: dict[str, Any],
               overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``rows`` to ``out`` (format from its suffix) and ``index_record`` to ``<out>.index.json``."""
    out = Path(out)
    fmt = output_format(out)
    idx_file = index_path(out)
    for target in (out, idx_file):
        if target.exists() and not overwrite:
            raise InvalidParameterError(f"{target} exists; choose another --write-back path or pass --overwrite.")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            if fmt == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.Table.from_pylist(rows), tmp / "rows.parquet")
                os.replace(tmp / "rows.parquet", out)
            else:
                import datasets

                datasets.Dataset.from_list(rows).save_to_disk(str(tmp / "ds"))
                if out.exists():
                    shutil.rmtree(out)
                os.replace(tmp / "ds", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    write_text_atomic(idx_file, json.dumps(index_record, indent=1))
    return out, idx_file
