"""The base of typed records that cross a boundary as JSON (the build manifest, the evaluation
report): frozen pydantic models whose JSON keys are the ones the files have always had, including
keys that are not Python names (``valid_ndcg@10``, through field aliases)."""

from typing import Any

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object, keys as on disk. Python mode keeps floats as floats (NaN included,
        as ``json.dumps`` writes it), where JSON mode would turn NaN into null."""
        return self.model_dump(mode="python", by_alias=True)
