"""``--ray``: where the worker actors run and what a lost one does to the run (data only; Ray is not imported here,
so ``import wattload`` never pulls Ray in)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OnWorkerLoss = Literal["continue", "stop"]


class RaySpec(BaseModel):
    """The Ray cluster the workers run on: ``local`` starts one in this process, ``auto`` joins ``RAY_ADDRESS`` (or
    the cluster ``ray start`` left on this host), anything else is a cluster address (``host:6379``, ``ray://...``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(min_length=1)
    on_worker_loss: OnWorkerLoss = "continue"
    """continue: count the lost worker's in-flight requests as worker_lost and rebalance; stop: end the run."""
    cpus_per_worker: float = Field(default=1.0, gt=0)
    """What each worker actor asks Ray for (its bundle in the placement group)."""

    def describe(self) -> str:
        where = {"local": "a local Ray", "auto": "the Ray cluster of RAY_ADDRESS"}.get(self.address)
        return where or f"the Ray cluster at {self.address}"
