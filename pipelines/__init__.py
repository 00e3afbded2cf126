"""Prefect flows and deployments, and the CLI: the only package that imports Prefect."""

import sys

# Prefect imports jsonschema, whose format checks import rfc3987_syntax when it is installed (Jupyter's
# packages bring it), and that module builds a Lark parser of the IRI grammar at import: 2-4 s of every
# process that imports Prefect (each command, Prefect's temporary server), for a check nothing here
# uses. Marked absent before Prefect is imported, jsonschema goes without that one check (as it does
# wherever the package is not installed). A process that imported jsonschema first is left as it is.
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)
