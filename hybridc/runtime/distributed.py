"""Ray glue: start or join a Ray cluster and fan work out to it.

Used by `hybridc verify --workers/--address` (Lava samples split across Ray tasks) and
`hybridc explore --workers/--address` (one Ray Tune trial per candidate). Ray is imported
here only, and only when a command asks for workers, so `hybridc --help` stays instant.

Workers import hybridc and read the build directory and model file by path: on a
cluster, those paths must be on storage every node sees (see docs/scale-out.md).
"""

import os
from typing import Callable, Iterable, Optional

from ..errors import HybridcError, InputError
from .device import current, using


def wants_ray(workers: Optional[int], address: Optional[str]) -> bool:
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}.")
    return workers is not None or bool(address)


def connect(workers: Optional[int] = None, address: Optional[str] = None):
    """Join the cluster at `address`, or start a local Ray with `workers` CPUs; a session
    already running in this process (a test's, a notebook's) is reused. Returns ray."""
    try:
        import ray
    except ImportError:
        raise InputError("--workers/--address need Ray: pip install 'ray[tune]' (see docs/scale-out.md).") from None
    if ray.is_initialized():
        return ray
    # Workers start from this environment: the same interpreter sees the same hybridc.
    path = os.environ.get("PYTHONPATH", "")
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if package_root not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, path) if p)
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else f"a local Ray with {workers} workers"
        raise InputError(f"Cannot start or join {where}: {exc}. Check `ray status` on the head node, "
                         "or drop --address to run on this machine.") from None
    return ray


def cluster_cpus(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 1))


def _on_device(fn: Callable, device: str) -> Callable:
    """fn run under `using(device)` in the worker: a task's emulator runs where the caller's
    does (a context variable does not cross into Ray's worker processes by itself)."""
    def task(*args):
        with using(device):
            return fn(*args)

    return task


def run_tasks(fn: Callable, jobs: Iterable[tuple], workers: Optional[int] = None, address: Optional[str] = None,
              done: Optional[Callable] = None) -> list:
    """fn(*job) for each job as a Ray task (one CPU each); results in job order.
    `done(result)` is called as each task finishes (for a progress bar)."""
    ray = connect(workers, address)
    remote = ray.remote(num_cpus=1, max_retries=0)(_on_device(fn, current()))
    pending = {remote.remote(*job): i for i, job in enumerate(jobs)}
    results = [None] * len(pending)
    waiting = list(pending)
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:  # a task's HybridcError reaches the user as itself
                if isinstance(exc.cause, HybridcError):
                    raise exc.cause from None
                raise
            results[pending[ready[0]]] = result
            if done:
                done(result)
    except BaseException:
        for ref in waiting:
            ray.cancel(ref, force=True)
        raise
    return results
