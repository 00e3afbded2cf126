"""Parquet files of large frames without a second copy of the frame in Arrow's memory."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)


def write_parquet(frame: pd.DataFrame, path: Path, chunk_rows: int = 50_000) -> None:
    """``frame.to_parquet(path, index=False)`` a chunk of rows at a time, the schema taken from the
    first chunk: converting the pairs of a million records to Arrow at once (their explanations are
    text) costs ~200 MB more at the flow's peak. Frames of other columns than numbers, datetimes and
    text (_plain), and those with a column empty in the first chunk, go to to_parquet whole."""
    if len(frame) <= chunk_rows or not _plain(frame):
        frame.to_parquet(path, index=False)
        release_arrow_memory()
        return
    first = pa.Table.from_pandas(frame.iloc[:chunk_rows], preserve_index=False)
    if not any(pa.types.is_null(f.type) for f in first.schema):
        try:
            with pq.ParquetWriter(path, first.schema) as writer:
                writer.write_table(first)
                first = None  # written: its memory can go
                for at in range(chunk_rows, len(frame), chunk_rows):
                    writer.write_table(pa.Table.from_pandas(frame.iloc[at:at + chunk_rows], schema=writer.schema,
                                                            preserve_index=False))
                    release_arrow_memory()
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            log.info("%s: written in one piece (its rows do not share one schema)", path)
    first = None
    frame.to_parquet(path, index=False)
    release_arrow_memory()


def _plain(frame: pd.DataFrame) -> bool:
    """Columns a chunk converts exactly as the whole frame would: text names; numpy numbers, booleans
    and datetimes; object columns of text only (a list or mixed column could be narrowed to the first
    chunk's type without an error)."""
    for name, dtype in frame.dtypes.items():
        if type(name) is not str or not isinstance(dtype, np.dtype):
            return False
        if dtype == object and pd.api.types.infer_dtype(frame[name], skipna=True) not in ("string", "empty"):
            return False
    return True


def release_arrow_memory() -> None:
    """Give the memory Arrow kept after a conversion back (its pool keeps freed pages for reuse, which
    at a million records sits on top of what the next step allocates)."""
    pa.default_memory_pool().release_unused()
