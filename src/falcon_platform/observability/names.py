"""Metric names: the contract between workers, supervisor, rules, dashboard and canary judge.

Every worker metric carries the labels ``worker`` and ``release``. Rendering
(Prometheus rules, Grafana) and the local evaluator refer to these constants,
never to string literals, so a rename breaks the build instead of an alert.
"""

from __future__ import annotations

# --- worker (served on each worker's /metrics; labels worker, release + those listed) ---
REQUESTS = (
    "falcon_requests_total"  # counter; endpoint, status (HTTP code), cache ("hit"/"miss"/"none")
)
REQUEST_DURATION = "falcon_request_duration_seconds"  # histogram; endpoint; buckets 1 ms .. 10 s
# The canary's synthetic requests (``releases.synthetic``, on the worker's private admin socket):
# counted apart so no SLO, alert or incident sees them; the canary judge adds them to its own.
SYNTHETIC_REQUESTS = "falcon_synthetic_requests_total"  # counter; status (HTTP code)
SYNTHETIC_DURATION = "falcon_synthetic_request_duration_seconds"  # histogram; as REQUEST_DURATION
ERRORS = "falcon_errors_total"  # counter; type (error code)
BATCH_SIZE = "falcon_batch_size"  # histogram
QUEUE_DEPTH = "falcon_queue_depth"  # gauge
INFLIGHT = "falcon_inflight_requests"  # gauge
CACHE_HITS = "falcon_cache_hits_total"  # counter
CACHE_MISSES = "falcon_cache_misses_total"  # counter
IDEMPOTENCY_HITS = "falcon_idempotency_hits_total"  # counter
REQUEST_LOG_WRITTEN = "falcon_request_log_rows_written_total"  # counter: committed to the database
REQUEST_LOG_PENDING = "falcon_request_log_rows_pending"  # gauge: on local disk, not yet committed
REQUEST_LOG_SPILLED = (
    "falcon_request_log_rows_spilled_total"  # counter: kept on disk while the DB was away
)
REQUEST_LOG_LOST = "falcon_request_log_rows_lost_total"  # counter: must stay 0
REQUEST_LOG_DISK_BYTES = "falcon_request_log_disk_bytes"  # gauge
REQUEST_LOG_DISK_BUDGET = "falcon_request_log_disk_budget_bytes"  # gauge
RSS = "falcon_process_resident_memory_bytes"  # gauge
MEMORY_LIMIT = "falcon_memory_limit_bytes"  # gauge (0 = no limit)
MODEL_INFO = "falcon_model_info"  # gauge = 1; name, version, sha256
BUILD_INFO = "falcon_build_info"  # gauge = 1; version
CONFIG_INFO = "falcon_config_info"  # gauge = 1; fingerprint, profile
FAULTS_ACTIVE = "falcon_faults_active"  # gauge; fault, profile
DEGRADED_RESPONSES = "falcon_degraded_responses_total"  # counter; dependency
BREAKER_STATE = "falcon_circuit_breaker_state"  # gauge; dependency; 0 closed, 1 open, 2 half-open
BREAKER_TRANSITIONS = "falcon_circuit_breaker_transitions_total"  # counter; dependency, to_state
REDIS_ROUND_TRIPS = "falcon_redis_round_trips_total"  # counter: pipelines sent to Redis
REDIS_CALLS = "falcon_redis_calls_total"  # counter: cache/idempotency calls those carried
CONNECTIONS_OPEN = "falcon_connections_open"  # gauge: the public port's open connections
CONNECTIONS_CLOSED = "falcon_connections_closed_total"  # counter; reason (Falcon closed it)

# --- supervisor (served on the control port's aggregated /metrics) -----------------------
SUPERVISOR_UP = "falcon_supervisor_up"  # gauge = 1
WORKER_RESTARTS = "falcon_worker_restarts_total"  # counter; worker, release
WORKER_OOM_KILLS = "falcon_worker_oom_kills_total"  # counter; worker, release
WORKER_LIMIT_RECYCLES = "falcon_worker_limit_recycles_total"  # counter; worker, release
WORKER_LIVENESS_KILLS = "falcon_worker_liveness_kills_total"  # counter; worker, release
# counter; release, reason (analysis, inconclusive, manual, startup, error): the stable release
# was restored and the release marked aborted (``falcon rollout abort`` counts as manual)
ROLLOUTS_ABORTED = "falcon_rollouts_aborted_total"
CRASH_LOOP = "falcon_crash_loop"  # gauge; release; 1 while in CrashLoopBackOff
WORKERS = "falcon_workers"  # gauge; release, state
WORKERS_READY = "falcon_workers_ready"  # gauge; release
WORKERS_DESIRED = "falcon_workers_desired"  # gauge; release
WORKER_RSS = "falcon_worker_resident_memory_bytes"  # gauge; worker, release (sampled by supervisor)
# gauge; worker, release: the worker's proportional set size (PSS), what its limits apply to
WORKER_PSS = "falcon_worker_proportional_memory_bytes"
SCRAPE_FAILURES = "falcon_scrape_failures_total"  # counter; worker
INCIDENTS_OPEN = "falcon_incidents_open"  # gauge; severity (P0..P3): open, not yet mitigated
ACTION_ITEMS_OVERDUE = "falcon_action_items_overdue"  # gauge: past due and not DONE
