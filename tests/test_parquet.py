"""matchers.parquet.write_parquet writes what DataFrame.to_parquet writes, a chunk of rows at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from matchers.parquet import write_parquet

N = 1003


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id_a": np.arange(N), "p": np.linspace(0, 1, N), "tier": ["certain"] * N,
        "text": [None if i % 7 == 0 else f"Иванов {i}" for i in range(N)], "flag": [i % 2 == 0 for i in range(N)],
        "ids": [[i, i + 1] for i in range(N)], "contributions": [{"name": 1.5 * i} for i in range(N)],
        "category": pd.Categorical(["a", "b", "c"] * (N // 3) + ["a"] * (N % 3)),
        "when": pd.date_range("2024-01-01", periods=N, freq="h")})


@pytest.mark.parametrize("case", ["plain", "empty in the first chunk", "few rows", "no rows"])
def test_chunked_file_reads_back_as_to_parquet_would(tmp_path, case):
    f = frame()
    if case == "empty in the first chunk":
        f["tier"] = [None] * 500 + ["probable"] * (N - 500)
    elif case == "few rows":
        f = f.iloc[:10]
    elif case == "no rows":
        f = f.iloc[:0]
    write_parquet(f, tmp_path / "chunked.parquet", chunk_rows=100)
    f.to_parquet(tmp_path / "whole.parquet", index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "chunked.parquet"), pd.read_parquet(tmp_path / "whole.parquet"))


@pytest.mark.parametrize("column", [[[1, 2]] * 500 + [[1.5]] * (N - 500), [1] * 500 + [4.0] * (N - 500),
                                    [{"a": 1}] * 500 + [{"a": 1, "b": 2}] * (N - 500)])
def test_columns_a_chunk_could_narrow_are_written_whole(tmp_path, column):
    f = frame().drop(columns=["ids", "contributions"]).assign(x=column)
    write_parquet(f, tmp_path / "chunked.parquet", chunk_rows=100)
    f.to_parquet(tmp_path / "whole.parquet", index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "chunked.parquet"), pd.read_parquet(tmp_path / "whole.parquet"))


def test_rows_of_another_type_later_fail_as_to_parquet_fails(tmp_path):
    f = frame().assign(text=["a"] * 500 + [1] * (N - 500))
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        f.to_parquet(tmp_path / "whole.parquet", index=False)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        write_parquet(f, tmp_path / "chunked.parquet", chunk_rows=100)


def test_a_frame_of_numbers_and_text_is_written_in_chunks(tmp_path):
    import pyarrow.parquet as pq

    f = frame().drop(columns=["ids", "contributions", "category"])
    write_parquet(f, tmp_path / "chunked.parquet", chunk_rows=100)
    assert pq.ParquetFile(tmp_path / "chunked.parquet").num_row_groups == 11  # a row group per chunk
    f.to_parquet(tmp_path / "whole.parquet", index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "chunked.parquet"), pd.read_parquet(tmp_path / "whole.parquet"))
