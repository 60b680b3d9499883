"""Dependencies shared by the routes: the service and the current build, from app state."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.service import RecommendationService
from api.state import ModelHolder
from recsys.serving import ServingModel


def get_service(request: Request) -> RecommendationService:
    service: RecommendationService = request.app.state.service
    return service


def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


def get_model(holder: Annotated[ModelHolder, Depends(get_holder)]) -> ServingModel:
    if holder.model is None:
        raise HTTPException(503, detail=holder.last_error or "no build loaded yet")
    return holder.model


ServiceDep = Annotated[RecommendationService, Depends(get_service)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
ModelDep = Annotated[ServingModel, Depends(get_model)]
