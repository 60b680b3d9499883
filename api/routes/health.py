from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.deps import HolderDep, ServiceDep
from api.schemas import Health

router = APIRouter()


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(holder: HolderDep, service: ServiceDep) -> Health | JSONResponse:
    """A build is loaded and Redis answers."""
    version = holder.model.version if holder.model else None
    problem = None if holder.model else (holder.last_error or "no build loaded")
    if problem is None:
        try:
            await service.client.ping()
        except (RedisError, OSError) as e:
            problem = f"redis: {e}"
    if problem:
        body = Health(status="unavailable", model_version=version, detail=problem)
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", model_version=version)
