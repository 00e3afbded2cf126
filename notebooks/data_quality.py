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
# Parameters: a run folder written by `crm-dedup run` (data/runs/<run id>), or a database whose
# latest completed run to open. RUN_FOLDER None: $CRM_DEDUP_RUN (a run folder or run id), else the
# latest run of DB_URL; DB_URL None: $CRM_DEDUP_DB, else sqlite:///data/crm.db. For one run:
#   CRM_DEDUP_RUN=/path/to/data/runs/<run id> CRM_DEDUP_DB=<url> .venv/bin/jupyter lab notebooks/data_quality.ipynb
RUN_FOLDER = None
DB_URL = None

# %% [markdown]
# # Data quality
#
# Per entity type, field and source: empty values, invalid phones and emails, placeholders
# (+7 (000) 000-00-00, test@test.ru), values shared by suspiciously many records (an office
# switchboard, info@ addresses). Bad data explains many missed and false matches. All logic lives in
# `scoring.report`; this notebook only shows.

# %%
# %matplotlib inline
import pandas as pd
from IPython.display import display

from scoring import report

pd.set_option("display.max_colwidth", 120)
run = report.open_run(RUN_FOLDER, DB_URL)
run

# %%
for entity, text in run.quality_text().items():
    print(text)

# %% [markdown]
# ## Per field

# %%
fields = run.quality_fields()
display(report.quality_chart(fields))
fields

# %% [markdown]
# ## Per source

# %%
sources = run.quality_sources()
display(report.quality_source_chart(sources))
sources

# %% [markdown]
# ## Completeness per record

# %%
report.completeness_chart(run.quality_records())

# %% [markdown]
# ## Values shared by suspiciously many records
# An office switchboard or an info@ address links people who are not duplicates; blocking skips
# such values and the model gives them less weight.

# %%
run.quality_shared()

# %% [markdown]
# ## Everything the quality check wrote

# %%
for name, frame in run.quality().items():
    print(name)
    display(frame.head(20))
