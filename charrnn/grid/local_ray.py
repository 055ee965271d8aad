"""A Ray the grid starts for itself: on 127.0.0.1 only, with token auth where Ray has it, and joining a
running cluster. Ray reads these settings from the environment when it is first imported."""
from __future__ import annotations

import ipaddress
import os
import sys
from importlib.metadata import version
from typing import Any

# A local Ray binds its node address, which Ray swaps from 127.0.0.1 to this machine's routable one
# (servers on every interface) unless this is set before `ray` is imported (Ray 2.60's ray_constants);
# token auth (RAY_AUTH_MODE=token) exists from Ray 2.52.
LOOPBACK_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
TOKEN_AUTH_SINCE = (2, 52)


def token_auth_supported() -> bool:
    return tuple(int(part) for part in version("ray").split(".")[:2]) >= TOKEN_AUTH_SINCE


def local_ray_env() -> dict[str, str | None]:
    """Put the settings of a local Ray into this process's environment, which Ray reads when it is
    first imported and its servers inherit: loopback only, and token auth where Ray has it (unless
    RAY_AUTH_MODE says otherwise, or Ray was imported already: it would then disagree with its
    servers). Returns the values replaced, for `restore_env` once Ray is shut down."""
    wanted = dict(LOOPBACK_ONLY_ENV)
    if token_auth_supported() and "RAY_AUTH_MODE" not in os.environ and "ray" not in sys.modules:
        wanted["RAY_AUTH_MODE"] = "token"
    before = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    return before


def start_local_ray(**options: Any) -> None:
    """`ray.init(address="local")` on 127.0.0.1 only (see `local_ray_env`, called first where Ray is
    not imported yet). Ray reads the loopback setting when it is first imported: in a process that
    imported it without the setting, this raises RuntimeError and leaves no Ray running."""
    import ray

    ray.init(address="local", **options)
    host = ray.get_runtime_context().gcs_address.rpartition(":")[0].strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        ray.shutdown()
        raise RuntimeError(f"the local Ray would listen on {host}, not 127.0.0.1: Ray was imported in this "
                           f"process before {', '.join(LOOPBACK_ONLY_ENV)}=0 was set")


def restore_env(before: dict[str, str | None]) -> None:
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def join_cluster(address: str, options: dict[str, Any]) -> None:
    """`ray.init` on a running cluster; a refusal without token auth on says what it needs."""
    import ray

    try:
        ray.init(address=address, **options)
    except (ray.exceptions.AuthenticationError, ConnectionError) as err:
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            raise ConnectionError(str(err).strip().split(". ")[0]) from None
        raise ConnectionError(
            f"{str(err).strip().split('. ')[0]}; if the cluster uses token auth, set RAY_AUTH_MODE=token "
            "and its token (RAY_AUTH_TOKEN or ~/.ray/auth_token)") from None
