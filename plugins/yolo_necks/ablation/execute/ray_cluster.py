"""The Ray executor (``executor=ray``): each run a Ray task, on one machine or a cluster.

The driver (the process running the sweep) submits as many tasks as the cluster has room for (its CPUs and GPUs
divided by ``cpus_per_run`` / ``gpus_per_run``; fractional GPUs pack runs on one GPU), collects rows with
``ray.wait`` as tasks finish, and stays the only writer of ``results.csv``. A task whose worker process or node dies
is retried by Ray (``max_retries``, default 1), then recorded as failed; the sweep goes on. Ctrl-C cancels the tasks
still pending or running; every finished row is already in ``results.csv``.

On its node, a task rebuilds everything from the :class:`~yolo_necks.ablation.execute.run.RunTask` alone: a built-in dataset
from its parameters into that node's cache, a data YAML must be readable at the same path (checked first; the run
fails with one line naming the node and the path otherwise). Each row records the node (hostname and Ray node id)
and where the run's weights are (on that node's disk unless the sweep folder is on a shared filesystem). Runs do not
time themselves: after training, the driver (or the node ``timing_node`` names, see :func:`time_on_node`) times every
arm once, with nothing else of the sweep running.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import replace
from typing import Callable, Iterator

from ...errors import NeckConfigError
from .executors import TICK_S, Event, Executor
from .run import RunTask, node_name, now, one_line, output_to, run_task, set_budget
from ..spec.types import Execution

FORWARDED_ENV = ("YOLO_NECKS_DATA_DIR", "YOLO_OFFLINE", "YOLO_NECKS_AUTOLOAD")


def require_ray():
    try:
        import ray
    except ImportError:
        raise NeckConfigError("executor=ray needs Ray, which is not installed: pip install 'yolo-necks[ray]'") from None
    return ray


class RayExecutor(Executor):
    """Runs each task as a Ray task (see the module docstring)."""

    name = "ray"

    def __init__(self, execution: Execution, execute: Callable | None = None):
        self.ray = require_ray()
        self.execution, self.execute = execution, execute
        on_gpu = bool(execution.devices) and execution.devices != ("cpu",)
        threads = execution.threads_per_run if isinstance(execution.threads_per_run, int) else None
        self.cpus = execution.cpus_per_run or float(threads or 1)
        self.gpus = execution.gpus_per_run if execution.gpus_per_run is not None else (1.0 if on_gpu else 0.0)
        self.gpu = self.gpus > 0  # a run that asks Ray for a GPU trains on it
        self.threads = threads or max(1, int(self.cpus))
        self._started_here = False
        self._inflight: dict = {}
        self._connect()
        self.slots = self._capacity()

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        runtime_env = {"env_vars": env} if env else None
        address = self.execution.ray_address
        try:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
            else:
                ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
        except Exception as e:
            raise NeckConfigError(f"key 'ray_address': cannot connect to Ray at '{address}' ({one_line(e)}); start a "
                                  "head with 'ray start --head' or use ray_address=local") from None
        self._started_here = True

    def _capacity(self) -> int:
        """Runs the cluster can hold at once (at least 1)."""
        res = self.ray.cluster_resources()
        n = math.floor(res.get("CPU", 1) / self.cpus) if self.cpus else 1
        if self.gpus:
            n = min(n, math.floor(res.get("GPU", 0) / self.gpus))
            if n < 1:
                raise NeckConfigError(f"executor=ray: the cluster has {res.get('GPU', 0):g} GPUs, a run asks for "
                                      f"{self.gpus:g} (gpus_per_run); use device=cpu or add GPU nodes")
        return max(1, n)

    def describe(self) -> str:
        res = self.ray.cluster_resources()
        nodes = len([n for n in self.ray.nodes() if n.get("Alive")])
        return (f"Ray, {nodes} node(s) with {res.get('CPU', 0):g} CPUs and {res.get('GPU', 0):g} GPUs; "
                f"{self.cpus:g} CPU(s) and {self.gpus:g} GPU(s) per run, up to {self.slots} at once")

    def run(self, tasks: list[RunTask]) -> Iterator[Event]:
        ray = self.ray
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.execution.max_retries,
                            retry_exceptions=False, max_calls=1)(ray_entry)
        queue = list(tasks)
        try:
            while queue or self._inflight:
                while queue and len(self._inflight) < self.slots:
                    task = queue.pop(0)
                    ref = remote.remote(task, self.execute, self.threads, self.gpu)
                    self._inflight[ref] = (task, time.perf_counter())
                    yield Event("start", task)
                done, _ = ray.wait(list(self._inflight), num_returns=1, timeout=TICK_S)
                if not done:
                    yield Event("tick")
                    continue
                for ref in done:
                    task, t0 = self._inflight.pop(ref)
                    try:
                        row = ray.get(ref)
                    except ray.exceptions.TaskCancelledError:
                        continue
                    except ray.exceptions.RayError as e:  # the worker or its node died, after max_retries
                        row = {
                            **task.row,
                            "status": "failed",
                            "error": f"Ray task failed after {self.execution.max_retries} retr"
                            f"{'y' if self.execution.max_retries == 1 else 'ies'}: {_ray_error(e)}",
                            "executor": "ray",
                            "wall_s": time.perf_counter() - t0,
                            "finished_at": now(),
                        }
                    yield Event("end", task, row)
        finally:
            self.cancel()

    def check_timing_node(self, node: str) -> None:
        find_node(self.ray, node)

    def time_arms(self, models: list, spec, threads: int, node: str | None = None,
                  weights: dict[str, str] | None = None):
        if not node:
            return super().time_arms(models, spec, threads, weights=weights)
        return time_on_node(self.ray, node, models, spec, threads, weights)

    def cancel(self) -> None:
        for ref in list(self._inflight):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self._inflight.clear()

    def close(self) -> None:
        if self._started_here:
            with contextlib.suppress(Exception):
                self.ray.shutdown()
            self._started_here = False


def _ray_error(e: BaseException) -> str:
    """The first line of a Ray error (they carry whole remote tracebacks)."""
    text = str(e).strip().splitlines()
    first = next((line for line in text if line.strip()), type(e).__name__)
    return f"{type(e).__name__}: {' '.join(first.split())}"[:300]


# ----------------------------------------------------------------------------------------------------- on the node
def ray_entry(task: RunTask, execute: Callable | None, threads: int, gpu: bool) -> dict:
    """A Ray task: one run on whichever node Ray chose. Returns the complete row."""
    import ray

    set_budget(threads)
    ctx = ray.get_runtime_context()
    gpu_ids = [str(i) for i in ray.get_gpu_ids()] if gpu else []
    device = ",".join(str(i) for i in range(len(gpu_ids))) if gpu_ids else "cpu"  # Ray set CUDA_VISIBLE_DEVICES
    row = {**task.row, "node": node_name(), "node_id": ctx.get_node_id()[:12], "executor": "ray", "threads": threads,
           "run_device": ",".join(gpu_ids) if gpu_ids else "cpu"}
    if gpu and not gpu_ids:
        error = f"node {node_name()}: Ray gave this run no GPU"
        return {**row, "status": "failed", "error": error, "finished_at": now()}
    task = replace(task, row=row, device=device, threads=threads)
    try:
        log = task.plan.run_dir / "train.log"
        log.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return {**row, "status": "failed", "finished_at": now(),
                "error": f"node {node_name()}: cannot create run folder '{task.plan.run_dir}' ({one_line(e)})"}
    with output_to(log):
        return run_task(task, execute)


def find_node(ray, node: str) -> dict:
    """The live Ray node named by ``node``: its hostname, IP or the start of its node id (one line if none or several)."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    hits = [n for n in alive if node in (n.get("NodeManagerHostname"), n.get("NodeManagerAddress"))
            or str(n.get("NodeID", "")).startswith(node)]
    if len(hits) != 1:
        known = ", ".join(f"{n.get('NodeManagerHostname')} ({n.get('NodeManagerAddress')}, {n['NodeID'][:12]})"
                          for n in alive)
        what = "no live Ray node matches" if not hits else f"{len(hits)} Ray nodes match"
        raise NeckConfigError(f"key 'timing_node': {what} '{node}'; nodes: {known}")
    return hits[0]


def time_on_node(ray, node: str, models: list, spec, threads: int,
                 weights: dict[str, str] | None = None) -> tuple[list[dict], dict]:
    """Time the arms (:func:`~yolo_necks.ablation.execute.arm_speed.time_arms`) as one Ray task pinned to ``node``, asking
    for the timing's threads (at most the node's CPUs) so that no run shares them. ``weights`` (each arm's trained
    weights, for ``speed.formats`` beyond torch) are paths: the node reads them where the runs wrote them (a shared
    sweep folder); a path the node cannot read leaves that arm's format cells with their one-line error."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .arm_speed import time_arms

    found = find_node(ray, node)
    threads = max(1, min(threads, int(found.get("Resources", {}).get("CPU", threads))))
    strategy = NodeAffinitySchedulingStrategy(found["NodeID"], soft=False)
    task = ray.remote(num_cpus=threads, max_calls=1)(time_arms).options(scheduling_strategy=strategy)
    rows, rounds = ray.get(task.remote(models, spec, threads, weights=weights))
    return [{**r, "node": found["NodeID"][:12]} for r in rows], rounds
