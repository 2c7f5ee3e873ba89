"""A dbt manifest of a large project, for the bench's project-size figure: a copy's own
target/manifest.json (its cohort model, dbt's macros, its metadata) with its nodes padded
to `--models` models in all.

The padding models are ordinary models, not cohorts (no `moengage` meta), shaped as dbt
1.11 writes a model node: every key of the real node, about 2 KB of raw_code (five CTEs,
refs) and as much compiled_code, 10 documented columns, a config, refs and depends_on on
up to three earlier padding models (parent_map and child_map to match): about 10 KB each
as JSON, so 5,000 models make a manifest of about 50 MB, as a project of that size has.
The cohort node is kept as dbt wrote it, so the runner syncs the same cohort. Written in a
process of its own, so the bench's RSS (which Linux counts in each child's peak) never
holds it. Prints the models and the bytes written as JSON.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

COLUMNS = 10
CTES = 5
CONFIG = "{{ config(materialized='table', tags=['padding']) }}"
# The lines a padding model's SQL repeats, as a mart model's CTEs and joins read.
SQL_LINES = (
    "    select src.account_id, src.user_id, src.event_name, accounts.plan_name,",
    "        coalesce(src.amount, 0) as amount, src.created_at,",
    "        date_trunc('day', src.created_at) as event_day",
    "    from {parent} as src",
    "    left join raw.accounts as accounts on accounts.account_id = src.account_id",
    "    where src.created_at >= date '2024-01-01' and src.user_id is not null",
)


def padding_node(real: dict[str, Any], number: int, parents: list[str]) -> dict[str, Any]:
    """The `number`-th padding model: the real node's keys, an ordinary model's values."""
    name = f"padding_model_{number:05d}"
    package = real["package_name"]
    unique_id = f"model.{package}.{name}"
    node = copy.deepcopy(real)
    refs = [p.rsplit(".", 1)[1] for p in parents] or ["stg_events"]
    ctes = [
        f"cte_{i} as (\n"
        + "\n".join(SQL_LINES).format(parent=f"{{{{ ref('{refs[i % len(refs)]}') }}}}")
        + "\n)"
        for i in range(CTES)
    ]
    raw = f"{CONFIG}\nwith " + ",\n".join(ctes)
    raw += ",\nfinal as (select * from cte_0 union all select * from cte_1)\nselect * from final\n"
    # Refs compiled to relations named as the cohort's is (the engine's quoting).
    prefix, _, suffix = str(real.get("relation_name") or "").rpartition(real["alias"])
    compiled = re.sub(
        r"\{\{ ref\('(\w+)'\) \}\}",
        lambda ref: f"{prefix}{ref.group(1)}{suffix}",
        raw[len(CONFIG) + 1 :],
    )
    columns: dict[str, dict[str, Any]] = {
        f"column_{c:02d}": {
            "name": f"column_{c:02d}",
            "description": f"Column {c} of {name}: a documented attribute of the user's "
            "events, as a mart's schema.yml describes it.",
            "meta": {},
            "data_type": "varchar",
            "constraints": [],
            "quote": None,
            "config": {"meta": {}, "tags": []},
            "tags": [],
            "granularity": None,
            "doc_blocks": [],
        }
        for c in range(COLUMNS)
    }
    node.update(
        name=name,
        path=f"marts/{name}.sql",
        original_file_path=f"models/marts/{name}.sql",
        unique_id=unique_id,
        fqn=[package, "marts", name],
        alias=name,
        checksum={"name": "sha256", "checksum": hashlib.sha256(raw.encode()).hexdigest()},
        tags=["padding"],
        description=f"Padding model {number} of the bench's large manifest: not a cohort.",
        columns=columns,
        meta={},
        patch_path=f"{package}://models/marts/schema.yml",
        unrendered_config={"materialized": "table", "tags": ["padding"]},
        sources=[],
        relation_name=f"{prefix}{name}{suffix}" if prefix or suffix else None,
        raw_code=raw,
        compiled_code=compiled,
        refs=[{"name": r, "package": None, "version": None} for r in refs],
        depends_on={"macros": [], "nodes": parents},
    )
    for path_key in ("build_path", "compiled_path"):
        if node.get(path_key):
            node[path_key] = str(node[path_key]).replace("audience.sql", f"marts/{name}.sql")
    node["config"] = {**real["config"], "meta": {}, "tags": ["padding"]}
    return node


def main() -> int:
    """Read a manifest, pad its nodes to --models models, write it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("manifest", type=Path, help="the manifest to pad (the cohort's own)")
    parser.add_argument("--models", type=int, required=True, help="models in all")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    manifest = json.loads(args.manifest.read_text())
    models = [uid for uid, n in manifest["nodes"].items() if n.get("resource_type") == "model"]
    real = manifest["nodes"][models[0]]
    parent_map: dict[str, list[str]] = {uid: [] for uid in manifest["nodes"]}
    child_map: dict[str, list[str]] = {uid: [] for uid in manifest["nodes"]}
    padding: list[str] = []
    for number in range(args.models - len(models)):
        # Each padding model reads up to three earlier ones (the first reads none).
        parents = [padding[number - d] for d in (1, 7, 31) if number - d >= 0]
        node = padding_node(real, number, parents)
        manifest["nodes"][node["unique_id"]] = node
        padding.append(node["unique_id"])
        parent_map[node["unique_id"]] = parents
        child_map[node["unique_id"]] = []
        for parent in parents:
            child_map[parent].append(node["unique_id"])
    manifest["parent_map"], manifest["child_map"] = parent_map, child_map
    text = json.dumps(manifest)
    args.out.write_text(text)
    count = sum(1 for n in manifest["nodes"].values() if n.get("resource_type") == "model")
    print(json.dumps({"models": count, "bytes": len(text.encode())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
