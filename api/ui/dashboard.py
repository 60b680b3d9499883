"""Each dashboard page's data, composed from what the API process has: the builds it holds, the
artifacts folder, Redis, its own metrics and (optionally) an evaluation report.

One JSON endpoint per page (``api/routes/ui_data.py``). A page must never slow the requests the
same worker serves (issue 16: the load test's p99 went from 17 to 48 ms with a dashboard open,
because pages composed, ranked and serialised on the event loop). So a page does only its Redis
round trips on the event loop; everything else, from reading files and metrics to composing the
record and its JSON bytes, and the inspector's ranking and explanations, runs on one thread of
the dashboard's own (``recsys-ui``), one page at a time per worker: however many dashboards are
open, they hold at most that one thread, never the loop and never the rank threads that answer
requests. What a build's pages share (its manifest, inspection tables, titles) is read once per
build (two builds kept) on that thread; an item's page, fixed for a build, is kept too.
"""

import asyncio
import calendar
import json
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
import redis
from pydantic import ValidationError

from api.arms import Arms
from api.schemas import Contribution, Explanation
from api.service import REDIS_ERRORS, Answer, RecommendationService
from api.ui.live import ArmOnline, LiveTraffic, RedisView, TrafficView, online_view, redis_view
from recsys.artifacts import BuildManifest, CandidateSummary, DataSummary, read_manifest
from recsys.config import Settings
from recsys.evaluation.records import CompareReport, EvalReport, read_report
from recsys.experiment import DEFAULT_BUILD_NAME, check_build_name
from recsys.explain import ItemExplanation
from recsys.inspection.builds import BuildRow, build_rows, builds_on_disk
from recsys.inspection.history import read_history
from recsys.inspection.items import ItemId, ItemRef, item_view, titles_of
from recsys.inspection.live_drift import SCORE, LiveCounts, LiveDrift, live_drift
from recsys.inspection.tables import InspectionTables, has_tables, load_tables
from recsys.inspection.users import (
    Change,
    HistoryRow,
    SourceCandidates,
    answer_changes,
    candidates_by_source,
    history_rows,
)
from recsys.records import Record
from recsys.serving import ServingModel, apply_events
from recsys.store.codec import decode_user_state
from recsys.store.drift_counts import read_live_counts
from recsys.store.user_store import UserRecord, current_build_async, promote, read_user_async

REPORT_FILE: Final = "report.json"
HISTORY_ROWS: Final = 20  # events shown by the user inspector
CANDIDATES_PER_SOURCE: Final = 10
EXAMPLE_USERS: Final = 8
CACHED_BUILDS: Final = 2
CACHED_ITEM_PAGES: Final = 512
UI_SWITCH_INTERVAL_S: Final = 0.001
ROWS_METRICS: Final[tuple[str, ...]] = ("ndcg@10", "hr@10", "ndcg@50", "hr@50")
DAY_S: Final = 86_400

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class NotFoundError(LookupError):
    """What the page asked for does not exist (a 404 with this message)."""


class UnavailableError(RuntimeError):
    """No build is loaded yet, or Redis did not answer (a 503 with this message)."""


# ---------------------------------------------------------------------------- records


class ServedBuild(Record):
    arm: str
    share: float
    """Share of users the A/B split sends to this arm; 0 for a champion the split does not name
    (it answers only the users whose arm has no build loaded)."""
    build_version: str
    created_at: str
    age_s: float | None
    data: DataSummary
    candidates: CandidateSummary
    ranker_valid_ndcg_at_10: float
    ranker_trees: int
    inspection_bytes: int | None


class ReportSummary(Record):
    path: str
    protocol: str
    users: int
    build_version: str
    modified_s: float
    rows: dict[str, dict[str, float]]
    """Model -> the headline metrics (NDCG@10, HR@10, NDCG@50, HR@50)."""
    candidate_recall: float
    drift_flags: dict[str, int] | None


class Overview(Record):
    generated_at: float
    refresh_s: float
    current_build: str | None
    problem: str | None
    experiment: bool
    """An A/B split is configured (``serve.ab``)."""
    served: list[ServedBuild]
    online: list[ArmOnline] | None
    """Online metrics by arm since the servers started; None until an answer was shown."""
    report: ReportSummary | None
    report_problem: str | None
    traffic: TrafficView
    redis: RedisView
    example_users: list[str]


class Builds(Record):
    key_prefix: str
    current_build: str | None
    served: list[str]
    lines: dict[str, str]
    """Build line -> its newest build (``recsys build --name``; the champion's is the current)."""
    can_promote: bool
    """Promotion needs an API key (``api/ui/auth.py``)."""
    builds: list[BuildRow]


class Promotion(Record):
    line: str
    previous: str | None
    champion: str
    """The build the champion's pointer names now."""
    served: list[str]
    """What this worker serves after swapping (other workers: on their next poll)."""


class Context(Record):
    device: str | None
    ts: int | None


class AnswerItem(ItemRef):
    score: float
    explanation: Explanation | None = None


class AnswerView(Record):
    context: Context
    arm: str
    model_version: str
    fallback: str | None
    items: list[AnswerItem]


class UserView(Record):
    user_id: str
    known: bool
    model_version: str
    n_events: int
    history: list[HistoryRow]
    answer: AnswerView
    candidates: list[SourceCandidates]
    candidates_total: int
    alternative: AnswerView | None
    changes: list[Change]


class DriftView(Record):
    model_version: str
    live: LiveDrift | None
    report_psi: dict[str, float] | None
    """The evaluation report's PSI per feature (training window vs its test window)."""
    problem: str | None


# ---------------------------------------------------------------------------- composition


@dataclass
class _Cached:
    key: object
    value: object


Page = bytes
"""A page's data as the JSON bytes its endpoint answers (made on the dashboard's thread)."""


def page_bytes(record: Record) -> Page:
    return orjson.dumps(record.model_dump(mode="json"), option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True)
class UserParts:
    """The inspector's pieces of a user's stored record (history, candidates), and the titles
    of their build."""

    titles: list[str | None]
    known: bool
    history: list[HistoryRow]
    candidates: list[SourceCandidates]
    total: int
    n_events: int


@dataclass(frozen=True)
class UserRead:
    """The answers of the service (the same call as ``GET /recommendations``) in both
    contexts."""

    arm: str
    model: ServingModel
    user_id: str
    context: Context
    answer: Answer
    alternative: Context
    alt_answer: Answer


class UiPool(ThreadPoolExecutor):
    """The dashboard's one thread. While it runs a job, the interpreter's switch interval is
    1 ms instead of 5 (``sys.setswitchinterval``): the Python parts of a page (composing
    records, pydantic, orjson) hold the GIL, and the event loop, woken by a request meanwhile,
    waits up to one interval before it may run. One job at a time, so no job restores an
    interval another one set."""

    def __init__(self) -> None:
        super().__init__(1, thread_name_prefix="recsys-ui")

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> "Future[T]":
        return super().submit(_with_short_switch, partial(fn, *args, **kwargs))


def _with_short_switch(job: Callable[[], T]) -> T:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, UI_SWITCH_INTERVAL_S))
    try:
        return job()
    finally:
        sys.setswitchinterval(previous)


class Dashboard:
    """The pages' data for one worker; its caches are small and per build.

    Methods named ``_..._now`` run on the dashboard's thread only (``_off_loop``), which is
    also the only thread that touches the caches."""

    def __init__(
        self,
        settings: Settings,
        artifacts: Path,
        arms: Arms,
        service: RecommendationService,
        traffic: LiveTraffic,
    ) -> None:
        self.settings = settings
        self.artifacts = artifacts
        self.arms = arms
        self.holder = arms.champion
        self.service = service
        self.traffic = traffic
        self._tables: OrderedDict[str, InspectionTables | None] = OrderedDict()
        self._titles: OrderedDict[str, list[str | None]] = OrderedDict()
        self._manifests: OrderedDict[str, BuildManifest] = OrderedDict()
        self._items: OrderedDict[tuple[str, int], Page] = OrderedDict()
        self._report: _Cached | None = None
        # one thread, one page at a time: a dashboard never holds more than this thread
        self.pool = UiPool()
        self._turn = asyncio.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    # ------------------------------------------------------------------ shared pieces

    def model(self, arm: str | None = None) -> ServingModel:
        """The build the page describes: the champion's, or ``arm``'s (404 if no such arm)."""
        if arm is not None and arm not in self.arms.holders:
            raise NotFoundError(
                f"no arm {arm!r} here; arms: {', '.join(sorted(self.arms.holders))}"
            )
        holder = self.arms.holders[arm] if arm is not None else self.holder
        model = holder.model
        if model is None:
            raise UnavailableError(holder.last_error or "no build loaded yet")
        return model

    def _manifest_now(self, version: str) -> BuildManifest:
        return self._keep(self._manifests, version, lambda: read_manifest(self.artifacts / version))

    def _tables_now(self, version: str) -> InspectionTables | None:
        """The build's inspection tables (None for a build from before they existed)."""

        def load() -> InspectionTables | None:
            directory = self.artifacts / version
            return load_tables(directory) if has_tables(directory) else None

        return self._keep(self._tables, version, load)

    def _titles_now(self, model: ServingModel) -> list[str | None]:
        def load() -> list[str | None]:
            tables = self._tables_now(model.version)
            return titles_of(tables.catalogue) if tables else [None] * model.items.n_items

        return self._keep(self._titles, model.version, load)

    @staticmethod
    def _keep(cache: "OrderedDict[K, V]", key: K, load: Callable[[], V], size: int = 0) -> V:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = load()
        cache[key] = value
        while len(cache) > (size or CACHED_BUILDS):
            cache.popitem(last=False)
        return value

    def _report_now(self) -> tuple[EvalReport | CompareReport | None, str | None, Path | None]:
        """The configured evaluation report (re-read when its file changes), or why not."""
        given = self.settings.ui.eval_report
        if given is None:
            return None, None, None
        path = given / REPORT_FILE if given.is_dir() else given
        try:
            mtime = path.stat().st_mtime
        except OSError as e:
            return None, f"evaluation report {path}: {e.strerror}", path
        if self._report is None or self._report.key != (path, mtime):
            try:
                loaded: object = read_report(json.loads(path.read_text()))
            except (OSError, ValueError, ValidationError) as e:
                loaded = f"evaluation report {path}: not readable ({type(e).__name__})"
            self._report = _Cached((path, mtime), loaded)
        value = self._report.value
        if isinstance(value, str):
            return None, value, path
        assert isinstance(value, EvalReport | CompareReport)
        return value, None, path

    # ------------------------------------------------------------------ pages

    async def overview(self) -> Page:
        async with self._turn:
            model = self.holder.model
            problem = await self.service.redis_problem(self.holder.ready_key if model else None)
            try:
                current = await current_build_async(self.service.event_client, self.service.keys)
            except REDIS_ERRORS:
                current = None
            split = self.arms.split
            served = [
                (name, h.model.version, split.share(name) if name in split.arms else 0.0)
                for name, h in self.arms.holders.items()
                if h.model is not None
            ]
            arms_problem, experiment = self.arms.problems(), split.is_experiment
            return await self._off_loop(
                lambda: self._overview_now(
                    model, problem, current, served, arms_problem, experiment
                )
            )

    def _overview_now(
        self,
        model: ServingModel | None,
        problem: str | None,
        current: str | None,
        served: list[tuple[str, str, float]],
        arms_problem: str | None,
        experiment: bool,
    ) -> Page:
        traffic, samples = self.traffic.read()
        examples: list[str] = []
        if model is not None:
            tables = self._tables_now(model.version)
            if tables is not None and tables.audience is not None:
                examples = tables.audience.users[:EXAMPLE_USERS]
        report, report_problem, path = self._report_now()
        return page_bytes(
            Overview(
                generated_at=time.time(),
                refresh_s=self.settings.ui.refresh_s,
                current_build=current,
                problem=arms_problem,
                experiment=experiment,
                served=[self._served_now(*s) for s in served],
                online=online_view(samples),
                report=_report_summary(report, path) if report is not None and path else None,
                report_problem=report_problem,
                traffic=traffic,
                redis=redis_view(samples, problem),
                example_users=examples,
            )
        )

    def _served_now(self, arm: str, version: str, share: float) -> ServedBuild:
        m = self._manifest_now(version)
        return ServedBuild(
            arm=arm,
            share=round(share, 6),
            build_version=version,
            created_at=m.created_at,
            age_s=_age_s(m.created_at),
            data=m.data,
            candidates=m.candidates,
            ranker_valid_ndcg_at_10=m.ranker.valid_ndcg_at_10,
            ranker_trees=m.ranker.best_iteration,
            inspection_bytes=m.inspection.bytes if m.inspection else None,
        )

    async def builds(self, can_promote: bool) -> Page:
        prefix = self.settings.key_prefix
        client, keys = self.service.event_client, self.service.keys
        async with self._turn:
            try:
                current = await current_build_async(client, keys)
            except REDIS_ERRORS:
                current = None
            served = self.arms.served()

            def rows() -> list[BuildRow]:
                history = read_history(self.artifacts, prefix)
                on_disk = builds_on_disk(self.artifacts, prefix)
                return build_rows(history, on_disk, self.artifacts, prefix, current, served)

            found = await self._off_loop(rows)
            names = sorted({*(r.line for r in found), *self.arms.holders} - {DEFAULT_BUILD_NAME})
            try:
                heads = {n: await current_build_async(client, keys, n) for n in names}
            except REDIS_ERRORS:
                heads = {}
            lines = {n: v for n, v in heads.items() if v is not None}
            if current is not None:
                lines = {DEFAULT_BUILD_NAME: current, **lines}
            return await self._off_loop(
                lambda: page_bytes(
                    Builds(
                        key_prefix=prefix,
                        current_build=current,
                        served=sorted(served),
                        lines=lines,
                        can_promote=can_promote,
                        builds=[with_promotable(row, lines, current) for row in found],
                    )
                )
            )

    async def promote(self, line: str) -> Promotion:
        """The newest build of ``line`` becomes the champion's (issue 15's ``promote``, the
        same as ``recsys ab promote``), and this worker swaps it in at once; the others do on
        their next poll. ValueError: not a line name; ``StoreError``: nothing to promote."""
        check_build_name(line)
        url = self.settings.redis_url or ""

        def run() -> tuple[str | None, str]:
            with redis.Redis.from_url(url) as client:
                return promote(client, self.service.keys, line)

        try:
            previous, champion = await asyncio.to_thread(run)
            await self.arms.refresh(self.service.event_client, self.service.keys)
        except REDIS_ERRORS as e:
            raise UnavailableError(f"redis: {e}") from e
        return Promotion(
            line=line, previous=previous, champion=champion, served=sorted(self.arms.served())
        )

    async def user(
        self,
        user_id: str,
        k: int,
        context: Context,
        alternative: Context | None,
    ) -> Page:
        arm, model = self.arms.choose(user_id)  # the build GET /recommendations would use
        if model is None:
            raise UnavailableError(self.holder.last_error or "no build loaded yet")
        service = self.service
        async with self._turn:
            try:  # on the event pool: the page can wait longer than a request's 20 ms
                record = await read_user_async(
                    service.event_client,
                    service.keys,
                    model.version,
                    user_id,
                    service.cfg.max_events_per_user,
                )
            except REDIS_ERRORS as e:
                raise UnavailableError(f"redis: {e}") from e
            answer = await self._answer(model, user_id, k, context, explain=True)
            parts = await self._off_loop(lambda: self._user_parts_now(model, record))
            alt = alternative or default_alternative(context, parts.history, model.items.devices)
            alt_answer = await self._answer(model, user_id, k, alt)
            read = UserRead(arm, model, user_id, context, answer, alt, alt_answer)
            return await self._off_loop(lambda: self._user_now(read, parts))

    async def _answer(
        self, model: ServingModel, user_id: str, k: int, context: Context, explain: bool = False
    ) -> Answer:
        """The answer ``GET /recommendations`` gives for this user and context: the same
        service call, the same code (with ``explain``: ``explain=true``'s), ranked and
        explained on the dashboard's thread instead of the rank threads."""
        return await self.service.recommend(
            model,
            user_id,
            k,
            context.device,
            context.ts,
            time.perf_counter(),
            explain=explain,
            pool=self.pool,
        )

    def _user_parts_now(self, model: ServingModel, record: UserRecord) -> UserParts:
        titles = self._titles_now(model)
        if record.state is None:
            return UserParts(titles, False, [], [], 0, len(record.events))
        state = apply_events(decode_user_state(record.state), record.events, model)
        return UserParts(
            titles,
            True,
            history_rows(state, record.events, model.items, titles, HISTORY_ROWS),
            candidates_by_source(state, model.items, titles, CANDIDATES_PER_SOURCE),
            len(state.cand_item),
            state.n_events,
        )

    def _user_now(self, read: UserRead, parts: UserParts) -> Page:
        answer = answer_view(read.arm, read.context, read.answer, parts.titles)
        alt_answer = answer_view(read.arm, read.alternative, read.alt_answer, parts.titles)
        by_id = {i.item_id: i.title for i in answer.items + alt_answer.items}
        return page_bytes(
            UserView(
                user_id=read.user_id,
                known=parts.known,
                model_version=read.model.version,
                n_events=parts.n_events,
                history=parts.history,
                answer=answer,
                candidates=parts.candidates,
                candidates_total=parts.total,
                alternative=alt_answer,
                changes=answer_changes(
                    [i.item_id for i in answer.items], [i.item_id for i in alt_answer.items], by_id
                ),
            )
        )

    async def item(self, item_id: str, arm: str | None = None) -> Page:
        model = self.model(arm)
        index = model.items.index_of(item_id)
        if index < 0:
            raise NotFoundError(f"item {item_id!r} is not in build {model.version}")
        async with self._turn:
            return await self._off_loop(lambda: self._item_now(model, index))

    def _item_now(self, model: ServingModel, index: int) -> Page:
        def compose() -> Page:
            tables = self._tables_now(model.version)
            if tables is None:
                raise NotFoundError(
                    f"build {model.version} has no inspection tables (built before they "
                    "existed); rebuild to see item pages"
                )
            return page_bytes(item_view(model.version, index, model.items, tables))

        # fixed for a build: kept (the browser asks again for every neighbour it shows)
        return self._keep(self._items, (model.version, index), compose, CACHED_ITEM_PAGES)

    async def drift(self, arm: str | None = None) -> Page:
        model = self.model(arm)
        async with self._turn:
            live = None
            if model.drift_reference is not None:
                try:
                    live = await read_live_counts(
                        self.service.event_client, self.service.keys, model.version
                    )
                except REDIS_ERRORS as e:
                    raise UnavailableError(f"redis: {e}") from e
            return await self._off_loop(lambda: self._drift_now(model, live))

    def _drift_now(self, model: ServingModel, live: LiveCounts | None) -> Page:
        report, _, _ = self._report_now()
        report_psi = None
        drift_part = report.champion.drift if isinstance(report, CompareReport) else None
        if isinstance(report, EvalReport):
            drift_part = report.drift
        if drift_part is not None:
            report_psi = {name: s.psi for name, s in drift_part.features.items()}
            report_psi[SCORE] = drift_part.score.psi
        if model.drift_reference is None or live is None:
            return page_bytes(
                DriftView(
                    model_version=model.version,
                    live=None,
                    report_psi=report_psi,
                    problem=f"build {model.version} saved no drift reference "
                    "(built before it existed, or with inspection.drift_requests=0)",
                )
            )
        return page_bytes(
            DriftView(
                model_version=model.version,
                live=live_drift(model.drift_reference, live),
                report_psi=report_psi,
                problem=None,
            )
        )


def answer_view(arm: str, context: Context, answer: Answer, titles: list[str | None]) -> AnswerView:
    """An answer of the service as the inspector shows it."""
    ids = answer.model.items.ids_list
    why: list[ItemExplanation | None] = (
        list(answer.explanations) if answer.explanations else [None] * len(answer.ranked.item_idx)
    )
    return AnswerView(
        context=context,
        arm=arm,
        model_version=answer.model.version,
        fallback=answer.fallback,
        items=[
            AnswerItem(
                item_id=ids[i],
                title=titles[i],
                score=round(s, 6),
                explanation=explanation_view(e) if e is not None else None,
            )
            for i, s, e in zip(
                answer.ranked.item_idx.tolist(), answer.ranked.scores.tolist(), why, strict=True
            )
        ],
    )


def with_promotable(row: BuildRow, lines: dict[str, str], current: str | None) -> BuildRow:
    """``row``, saying whether Promote applies to it: the newest build of a line other than the
    champion's, not already the champion's build."""
    promotable = (
        row.line != DEFAULT_BUILD_NAME
        and lines.get(row.line) == row.build_version
        and current != row.build_version
    )
    return row.model_copy(update={"promotable": promotable})


def explanation_view(e: ItemExplanation) -> Explanation:
    """An item's explanation in the API's own shape (``api.schemas.Explanation``)."""
    return Explanation(
        sources=e.sources,
        stage1_score=_rounded(e.stage1_score),
        stage1_rank=e.stage1_rank,
        ranker_score=_rounded(e.ranker_score),
        contributions=[
            Contribution(
                feature=c.feature,
                value=_rounded(c.value),
                contribution=_rounded(c.contribution) or 0.0,
            )
            for c in e.contributions
        ],
        expected_value=_rounded(e.expected_value),
    )


def _rounded(x: float | None) -> float | None:
    return None if x is None or x != x else round(x, 6)


def default_alternative(context: Context, history: list[HistoryRow], devices: list[str]) -> Context:
    """What the inspector compares with when not told: the user's last device if the request
    named another (else the first other device the build knows), twelve hours later."""
    last = history[0].device if history else None
    if last is not None and last != context.device and last != "unknown":
        device: str | None = last
    else:
        device = next((d for d in devices[1:] if d != context.device), None)
    base_ts = context.ts if context.ts is not None else int(time.time())
    return Context(device=device, ts=base_ts + DAY_S // 2)


def _age_s(created_at: str) -> float | None:
    try:
        created = calendar.timegm(time.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None
    return round(time.time() - created, 1)


def _report_summary(report: EvalReport | CompareReport, path: Path) -> ReportSummary:
    main = report.champion if isinstance(report, CompareReport) else report
    rows = {
        model: {m: row[m] for m in ROWS_METRICS if m in row} for model, row in main.results.items()
    }
    if isinstance(report, CompareReport):
        rows["challenger two_stage"] = {
            m: v for m, v in report.challenger.results["two_stage"].items() if m in ROWS_METRICS
        }
    flags = None
    if main.drift is not None:
        flags = {"stable": 0, "moderate": 0, "major": 0}
        for shift in main.drift.features.values():
            flags[shift.flag] += 1
    return ReportSummary(
        path=str(path),
        protocol=main.protocol,
        users=main.users,
        build_version=main.build_version,
        modified_s=path.stat().st_mtime,
        rows=rows,
        candidate_recall=main.candidates.recall,
        drift_flags=flags,
    )


__all__ = ["Dashboard", "ItemId", "NotFoundError", "Promotion", "ServedBuild", "UnavailableError"]
