"""The Job that applies the database migrations once per release (``falcon db upgrade``).

Serving pods never migrate: a worker only checks the schema and refuses to start while it is
behind (exit 5, ``schema_behind``), so a new release's pods stay unready — and the old ones
keep serving (``maxUnavailable: 0``) — until this Job has run. A Job's pod template cannot
change, so the Job's name carries a hash of the image: a new release is a new Job, and
applying the same release again is a no-op.
"""

from __future__ import annotations

import hashlib
from typing import Any

from falcon_platform.render.k8s import options as o
from falcon_platform.render.k8s.names import Names
from falcon_platform.render.k8s.pod import (
    container_security,
    empty_dirs,
    mounts,
    pod_security,
    scratch_volumes,
)
from falcon_platform.render.k8s.settings_env import secret_env

UPGRADE_ARGS = ["falcon", "db", "upgrade", "--json"]
KEEP_FINISHED_S = 7 * 86400  # then the TTL controller deletes it; re-applying re-runs a no-op


def release_hash(image: str) -> str:
    return hashlib.sha256(image.encode()).hexdigest()[:10]


def migration_job(names: Names, options: o.K8sOptions) -> dict[str, Any]:
    scratch = scratch_volumes(None)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.migrate_job(release_hash(options.image)),
            "labels": names.labels("db-upgrade"),
        },
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": KEEP_FINISHED_S,
            "template": {
                "metadata": {"labels": names.labels("db-upgrade")},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "serviceAccountName": names.service_account,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "containers": [
                        {
                            "name": "db-upgrade",
                            "image": options.image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": UPGRADE_ARGS,
                            "envFrom": [{"configMapRef": {"name": names.settings}}],
                            "env": secret_env(names.secret, frozenset({"database_url"})),
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": container_security(),
                            "volumeMounts": mounts(scratch),
                        }
                    ],
                    "volumes": empty_dirs(scratch),
                },
            },
        },
    }
