"""What an HTTP request runs with: the Deps and actors its app was created with (:func:`ops.web.create_app`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from worker.actors import Actors
from worker.deps import Deps


def current_deps(request: Request) -> Deps:
    return request.app.state.deps()


def current_actors(request: Request) -> Actors:
    return request.app.state.actors()


DepsParam = Annotated[Deps, Depends(current_deps)]
ActorsParam = Annotated[Actors, Depends(current_actors)]
