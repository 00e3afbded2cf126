"""Benchmark input files: contacts like the demo's, one row per contact, and the truth.

``crm.demo.generate_contacts_frames(n, seed)`` makes the contacts (Russian and English, about 15%
duplicates with the demo's noise and hard negatives), their phones and e-mails as long rows, and the
truth. Each size is written to ``bench/work/``:

- ``contacts_<n>.parquet``: id, first_name, last_name, middle_name, birthdate, address, phone, phone2,
  email, email2 (the first two phones and e-mails of the contact in the CRM's order; a third one is
  left out, and counted in the meta file);
- ``truth_<n>.parquet``: id, cluster (records with equal clusters are one real person);
- ``contacts_<n>.json``: seed, counts and the generator's digest. A file made by the same generator
  code, seed and size is reused.

    python -m bench.data --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

from bench.common import ROOT, WORK, now_iso

log = logging.getLogger(__name__)

COLUMNS = ["id", "first_name", "last_name", "middle_name", "birthdate", "address", "phone", "phone2", "email",
           "email2"]
# role -> column, for `crm-dedup find --map` and RoleTable.from_frame
MAPPING = {"first_name": ["first_name"], "last_name": ["last_name"], "middle_name": ["middle_name"],
           "birthdate": ["birthdate"], "address": ["address"], "phone": ["phone", "phone2"],
           "email": ["email", "email2"]}
SEED = 42


def generator_digest() -> str:
    """Changes whenever the generator's code changes, so a stale file is made again."""
    return hashlib.sha256((ROOT / "crm" / "demo.py").read_bytes()).hexdigest()[:16]


def paths(n: int, folder: Path = WORK) -> dict[str, Path]:
    return {"contacts": folder / f"contacts_{n}.parquet", "truth": folder / f"truth_{n}.parquet",
            "meta": folder / f"contacts_{n}.json"}


def _first_two(comms, kind: str, ids):
    """The first and second value of one communication type per contact, and how many had more."""
    rows = comms[comms["type"] == kind][["entity_id", "value"]]
    rows = rows[rows["value"].notna() & (rows["value"].astype(str).str.strip() != "")]
    rank = rows.groupby("entity_id").cumcount()
    wide = rows.assign(rank=rank)[rank < 2].pivot(index="entity_id", columns="rank", values="value")
    wide = wide.reindex(index=ids, columns=[0, 1])
    return wide, int((rank == 2).sum())


def build_frames(n: int, seed: int = SEED, duplicate_share: float = 0.15):
    """The wide contacts table, the truth and counts, from the demo generator."""
    import pandas as pd  # imported here: the harness imports this module and must stay small

    from crm.demo import generate_contacts_frames

    contacts, comms, truth = generate_contacts_frames(n, seed, duplicate_share=duplicate_share)
    ids = pd.Index(contacts["id"].to_numpy(), name="id")
    phones, more_phones = _first_two(comms, "phone", ids)
    emails, more_emails = _first_two(comms, "email", ids)
    birth = pd.to_datetime(contacts["birthdate"], errors="coerce")
    wide = pd.DataFrame({
        "id": contacts["id"].to_numpy(),
        "first_name": contacts["first_name"].to_numpy(),
        "last_name": contacts["last_name"].to_numpy(),
        "middle_name": contacts["middle_name"].to_numpy(),
        "birthdate": birth.dt.strftime("%Y-%m-%d").where(birth.notna(), None).to_numpy(),
        "address": contacts["address"].to_numpy(),
        "phone": phones[0].to_numpy(), "phone2": phones[1].to_numpy(),
        "email": emails[0].to_numpy(), "email2": emails[1].to_numpy(),
    })
    for col in COLUMNS[1:]:
        wide[col] = wide[col].astype(object).where(wide[col].notna(), None)
    truth_frame = pd.DataFrame({"id": truth["entity_id"].to_numpy(), "cluster": truth["cluster"].astype(str).to_numpy()})
    sizes = truth_frame["cluster"].value_counts()
    counts = {"records": int(len(wide)), "entities": int(len(sizes)),
              "true_pairs": int((sizes * (sizes - 1) // 2).sum()),
              "records_in_true_groups": int(sizes[sizes > 1].sum()),
              "third_phones_left_out": more_phones, "third_emails_left_out": more_emails}
    return wide, truth_frame, counts


def ensure(n: int, seed: int = SEED, folder: Path = WORK, force: bool = False) -> dict:
    """Write the files for ``n`` contacts unless the same generator already made them; return the meta."""
    folder.mkdir(parents=True, exist_ok=True)
    p = paths(n, folder)
    digest = generator_digest()
    if not force and all(x.exists() for x in p.values()):
        meta = json.loads(p["meta"].read_text())
        if meta.get("generator_digest") == digest and meta.get("seed") == seed:
            log.info("reusing %s", p["contacts"])
            return meta
    start = time.perf_counter()
    wide, truth, counts = build_frames(n, seed)
    generate_s = time.perf_counter() - start
    wide.to_parquet(p["contacts"], index=False)
    truth.to_parquet(p["truth"], index=False)
    meta = {"size": n, "seed": seed, "duplicate_share": 0.15, "generator": "crm.demo.generate_contacts_frames",
            "generator_digest": digest, "generated_at": now_iso(), "generate_s": round(generate_s, 2),
            **counts, "contacts": str(p["contacts"]), "truth": str(p["truth"])}
    p["meta"].write_text(json.dumps(meta, indent=2))
    log.info("wrote %s (%d records) in %.1f s", p["contacts"], n, generate_s)
    return meta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated record counts")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--folder", type=Path, default=WORK)
    ap.add_argument("--force", action="store_true", help="generate again even when the files are current")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    for n in (int(s) for s in args.sizes.split(",") if s):
        meta = ensure(n, args.seed, args.folder, args.force)
        print(json.dumps(meta))


if __name__ == "__main__":
    main()
