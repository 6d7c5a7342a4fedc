"""Prometheus metrics (prometheus-client, default registry, served at /metrics).

Labels never carry secrets, RUCs or hashes: only outcome kinds.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_ACCEPTED = Counter("ancla_records_accepted", "Records newly accepted (durable in SQL)")
RECORDS_REJECTED = Counter(
    "ancla_records_rejected", "Records refused, by reason", labelnames=("reason",)
)
BATCHES_SEALED = Counter("ancla_batches_sealed", "Batches sealed")
BATCHES_ANCHORED = Counter("ancla_batches_anchored", "Batches whose anchor was mined")
BATCHES_FINAL = Counter("ancla_batches_final", "Batches with the required confirmations")
BATCHES_REANCHORED = Counter(
    "ancla_batches_reanchored",
    "Batches sent back to be anchored again, by cause",
    labelnames=("cause",),
)
RPC_ERRORS = Counter("ancla_rpc_errors", "Errors talking to the chain's RPC endpoint")
ANCHOR_LATENCY = Histogram(
    "ancla_anchor_latency_seconds",
    "From a batch being sealed to its anchor being mined",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
PENDING_RECORDS = Gauge("ancla_pending_records", "Records accepted but not yet in a batch")
OLDEST_UNANCHORED_AGE = Gauge(
    "ancla_oldest_unanchored_age_seconds", "Age of the oldest record not yet anchored"
)
IS_LEADER = Gauge("ancla_anchor_worker_leader", "1 while this process leads anchoring")
FEE_BUMPS = Counter(
    "ancla_anchor_fee_bumps", "Stuck anchoring transactions replaced with higher fees"
)
