"""Every MLflow alias and tag name lmforge writes or reads, in one place.

These strings are a contract with data that outlives a release: a team's tracking server
holds versions tagged by older lmforge versions, and the MLflow UI shows them to people.
Spelling them once means a rename is one deliberate change here (plus a migration), never
a silent mismatch between the stage that writes a tag and the command that reads it.
"""

from __future__ import annotations

# Registered-model aliases.
CHAMPION = "champion"
"""The version `lmforge serve NAME` follows; moved only by `registry.lifecycle`."""
CHALLENGER = "challenger"
"""A registered version that failed the gate, kept for comparison and manual promotion."""

# Registered-model tags.
HISTORY_TAG = "lmforge.previous_champions"
"""JSON list of earlier champion versions, oldest first: what `rollback` walks back."""

# Model-version tags (HASH_TAG and RUN_ID_TAG are also set on the MLflow run).
ARCHIVED_TAG = "lmforge.archived"
"""`"true"` on a retired version; a tag because MLflow stages are deprecated."""
ARCHIVED = "true"
HASH_TAG = "lmforge.model_hash"
"""Content hash of the trained model folder: `register` recognises a model it already logged."""
RUN_ID_TAG = "lmforge.run_id"
"""The lmforge run (folder under `runs/`) that trained the version; `monitor` reads its data."""
TASK_TAG = "task"
"""classification | generation | language-modeling: how a server loads the version."""
KIND_TAG = "lmforge.model_kind"
"""transformer | linear | ensemble (`models/kinds.py`): what the version's `model/` folder holds."""
METRIC_TAG_PREFIX = "test_"
"""`test_<metric>`: headline test metrics shown by `lmforge models show`."""
GATE_TAG = "lmforge.gate"
"""The gate's failure reasons, or `passed`."""
CHECK_TAG = "lmforge.gate.champion_check"
"""The champion check that made a version champion, repeated when the champion is rerun."""
SCORE_TAG = "lmforge.score.{test}.{metric}"
"""A version's score on one test set (by content hash), so the gate need not rescore it."""
IMPORTED_TAG = "lmforge.imported_from"
"""The tarball a version was imported from (`lmforge models import`)."""
IMPORTED_VERSION_TAG = "lmforge.imported_version"
"""`NAME@VERSION` the imported version had in the store it was exported from."""

# MLflow run tags.
OWNER_TAG = "lmforge.owner"
"""`PID@HOST` of the process logging the run: a run left RUNNING by a dead owner is an orphan."""
ORPHAN_TAG = "lmforge.orphan"
"""Why a later process ended an orphaned run (its owner died while logging it)."""
