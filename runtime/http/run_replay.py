"""Run replay: run a function's current version again with a stored run's input.

    POST /v1/logic/runs/{run_id}/replay
    POST /v1/logic/functions/{function_id}/runs/{run_id}/replay

(and their `/v1/orgs/{org}/...` twins). The function-scoped form also checks
that the run is that function's (by id or name), like `GET .../runs/{run_id}`.
Both answer 201 with the new run's record (`replay_of` = the run replayed),
whatever its status; 404 for an unknown run or another owner's, 409 for a run
stored before inputs were kept.
"""

from runtime.http.models import RunOut
from runtime.http.routing import Actor, Org, Ref, Svc, route


@route("POST", "/logic/runs/{run_id}/replay", response_model=RunOut, status_code=201, tags=["functions"])
def replay_run(run_id: str, service: Svc, actor: Actor, org: Org) -> dict:
    """Run the function again with this run's input (event, schedule time, ledger change)."""
    return service.replay_run(actor, run_id, org=org)


@route(
    "POST",
    "/logic/functions/{function_id}/runs/{run_id}/replay",
    response_model=RunOut,
    status_code=201,
    tags=["functions"],
)
def replay_function_run(function_id: Ref, run_id: str, service: Svc, actor: Actor, org: Org) -> dict:
    """The same, for a run of this function (404 if the run is another function's)."""
    return service.replay_run(actor, run_id, function_id, org)
