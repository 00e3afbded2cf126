# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
# Parameters: a run folder (data/runs/<run id>, or a `crm-dedup find --out` folder), or a database
# whose latest completed run to open. RUN_FOLDER None: $CRM_DEDUP_RUN (a run folder or run id), else
# the latest run of DB_URL; DB_URL None: $CRM_DEDUP_DB, else sqlite:///data/crm.db. The end of
# `crm-dedup run` prints the command that opens this notebook on that run:
#   CRM_DEDUP_RUN=/path/to/data/runs/<run id> CRM_DEDUP_DB=<url> .venv/bin/jupyter lab notebooks/match_report.ipynb
RUN_FOLDER = None
DB_URL = None

# %% [markdown]
# # Match report
#
# Is the matching right? Counts per tier, the score distribution against the thresholds, what the
# pairs matched on, the groups and why each primary won, then the pairs the model is least sure
# about with the evidence of each comparison. Where the truth is known (the demo CRM), precision
# and recall against the threshold. All logic lives in `scoring.report`; this notebook only shows.

# %%
# %matplotlib inline
import pandas as pd
from IPython.display import display

from scoring import report

pd.set_option("display.max_colwidth", 120)
run = report.open_run(RUN_FOLDER, DB_URL)
run

# %% [markdown]
# ## Counts per entity type and tier

# %%
display(run.overview())
run.counts()

# %% [markdown]
# ## Score distribution
# Match weight in bits (log2 odds). Pairs at or above *probable* form groups; *certain* may be merged
# without a person if the auto-merge policy allows.

# %%
report.score_chart(run.pair_scores(), run.thresholds)

# %% [markdown]
# ## What the pairs matched on
# Comparisons at their top level (same phone, same email, same surname...), and first names that
# agree only after nicknames or transliteration (Саша / Александр, Ivanov / Иванов).

# %%
criteria = run.criteria()
display(report.criteria_chart(criteria))
criteria

# %%
run.blocking_rules()

# %% [markdown]
# ## Groups and their primary records

# %%
sizes = run.group_sizes()
display(report.group_size_chart(sizes))
sizes

# %%
display(report.primary_reason_chart(run.primary_reasons()))
run.primary_reason_counts()

# %%
run.groups().sort_values("size", ascending=False).head(10)

# %% [markdown]
# ## Pairs to look at first
# The pairs closest to the probable threshold. The waterfall starts at the prior (how likely any
# candidate pair is a duplicate) and adds the evidence of each comparison: green for, red against.
# Pairs a hold rule keeps at possible (only names agree, different first names...) are not model
# calls near the line: they are listed apart below, the strongest by the model's own weight first.

# %%
uncertain = run.uncertain_pairs(20)
uncertain

# %%
for row in run.uncertain_pairs(3, distinct=True).itertuples(index=False):
    steps = run.waterfall(row.id_a, row.id_b, row.entity_type)
    display(report.waterfall_chart(steps, f"{row.entity_type} {row.id_a} / {row.id_b}", row.probability))
    print(row.explanation)

# %%
run.held_pairs().head(20)

# %% [markdown]
# ## Pairs just below the threshold
# The duplicates a lower *probable* threshold would add, closest to it first (`side="above"`: the
# pairs a higher one would drop; `threshold="certain"`: the line of the auto-merge).

# %%
run.uncertain_pairs(20, side="below")

# %% [markdown]
# ## Why two records matched
# Set `PAIR` to two record ids and their entity type, e.g. `(1245, 1266, "contact")` (ids as
# `crm-dedup groups` prints them, `#1245` too). Two records of one group may have no pair of their
# own (they are linked through other members): `run.group_pairs(GROUP_ID)` lists the pairs that hold
# a group together. `None`: the pairs of the largest group.

# %%
PAIR = None
if PAIR:
    row = run.pair(*PAIR)
    display(report.waterfall_chart(run.waterfall(*PAIR), f"{PAIR[-1]} {row.id_a} / {row.id_b}", row.probability))
    print(row.explanation)
elif len(run.groups()):
    largest = run.groups().sort_values(["size", "score"], ascending=[False, False]).iloc[0]
    print(f"group {largest.group_id}: {', '.join(map(str, largest.member_ids))}")
    display(run.group_pairs(largest.group_id, largest.entity_type)[["id_a", "id_b", "probability", "tier",
                                                                     "explanation"]])

# %% [markdown]
# ## Left out of their group
# Records probable or better with a member of a group but kept out of it (a hold rule, or a "not
# duplicates" mark): merging the group leaves them behind. `crm-dedup include GROUP_ID ID` adds one.

# %%
run.left_out()

# %% [markdown]
# ## Against the known truth
# Pairwise precision and recall if the groups were the pairs at or above each threshold. Shown only
# when the truth is known (the demo CRM's `demo_truth` table, or a truth passed to `open_run`).

# %%
if run.has_truth:
    display(run.evaluation())
    pr = run.precision_recall()
    display(report.precision_recall_chart(pr, run.thresholds))
    # (as `crm-dedup evaluate` prints it: every digit of a threshold, four decimals, the settings named)
    display(report.threshold_rows(pr, run.thresholds)[
        ["entity_type", "threshold", "precision", "recall", "f1", "held_pairs", "setting"]])
    print(report.HELD_NOTE.format(possible=run.thresholds["possible"]))
else:
    print(run.no_truth_reason())

# %% [markdown]
# ## Leads that match an existing client

# %%
run.lead_clients().head(20)

# %% [markdown]
# ## The model: evidence per comparison level

# %%
run.model_weights()

# %% [markdown]
# ## Compared with another run
# After a change of settings (a threshold, say) and a new run: which groups are new, gone or
# changed, which pairs changed tier, and precision and recall of both where the truth is known.
# `COMPARE_WITH`: a run folder or run id; `None`: the run before this one in its database.

# %%
COMPARE_WITH = None
other = report.Run.resolve(COMPARE_WITH, run.db_url) if COMPARE_WITH else run.previous()
if other is None:
    print("No earlier run to compare with: set COMPARE_WITH to a run folder or a run id (`crm-dedup runs`).")
else:
    print(f"{other.run_id} (before) -> {run.run_id} (after)")
    display(report.compare_runs(other, run))
    display(report.changed_groups(other, run).head(20))
    display(report.changed_pairs(other, run).head(20))

# %% [markdown]
# ## CSV for a spreadsheet
# `EXPORT_TO`: a folder for the run's records with their groups, pairs (with both records' names),
# groups and left-out records as CSV (UTF-8 with a BOM, which Excel reads; `sep=";"` where the
# spreadsheet expects semicolons). `crm-dedup evaluate --groups FOLDER/contact/groups.csv` reads them.

# %%
EXPORT_TO = None
if EXPORT_TO:
    for name, path in run.to_csv(EXPORT_TO).items():
        print(path)
