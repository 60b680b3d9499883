"""Draw a ``TrafficPlan`` from a dataset: user, item and device frequencies as the log has them."""

import polars as pl

from loadtest.traffic import DEFAULT_K, TrafficPlan, TrafficShares
from recsys.columns import UNKNOWN_DEVICE, Columns
from recsys.data.dataset import Dataset

# Beyond this many users the plan keeps a uniform sample of them, each with its own event
# count as weight: the activity distribution keeps its shape and the JSON stays small.
MAX_PLAN_USERS = 50_000


def plan_from_dataset(
    dataset: Dataset,
    shares: TrafficShares | None = None,
    k: int = DEFAULT_K,
    seed: int = 0,
) -> TrafficPlan:
    inter = dataset.interactions
    users = inter.group_by(Columns.user).len().sort(Columns.user)
    if users.height > MAX_PLAN_USERS:
        users = users.sample(MAX_PLAN_USERS, seed=seed)
    items = inter.group_by(Columns.item).len().sort(Columns.item)
    devices = _device_counts(inter)
    return TrafficPlan(
        users=[str(u) for u in users[Columns.user].to_list()],
        user_weights=users["len"].cast(pl.Float64).to_list(),
        items=items[Columns.item].to_list(),
        item_weights=items["len"].cast(pl.Float64).to_list(),
        devices=devices[Columns.device].to_list(),
        device_weights=devices["len"].cast(pl.Float64).to_list(),
        # the day after the log ends: the day a nightly build is served
        ts_start=int(inter[Columns.timestamp].max()) + 1,  # type: ignore[arg-type]
        shares=shares or TrafficShares(),
        k=k,
    )


def _device_counts(inter: pl.DataFrame) -> pl.DataFrame:
    """Devices by how often they appear; a log without devices asks as one unknown device."""
    if Columns.device not in inter.columns:
        return pl.DataFrame({Columns.device: [UNKNOWN_DEVICE], "len": [1]})
    return inter.group_by(Columns.device).len().sort(Columns.device)
