"""Parquet files of large frames without a second copy of the frame in Arrow's memory."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)


def write_parquet(frame: pd.DataFrame, path: Path, chunk_rows: int = 50_000) -> None:
    """``frame.to_parquet(path, index=False)`` a chunk of rows at a time, the schema taken from the
    first chunk: converting the pairs of a million records to Arrow at once (their explanations are
    text) costs ~200 MB more at the flow's peak. Falls back to to_parquet where a chunk would not fit
    the first one's schema (a column empty in the first chunk, or of another type later)."""
    first = pa.Table.from_pandas(frame.iloc[:chunk_rows], preserve_index=False)
    if len(frame) > chunk_rows and not any(pa.types.is_null(f.type) for f in first.schema):
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


def release_arrow_memory() -> None:
    """Give the memory Arrow kept after a conversion back (its pool keeps freed pages for reuse, which
    at a million records sits on top of what the next step allocates)."""
    pa.default_memory_pool().release_unused()
