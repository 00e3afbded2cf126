"""Comparisons split into chunks of candidate pairs, so that Dask workers (through prefect-dask)
can compare them in parallel. Every candidate pair lands in exactly one chunk; the chunks are put
back in order, so the result is the same as comparing everything in one process.

The chunks and the normalised records travel as files in the run folder (a shared disk, or the
same machine), never as task arguments.

(Not named ``distributed``: Prefect puts the flows' folder, pipelines/, first on sys.path when it
loads a deployment's entrypoint, and a module of that name would hide Dask's own package.)
"""

from __future__ import annotations

import json
import pickle
import socket
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from crm.store import Store
from matchers.blocking import find_candidates
from matchers.compare import ComparisonVectors, compare, comparisons_for
from matchers.prepare import Prepared, prepare
from pipelines.settings import Settings


class SchedulerUnreachable(RuntimeError):
    """pipeline.dask.address names a scheduler that does not answer."""


def check_scheduler(address: str | None, timeout: float = 5.0) -> None:
    """Raise SchedulerUnreachable when nothing accepts a connection at ``address`` (None: a local
    cluster, nothing to check). Checked before a run starts: Dask's client would retry for ~60 s
    and print a traceback per try."""
    if not address:
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or not parts.hostname:
        return  # (ucx, inproc...: Dask's own client says what is wrong)
    try:
        port = parts.port or 8786
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise SchedulerUnreachable(
            f"the Dask scheduler at {address} (pipeline.dask.address in the settings) cannot be reached: {exc}. "
            "Start it (`dask scheduler`, with workers), or leave the address out to run a local cluster."
        ) from None


def split_step(db: str | None, entity: str, folder: str, settings_path: str, incremental: bool = False) -> list[str]:
    """Normalise and block; write the prepared records and one file per chunk of candidate pairs."""
    from pipelines.steps import _incremental_inputs, run_table, take_normalised

    settings = Settings.load(settings_path)
    store = Store(db, must_exist=True)
    table = run_table(store, entity, folder)
    known = take_normalised(folder, entity)  # what the quality check normalised
    work = Path(folder) / entity / "work"
    work.mkdir(parents=True, exist_ok=True)
    inputs: dict = {}
    built_on = _incremental_inputs(store, table, folder, settings, inputs, known) if incremental else None
    if built_on is not None:  # (for find_step, which scores the pairs: what this run is built on)
        p = inputs["prepared"]
        (work / "incremental.json").write_text(json.dumps(built_on))
    else:
        (work / "incremental.json").unlink(missing_ok=True)  # (left by a try of this step that went otherwise)
        p = prepare(table, region=settings.match.region, provider_rules=settings.match.provider_rules, known=known)
    del known
    p.save(work)
    cand = find_candidates(p, cap=settings.match.block_cap, neighbourhood_window=settings.match.neighbourhood_window)
    size = settings.pipeline.dask.chunk_pairs
    paths = []
    for i, start in enumerate(range(0, max(len(cand), 1), size)):
        path = work / f"chunk_{i:05d}.npz"
        np.savez(path, a=cand.a[start:start + size], b=cand.b[start:start + size])
        paths.append(str(path))
    return paths


def compare_chunk_step(chunk_path: str) -> str:
    """Compare one chunk of pairs (runs on a Dask worker); writes its comparison vectors."""
    work = Path(chunk_path).parent
    p = Prepared.load(work)
    pairs = np.load(chunk_path)
    cv = compare(p, pairs["a"], pairs["b"], comparisons_for(p))
    out = Path(chunk_path).with_suffix(".cv.pkl")
    with open(out, "wb") as fh:
        pickle.dump({"levels": cv.levels, "tf": cv.tf, "shown": cv.shown, "a": pairs["a"], "b": pairs["b"]}, fh)
    return str(out)


def vectors_from_chunks(result_paths: list[str]):
    """A ``compare_pairs`` function for find_duplicates that returns the chunks' vectors, checking that
    they cover exactly the pairs asked for, in order."""

    def load(p: Prepared, a: np.ndarray, b: np.ndarray, comparisons) -> ComparisonVectors:
        parts = []
        for path in sorted(result_paths):
            with open(path, "rb") as fh:
                parts.append(pickle.load(fh))
        ca = np.concatenate([x["a"] for x in parts]) if parts else np.empty(0, np.int64)
        cb = np.concatenate([x["b"] for x in parts]) if parts else np.empty(0, np.int64)
        if not (np.array_equal(ca, a) and np.array_equal(cb, b)):
            raise RuntimeError("The compared chunks do not match the candidate pairs: the data changed between "
                               "the split and the scoring steps; run the flow again.")
        shown = {}
        for name in parts[0]["shown"] if parts else []:
            shown[name] = np.concatenate([x["shown"][name] for x in parts])
        levels = np.concatenate([x["levels"] for x in parts]) if parts else np.empty((0, len(comparisons)), np.int8)
        tf = np.concatenate([x["tf"] for x in parts]) if parts else np.empty((0, len(comparisons)), np.int32)
        return ComparisonVectors(comparisons, levels, tf, shown)

    return load


def prepared_from_work(folder: str, entity: str) -> Prepared:
    return Prepared.load(Path(folder) / entity / "work")
