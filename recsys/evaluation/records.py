"""The evaluation report as typed records: what ``report.json`` holds, and what the markdown,
the HTML and the plots are rendered from.

The JSON keys are the ones reports have always had (a committed report reads back unchanged:
``tests/test_eval_records.py``). Rows of metrics stay mappings of ``<metric>@<k>`` to a value,
keyed by the metric table (``metric_table.METRICS``); depths of candidate recall are a mapping
``{depth: recall}`` here and ``recall@<depth>`` keys on disk.
"""

from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator
from pydantic.functional_serializers import SerializerFunctionWrapHandler

from recsys.artifacts import RankerSummary
from recsys.evaluation.stats import PairedResult
from recsys.records import Record

MetricRow = dict[str, float]
"""``<metric>@<k>`` -> mean over test users (or the population value)."""
Segments = dict[str, dict[str, dict[str, float]]]
"""kind ("device", "activity") -> segment -> {"users": n, model: NDCG@10, ...}."""


def _flatten(data: dict[str, Any], field: str, prefix: str) -> dict[str, Any]:
    """``data`` with ``field`` ({depth: value}) spread in place as ``<prefix>@<depth>`` keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == field:
            out |= {f"{prefix}@{d}": v for d, v in value.items()}
        else:
            out[key] = value
    return out


def _gather(data: Any, field: str, prefix: str) -> Any:
    """The inverse of ``_flatten``, for reading a report back."""
    if not isinstance(data, dict) or field in data:
        return data
    at = f"{prefix}@"
    depths = {int(k[len(at) :]): v for k, v in data.items() if k.startswith(at)}
    return {k: v for k, v in data.items() if not k.startswith(at)} | {field: depths}


def _depth_keys(field: str, prefix: str) -> tuple[Any, Any]:
    """A (validator, serializer) pair keeping ``field`` as ``<prefix>@<depth>`` keys on disk."""

    def gather(cls: type, data: Any) -> Any:
        return _gather(data, field, prefix)

    def flatten(self: Record, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _flatten(handler(self), field, prefix)

    return (
        model_validator(mode="before")(classmethod(gather)),  # type: ignore[arg-type]
        model_serializer(mode="wrap")(flatten),
    )


class SourceRecall(Record):
    recall_alone: float
    """Recall of the source's own top ``per_user`` (seen removed), had it every slot."""
    recall_alone_at: dict[int, float]
    recall_in_merged: float
    """Recall of the part of the merged candidates this source found."""
    slots_per_user: float

    _read, _write = _depth_keys("recall_alone_at", "recall_alone")


class CandidateRecall(Record):
    per_user: float
    recall: float
    """Held-out items among all candidates: the ceiling of stage 2."""
    recall_at: dict[int, float]
    """The same among the first d candidates, in stored (stage-1) order."""
    sources: dict[str, SourceRecall]

    _read, _write = _depth_keys("recall_at", "recall")


class Window(Record):
    """When training stops and what the test holds."""

    train_events: int
    test_events: int
    train_until: str | None
    test_until: str | None


class PopularityReference(Record):
    held_out_pop_pct: float


class Shift(Record):
    """How one variable moved between the training window and the test window."""

    psi: float
    flag: Literal["stable", "moderate", "major"]
    reference_mean: float | None
    current_mean: float | None
    reference_std: float | None
    current_std: float | None
    reference_missing: float
    current_missing: float


class Drift(Record):
    reference: str
    current: str
    reference_requests: int
    current_requests: int
    reference_rows: int
    current_rows: int
    features: dict[str, Shift]
    score: Shift


class Confidence(Record):
    level: float
    method: str
    resamples: int
    seed: int
    intervals: dict[str, dict[str, list[float]]]  # model -> metric -> [low, high]


class PairedDifference(Record):
    """Challenger minus champion on the same users (``recsys.evaluation.stats``)."""

    users: int
    champion: float
    challenger: float
    difference: float
    ci95: list[float]
    p_value: float
    p_wilcoxon: float
    resamples: int
    permutations: int

    @classmethod
    def of(cls, result: PairedResult) -> "PairedDifference":
        return cls.model_validate(result.as_dict())


Paired = dict[str, dict[str, PairedDifference]]
"""model -> metric -> difference."""


class WalkForward(Record):
    folds: int
    fold_days: int


class Fold(Record):
    fold: int
    users: int
    build_version: str
    train_events: int
    test_events: int
    train_until: str | None
    test_until: str | None
    ranker_valid_ndcg_at_10: float = Field(alias="ranker_valid_ndcg@10")
    results: dict[str, MetricRow]


_SECTIONS = ("drift", "walk_forward", "folds", "confidence", "paired", "dataset")


class EvalReport(Record):
    """One configuration under one protocol: a split's build, or the mean over walk-forward
    folds (then the candidate, segment, ranker and drift sections describe the latest fold)."""

    protocol: str
    users: int
    ks: list[int]
    window: Window
    results: dict[str, MetricRow]  # model -> row
    popularity_reference: PopularityReference
    candidates: CandidateRecall
    segments: Segments = Field(alias="segments_ndcg@10")
    drift: Drift | None = None
    build_version: str
    ranker: RankerSummary
    timings_s: dict[str, float]
    eval_timings_s: dict[str, float]
    walk_forward: WalkForward | None = None
    folds: list[Fold] | None = None
    confidence: Confidence | None = None
    paired: Paired | None = None
    dataset: str | None = None

    @model_serializer(mode="wrap")
    def _without_absent_sections(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if not (k in _SECTIONS and v is None)}


class CompareReport(Record):
    """Champion and challenger configurations built on the same splits, scored on the same
    users, and their paired differences."""

    protocol: str
    mode: Literal["compare"] = "compare"
    users: int
    ks: list[int]
    settings: dict[str, dict[str, Any]]  # "champion" / "challenger" -> settings overrides
    paired: Paired
    champion: EvalReport
    challenger: EvalReport
    dataset: str | None = None


def read_report(data: dict[str, Any]) -> EvalReport | CompareReport:
    """A ``report.json`` object, typed."""
    if data.get("mode") == "compare":
        return CompareReport.model_validate(data)
    return EvalReport.model_validate(data)


# --------------------------------------------------------------------------- online


class MetricValue(Record):
    value: float | None  # None: undefined for the group (nothing to divide by)
    ci95: list[float] | None  # user-resampled bootstrap interval; None: not computed


class OnlineGroup(Record):
    """The online metrics of one group of answers (all of them, or one build, arm, ...)."""

    impressions: int
    users: int
    items_shown: int
    metrics: dict[str, MetricValue]  # online_metric_table key -> value


class ArmComparison(Record):
    """One arm against the champion: per metric, ``stats.TwoSampleResult.as_dict``."""

    champion: str
    challenger: str
    metrics: dict[str, dict[str, Any]]


class OnlineReport(Record):
    """``online_report.json``: impressions joined with the events that followed them."""

    since_ms: int | None  # the period asked for (None: from the start of the log)
    until_ms: int | None
    first_ms: int  # the first and last impression in it
    last_ms: int
    attribution_window_s: float
    impressions: int
    events: int
    attributed_events: int
    overall: OnlineGroup
    breakdowns: dict[str, dict[str, OnlineGroup]]  # dimension -> value -> group
    comparisons: list[ArmComparison]
    resamples: int
