"""FindResult.write's CSV writer gives the very bytes pandas' ``to_csv(index=False)`` gives."""

import decimal
import math

import numpy as np
import pandas as pd
import pytest

from crm.demo import generate_contacts_frames
from scoring.files import find_in_file
from scoring.find import _write_csv
from scoring.settings import MatchSettings

AWKWARD_TEXT = ["plain", "", None, np.nan, pd.NA, "Иванов, Пётр", 'say "hi"', '"', '""', ",", "a\nb", "a\r\nb",
                "a\rb", "\n", " lead and trail ", "tab\there", "semi;colon", "ёЁ — «ёлка»", "emoji 🙂", "\x00nul",
                "back\\slash", "'single'", "#hash", "=1+2"]
AWKWARD_FLOATS = [0.1, 1e-07, 123456789.123, 1.0, -0.0, 0.0, np.nan, np.inf, -np.inf, 1 / 3, 5e-324,
                  1.7976931348623157e308, 1e16, 1e15, 123456.0, 0.0001, 0.00001, 2.5, -47.465, 1e22,
                  0.30000000000000004, 100.0, 1e-05, np.nan, 3.0]


def _same_bytes(frame: pd.DataFrame, tmp_path, **kw) -> bytes:
    """Write ``frame`` both ways; assert the bytes are equal and return them."""
    frame.to_csv(tmp_path / "pandas.csv", index=False)
    _write_csv(frame, tmp_path / "fast.csv", **kw)
    expected = (tmp_path / "pandas.csv").read_bytes()
    got = (tmp_path / "fast.csv").read_bytes()
    assert got == expected, _first_difference(expected, got)
    return got


def _first_difference(expected: bytes, got: bytes) -> str:
    at = next((i for i, (x, y) in enumerate(zip(expected, got)) if x != y), min(len(expected), len(got)))
    lo = max(at - 40, 0)
    return f"differs at byte {at}: pandas {expected[lo:at + 40]!r}, ours {got[lo:at + 40]!r}"


def _awkward_frame(n: int = 50) -> pd.DataFrame:
    text = (AWKWARD_TEXT * (n // len(AWKWARD_TEXT) + 1))[:n]
    floats = (AWKWARD_FLOATS * (n // len(AWKWARD_FLOATS) + 1))[:n]
    return pd.DataFrame({
        "id": np.arange(n, dtype=np.int64) * 7919 - 50_000,
        "probability": np.array(floats, dtype=np.float64),
        "is_primary": np.arange(n) % 3 == 0,
        "explanation": np.array(text, dtype=object),
        "weight": np.round(np.linspace(-30.123, 47.465, n), 3),
        "tier": np.array(["certain", "", "possible"] * n, dtype=object)[:n],
    })


def test_awkward_values_match_pandas(tmp_path):
    out = _same_bytes(_awkward_frame(), tmp_path).decode("utf-8")
    # the cases the writer must get right are really in the file
    for piece in ['"Иванов, Пётр"', '"say ""hi"""', '"a\nb"', ",a\rb,", ",0.1,", ",1e-07,", ",123456789.123,",
                  ",1.0,", ",True,", ",False,", ",,", ",inf,", "🙂"]:
        assert piece in out, piece


def test_objects_of_other_types_match_pandas(tmp_path):
    values = [[1, 2], {"a": 1, "b": "x,y"}, ("t", 1), 0.1, 1e-07, 12, True, b"bytes", np.float64(0.1), np.int64(3),
              np.str_("numpy, str"), decimal.Decimal("1.10"), decimal.Decimal("NaN"), pd.Timestamp("2024-01-02"),
              pd.NaT, None, math.nan, {"Ключ": "значение \"в кавычках\""}, [], {}]
    frame = pd.DataFrame({"obj": pd.Series(values, dtype=object), "n": np.arange(len(values))})
    out = _same_bytes(frame, tmp_path).decode("utf-8")
    assert '"[1, 2]",0' in out and "\n0.1,3\n" in out


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 100_000])
def test_random_frames_across_chunks(tmp_path, chunk_rows):
    rng = np.random.default_rng(chunk_rows)
    n = 500
    alphabet = list('ab ,"\n\rжЖ;\t') + ["", "😀"]
    text = ["".join(rng.choice(alphabet, size=rng.integers(0, 8))) for _ in range(n)]
    text = [None if i % 17 == 0 else s for i, s in enumerate(text)]
    floats = rng.standard_normal(n) * 10.0 ** rng.integers(-12, 20, size=n)
    floats[rng.random(n) < 0.1] = np.nan
    with np.errstate(over="ignore"):  # large values become inf in float16, as they should
        narrow = {"f32": floats.astype(np.float32), "f16": floats.astype(np.float16)}
    frame = pd.DataFrame({"a": rng.integers(-2**62, 2**62, size=n), "text": np.array(text, dtype=object),
                          "f": floats, **narrow, "longdouble": floats.astype(np.longdouble),
                          "u": rng.integers(0, 2**63, size=n, dtype=np.uint64),
                          "i32": rng.integers(-1000, 1000, size=n).astype(np.int32), "b": rng.random(n) < 0.5,
                          "rounded": np.round(rng.random(n), 6)})
    _same_bytes(frame, tmp_path, chunk_rows=chunk_rows)


def test_empty_frames_match_pandas(tmp_path):
    empty = _awkward_frame().iloc[:0]
    assert _same_bytes(empty, tmp_path) == b"id,probability,is_primary,explanation,weight,tier\n"
    _same_bytes(pd.DataFrame({"a": pd.Series([], dtype=object), "b": pd.Series([], dtype=float)}), tmp_path)
    _same_bytes(pd.DataFrame(), tmp_path)
    _same_bytes(pd.DataFrame(index=range(3)), tmp_path)


def test_awkward_headers_one_column_and_other_dtypes_match_pandas(tmp_path):
    frame = _awkward_frame()
    # column names that must be quoted, and a repeated one
    _same_bytes(frame.set_axis(["Фамилия, имя", 'say "x"', "a\nb", "tier", "tier", " "], axis=1), tmp_path)
    # one column: pandas quotes an empty record; the writer hands such frames to pandas
    _same_bytes(pd.DataFrame({"only": ["", None, "x", "a,b"]}), tmp_path)
    # extension and datetime columns and labels that are not strings go to pandas too
    others = pd.DataFrame({"Int64": pd.array([1, None, 3], dtype="Int64"),
                           "string": pd.array(["a", None, "б,в"], "string"), "cat": pd.Categorical(["x", None, "y"]),
                           "when": pd.to_datetime(["2024-01-01", None, "2024-03-04"]), "n": [1, 2, 3]})
    _same_bytes(others, tmp_path)
    _same_bytes(pd.DataFrame({1: [0.5, 2.0], 2.5: ["a", "b"]}), tmp_path)


def test_one_block_frames_and_filtered_index_match_pandas(tmp_path):
    # columns cut from one two-dimensional block are strided views
    _same_bytes(pd.DataFrame(np.arange(40, dtype=np.int64).reshape(10, 4), columns=list("abcd")), tmp_path)
    _same_bytes(pd.DataFrame(np.linspace(0, 1, 40).reshape(10, 4), columns=list("abcd")), tmp_path)
    frame = _awkward_frame(200)
    _same_bytes(frame[frame["is_primary"]].iloc[::-1], tmp_path)


def _fast_path_only(monkeypatch):
    """Make pandas' writer fail, so that a test shows the fast path wrote the files."""
    def refuse(*args, **kwargs):
        raise AssertionError("FindResult.write fell back to pandas' to_csv")

    monkeypatch.setattr(pd.DataFrame, "to_csv", refuse)


MAPPING = {"last_name": ["last_name"], "first_name": ["first_name"], "middle_name": ["middle_name"],
           "birthdate": ["birthdate"], "address": ["address"], "phone": ["phone"], "email": ["email"]}


def _demo_contacts(n: int) -> pd.DataFrame:
    """Demo contacts, one row each with the first phone and email, as the benchmark's input file."""
    contacts, comms, _truth = generate_contacts_frames(n, seed=3, duplicate_share=0.3)
    wide = contacts[["id", "last_name", "first_name", "middle_name", "address"]].copy()
    birth = pd.to_datetime(contacts["birthdate"], errors="coerce")
    wide["birthdate"] = birth.dt.strftime("%Y-%m-%d").where(birth.notna(), None)
    for kind in ("phone", "email"):
        wide[kind] = wide["id"].map(comms[comms["type"] == kind].groupby("entity_id")["value"].first())
    return wide


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_find_result_files_match_pandas(tmp_path, monkeypatch, suffix):
    wide = _demo_contacts(3000)
    source = tmp_path / f"contacts{suffix}"
    if suffix == ".parquet":  # integer ids
        wide.to_parquet(source, index=False)
    else:  # string ids, here with Cyrillic, a comma and quotes, into groups.csv and pairs.csv
        wide["id"] = [f'Ид "{i}", №' for i in wide["id"]]
        wide.to_csv(source, index=False)
    settings = MatchSettings.load(None)
    result = find_in_file(source, "contact", MAPPING, "id", settings)
    assert len(result.pairs) > 100 and result.groups["is_primary"].any() and len(result.blocking)
    expected = {}
    for name in ("groups", "pairs", "blocking"):
        getattr(result, name).to_csv(tmp_path / f"pandas_{name}.csv", index=False)
        expected[name] = (tmp_path / f"pandas_{name}.csv").read_bytes()
    with monkeypatch.context() as m:
        _fast_path_only(m)
        out = result.write(tmp_path / "out", settings)
    for name, want in expected.items():
        got = out[name].read_bytes()
        assert got == want, f"{name}.csv " + _first_difference(want, got)
    assert b'{""prior"": ' in expected["pairs"]  # quoted contributions were written
    if suffix == ".csv":
        assert '"Ид ""'.encode() in expected["pairs"] and '"contact-Ид ""'.encode() in expected["groups"]
