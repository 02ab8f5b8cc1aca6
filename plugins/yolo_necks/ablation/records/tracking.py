"""Sweeps in MLflow: an experiment per sweep, a parent run for the sweep, a child run per run (arm x seed).

Only imported when a sweep asks for it (spec key ``mlflow``) or by ``yolo-necks report --mlflow``; MLflow itself is
imported inside the functions. Where each part runs:

* The sweep process, before anything trains (:func:`open_sweep`): resolves the tracking URI (a relative local store
  becomes absolute, so worker processes and Ray tasks find the same one), finds or creates the experiment and the
  sweep's parent run (found again on resume by its ``sweep_key`` tag, a hash of the sweep folder), and marks child
  runs an interrupted earlier process left RUNNING as KILLED. MLflow not installed or the store not answering: one
  warning line, and the sweep runs without tracking. As rows arrive it checks that each is in MLflow
  (:meth:`SweepTracker.record`: a run whose process died gets its FAILED run here); at the end it back-fills rows of
  ``results.csv`` still missing and logs the sweep's files to the parent (:meth:`SweepTracker.close`).
* The process that trains a run (:func:`start_child`, from :func:`yolo_necks.ablation.execute.run.run_task`: the sweep
  process itself, a local worker process or a Ray task): starts the child run there as the active run, with
  ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME`` and ``MLFLOW_KEEP_RUN_ACTIVE`` set, so that ultralytics' own
  MLflow callback (on with ``yolo settings mlflow=True``) logs its per-epoch metrics into it instead of opening
  another run, and leaves it open. After the run, :meth:`ChildRun.finish` logs the row (tags, every numeric column
  as a metric, the error of a failed run as a tag and ``error.txt``), ends the run FINISHED or FAILED and restores
  the environment. Tracking never fails a run: a problem is a warning in the run's log.
* ``yolo-necks report DIR --mlflow URI`` (:func:`sync_folder`): the same back-fill for an existing sweep folder.

A row is in MLflow when a child run of the sweep that is no longer RUNNING carries its ``config_hash`` and
``finished_at`` tags, so resume and back-fill never log a row twice.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ...errors import NeckConfigError, NeckError, one_line
from .columns import NOT_METRICS, PARAM_COLUMNS, TAG_COLUMNS
from .store import RESULTS, ResultsStore

ENV_URI, ENV_EXPERIMENT, ENV_KEEP = "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_KEEP_RUN_ACTIVE"
PARENT_TAG, NAME_TAG = "mlflow.parentRunId", "mlflow.runName"
SWEEP_FILES = ("summary.md", "summary.csv", "pareto.png", "curves.png", "spec.yaml", RESULTS, "speed.csv",
               "speed_rounds.csv", "per_class.csv", "summary_per_class.csv")
PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # answer or fail at once
MAX_TAG, MAX_PARAM = 5000, 6000


class TrackingUnavailable(NeckError):
    """MLflow is not installed, or its tracking store does not answer."""


@dataclass(frozen=True)
class TrackingRef:
    """Where a run's child run goes; travels with each task to the process that trains it."""

    uri: str
    experiment_id: str
    experiment: str
    parent_run_id: str
    sweep_key: str


# ------------------------------------------------------------------------------------------------------- helpers
def _mlflow():
    try:
        import mlflow
    except ImportError:
        raise TrackingUnavailable("MLflow is not installed: pip install 'yolo-necks[mlflow]'") from None
    return mlflow


def _logger():
    from ultralytics.utils import LOGGER

    return LOGGER


@contextlib.contextmanager
def _env(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the block; restore them after."""
    saved = {k: os.environ.get(k) for k in values}
    _set_env(values)
    try:
        yield
    finally:
        _set_env(saved)


def _set_env(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def resolve_uri(uri: str | None) -> str:
    """The tracking URI every process of the sweep uses: None means ``MLFLOW_TRACKING_URI`` or MLflow's default
    store; a local store given relative to this working directory (``sqlite:///mlflow.db``, ``./mlruns``) is made
    absolute, since worker processes and Ray tasks may start elsewhere."""
    if uri is None:
        uri = os.environ.get(ENV_URI) or _mlflow().get_tracking_uri()
    uri = str(uri)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///"):]
        return uri if path in ("", ":memory:") else "sqlite:///" + str(Path(path).expanduser().resolve())
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return Path(uri[len("file:"):]).expanduser().resolve().as_uri()
    if uri.startswith(("/", ".", "~")):
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def sweep_key(folder: str | Path) -> str:
    """The tag that finds a sweep's runs again: a hash of its folder's absolute path."""
    return hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]


def _text(v: Any) -> str:
    """A cell as results.csv holds it."""
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def row_label(row: dict) -> str:
    return f"{_text(row.get('arm'))} seed {_text(row.get('seed'))}"


def row_key(row: dict) -> tuple[str, str]:
    """What identifies a recorded row in MLflow (an attempt of a run): its config hash and when it finished."""
    return _text(row.get("config_hash")), _text(row.get("finished_at"))


def row_tags(row: dict) -> dict[str, str]:
    tags = {k: _text(row[k])[:MAX_TAG] for k in TAG_COLUMNS if _text(row.get(k))}
    if row.get("status") not in (None, "", "ok") and _text(row.get("error")):
        tags["error"] = _text(row["error"])[:MAX_TAG]
    return tags


def row_params(row: dict) -> dict[str, str]:
    return {k: _text(row[k])[:MAX_PARAM] for k in PARAM_COLUMNS if _text(row.get(k))}


def row_metrics(row: dict) -> dict[str, float]:
    """Every numeric column of a row (results.csv text or the values a run returned), as MLflow metrics; private
    keys a run's row carries to the sweep process (``_per_class``) are no columns."""
    out = {}
    for k, v in row.items():
        if k in NOT_METRICS or isinstance(v, bool) or not isinstance(k, str) or k.startswith("_"):
            continue
        try:
            x = float(_text(v))
        except ValueError:
            continue
        if math.isfinite(x):
            out[k] = x
    return out


def spec_params(spec: dict) -> dict[str, str]:
    """A spec mapping as MLflow params (where it is tracked aside): nested mappings as dotted keys, lists and other
    values as JSON."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = (value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str))[
                :MAX_PARAM]

    walk("", {k: v for k, v in spec.items() if k not in ("cpu", "mlflow", "mlflow_experiment")})
    return out


def _ms(stamp: Any) -> int | None:
    try:
        return int(_dt.datetime.fromisoformat(_text(stamp)).timestamp() * 1000)
    except ValueError:
        return None


def _status(row: dict) -> str:
    return "FINISHED" if _text(row.get("status")) == "ok" else "FAILED"


def _log_row(client, run_id: str, row: dict) -> None:
    """Tags, params, metrics and (failed) the error of a row, into an existing run."""
    from mlflow.entities import Metric, Param, RunTag

    when = _ms(row.get("finished_at")) or int(_dt.datetime.now().timestamp() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, when, 0) for k, v in row_metrics(row).items()],
                     params=[Param(k, v) for k, v in row_params(row).items()],
                     tags=[RunTag(k, v) for k, v in row_tags(row).items()])
    if _status(row) == "FAILED":
        trace = Path(_text(row.get("run_dir")) or ".") / "error.txt"
        text = trace.read_text(encoding="utf-8", errors="replace") if row.get("run_dir") and trace.is_file() else ""
        client.log_text(run_id, text or _text(row.get("error")) or "failed", "error.txt")


def _search(client, experiment_id: str, where: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], where, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


# --------------------------------------------------------------------------------------- in the training process
class ChildRun:
    """A run's child run, active in the process that trains it (see :func:`start_child`)."""

    def __init__(self, ref: TrackingRef, run_id: str, saved_env: dict[str, str | None]):
        self.ref, self.run_id, self.saved_env = ref, run_id, saved_env

    def finish(self, row: dict, killed: bool = False) -> None:
        """Log the row, end the run (FINISHED, FAILED, or KILLED on Ctrl-C), restore the environment. Never raises."""
        mlflow = _mlflow()
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(self.ref.uri)
            _log_row(client, self.run_id, row)
            status = "KILLED" if killed else _status(row)
            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.run_id:
                mlflow.end_run(status)
            else:  # someone ended it as the active run already: set the status it deserves
                client.set_terminated(self.run_id, status)
        except Exception as e:
            _logger().warning(f"MLflow: could not finish run {self.run_id} of {row_label(row)} ({one_line(e)}); "
                              "the sweep process records it")
        finally:
            _restore(mlflow, self.saved_env, self.run_id, "KILLED" if killed else _status(row))


def _restore(mlflow, saved: dict[str, str | None], run_id: str | None = None, status: str = "FAILED") -> None:
    """End our run if it is still the active one (something above failed), then restore the tracking URI and the
    environment variables as they were before the run."""
    with contextlib.suppress(Exception):
        active = mlflow.active_run()
        if run_id and active is not None and active.info.run_id == run_id:
            mlflow.end_run(status)
    with contextlib.suppress(Exception):
        mlflow.set_tracking_uri(saved.get(ENV_URI))
    _set_env(saved)


def start_child(ref: TrackingRef, row: dict, label: str) -> ChildRun | None:
    """Start the child run of a run in the process that trains it and make it the active run (see the module
    docstring); sets ``row["mlflow_run_id"]``. None, with a warning, when MLflow cannot be reached from here."""
    saved = {k: os.environ.get(k) for k in (ENV_URI, ENV_EXPERIMENT, ENV_KEEP)}
    try:
        mlflow = _mlflow()
    except TrackingUnavailable as e:
        _logger().warning(f"MLflow: {e}; {label} is recorded by the sweep process")
        return None
    try:
        mlflow.set_tracking_uri(ref.uri)  # also exported as MLFLOW_TRACKING_URI for ultralytics' callback
        _set_env({ENV_URI: ref.uri, ENV_EXPERIMENT: ref.experiment, ENV_KEEP: "true"})
        tags = {**row_tags(row), "role": "run", "sweep_key": ref.sweep_key, PARENT_TAG: ref.parent_run_id}
        run = mlflow.start_run(experiment_id=ref.experiment_id, run_name=label, tags=tags)
    except Exception as e:
        _logger().warning(f"MLflow: could not start a run for {label} at {ref.uri} ({one_line(e)}); the sweep "
                          "process records it")
        _restore(mlflow, saved)
        return None
    row["mlflow_run_id"] = run.info.run_id
    with contextlib.suppress(Exception):  # logged again with the row at the end
        mlflow.log_params(row_params(row))
    return ChildRun(ref, run.info.run_id, saved)


# ------------------------------------------------------------------------------------------- in the sweep process
class SweepTracker:
    """The sweep's experiment and parent run, from the sweep process (see the module docstring)."""

    def __init__(self, client, ref: TrackingRef, folder: Path, created: bool):
        self.client, self.ref, self.folder, self.created = client, ref, folder, created
        self._warned = False

    @classmethod
    def open(cls, folder: str | Path, uri: str | None, experiment: str, spec: dict, name: str) -> SweepTracker:
        """Connect, find or create the experiment and the sweep's parent run; log the spec as its params."""
        _mlflow()
        from mlflow.tracking import MlflowClient

        folder = Path(folder)
        uri = resolve_uri(uri)
        try:
            with _env(PROBE_ENV):
                client = MlflowClient(uri)
                exp = client.get_experiment_by_name(experiment)
                if exp is None:
                    exp_id = client.create_experiment(experiment)
                else:
                    exp_id = exp.experiment_id
                    if exp.lifecycle_stage == "deleted":
                        client.restore_experiment(exp_id)
        except Exception as e:
            raise TrackingUnavailable(f"MLflow store {uri} is not reachable ({one_line(e, 200)})") from e
        key = sweep_key(folder)
        found = sorted(_search(client, exp_id, f"tags.sweep_key = '{key}' and tags.role = 'sweep'"),
                       key=lambda r: r.info.start_time)
        if found:
            parent = found[0]
        else:
            parent = client.create_run(exp_id, run_name=name, tags={"role": "sweep", "sweep_key": key,
                                                                     "sweep_dir": str(folder.resolve())})
        tracker = cls(client, TrackingRef(uri, exp_id, experiment, parent.info.run_id, key), folder, not found)
        tracker._log_spec(parent, spec)
        return tracker

    def describe(self) -> str:
        how = "new parent run" if self.created else "parent run found again"
        return f"MLflow experiment '{self.ref.experiment}' at {self.ref.uri}, {how} {self.ref.parent_run_id}"

    def _log_spec(self, parent, spec: dict) -> None:
        """The spec as the parent's params. Params cannot change: keys changed since are named in a tag (the current
        spec is the artifact spec.yaml)."""
        from mlflow.entities import Param

        params, old = spec_params(spec), parent.data.params
        new = [Param(k, v) for k, v in params.items() if k not in old]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.ref.parent_run_id, params=new[i : i + 100])
        changed = sorted(k for k, v in params.items() if k in old and old[k] != v)
        if changed:
            self.client.set_tag(self.ref.parent_run_id, "spec_changed", ", ".join(changed)[:MAX_TAG])

    def children(self, config_hash: str | None = None) -> list:
        where = f"tags.sweep_key = '{self.ref.sweep_key}' and tags.role = 'run'"
        if config_hash:
            where += f" and tags.config_hash = '{config_hash}'"
        return _search(self.client, self.ref.experiment_id, where)

    def _warn(self, what: str, e: BaseException) -> None:
        if not self._warned:
            self._warned = True
            _logger().warning(f"MLflow: {what} ({one_line(e, 200)}); further problems are not reported, and the "
                              "rows missing in MLflow are back-filled at the end of the sweep")

    def mark_running(self) -> None:
        """The sweep (re)starts: its parent is RUNNING, and child runs an earlier process left RUNNING are KILLED
        (the sweep lock says no other process runs this sweep)."""
        self.client.update_run(self.ref.parent_run_id, status="RUNNING")
        self._end_leftovers("the sweep process that ran it stopped before the run ended")

    def _end_leftovers(self, why: str, config_hash: str | None = None, keep: str | None = None,
                       status: str = "KILLED") -> None:
        for r in self.children(config_hash):
            if r.info.status == "RUNNING" and r.info.run_id != keep:
                self.client.set_tag(r.info.run_id, "error", why)
                self.client.set_terminated(r.info.run_id, status)

    def record(self, row: dict) -> None:
        """Make sure a row that reached the sweep process is in MLflow (never raises): the training process normally
        logged and ended its run; if it could not, or died, its run is completed (or created) here, and other
        attempts of the same run left RUNNING (a Ray task retried after its worker died) are ended FAILED."""
        try:
            h = _text(row.get("config_hash"))
            if not h:  # not a planned run's row: nothing to match it with
                self.log_row(row)
                return
            running = [r for r in self.children(h) if r.info.status == "RUNNING"]
            run_id = row.get("mlflow_run_id")
            if not run_id and running:  # its process died mid-run: that run is this row's
                run_id = max(running, key=lambda r: r.info.start_time).info.run_id
            if not run_id:
                self.log_row(row)
            else:  # complete it unless the training process logged this row into it (its finished_at tag)
                run = self.client.get_run(run_id)
                if run.info.status == "RUNNING" or run.data.tags.get("finished_at") != _text(row.get("finished_at")):
                    _log_row(self.client, run_id, row)
                    self.client.set_terminated(run_id, _status(row), end_time=_ms(row.get("finished_at")))
            self._end_leftovers("an earlier attempt whose process died; the run was tried again", h, run_id, "FAILED")
        except Exception as e:
            self._warn(f"could not record {row_label(row)}", e)

    def log_row(self, row: dict) -> str:
        """A row as a new, ended child run (back-fill, or a run whose process never started one)."""
        tags = {**row_tags(row), "role": "run", "sweep_key": self.ref.sweep_key, PARENT_TAG: self.ref.parent_run_id}
        run = self.client.create_run(self.ref.experiment_id, start_time=_ms(row.get("started_at")), tags=tags,
                                     run_name=row_label(row))
        _log_row(self.client, run.info.run_id, row)
        self.client.set_terminated(run.info.run_id, _status(row), end_time=_ms(row.get("finished_at")))
        return run.info.run_id

    def backfill(self, rows: list[dict]) -> tuple[int, int]:
        """Log the rows not in MLflow yet; return (logged now, already there)."""
        present = {(r.data.tags.get("config_hash", ""), r.data.tags.get("finished_at", ""))
                   for r in self.children() if r.info.status != "RUNNING"}
        logged = 0
        for row in rows:
            if row_key(row) in present:
                continue
            self.log_row(row)
            present.add(row_key(row))
            logged += 1
        return logged, len(rows) - logged

    def log_files(self) -> None:
        """The sweep's summaries, figures, spec, results and arm YAMLs, as the parent's artifacts."""
        for name in SWEEP_FILES:
            if (self.folder / name).is_file():
                self.client.log_artifact(self.ref.parent_run_id, str(self.folder / name))
        if (self.folder / "models").is_dir():
            self.client.log_artifacts(self.ref.parent_run_id, str(self.folder / "models"), "models")

    def close(self, status: str = "FINISHED") -> None:
        """End of the sweep (also Ctrl-C: KILLED): back-fill, artifacts, the parent ended. Never raises."""
        try:
            self._end_leftovers("the sweep ended while this run was going")
            self.backfill(ResultsStore(self.folder / RESULTS).read(warn=False))
            self.log_files()
            self.client.set_terminated(self.ref.parent_run_id, status)
        except Exception as e:
            self._warn("could not complete the sweep's parent run", e)


def open_sweep(folder: str | Path, uri: str | None, experiment: str, spec: dict, name: str,
               title: str) -> SweepTracker | None:
    """The tracker of a sweep about to train, or None after one warning line when MLflow cannot be used."""
    try:
        tracker = SweepTracker.open(folder, uri, experiment, spec, name)
        tracker.mark_running()
    except TrackingUnavailable as e:
        _logger().warning(f"{title}: {e}; this sweep runs without MLflow tracking")
        return None
    except Exception as e:  # the store answered the probe but refused what followed
        _logger().warning(f"{title}: MLflow tracking failed ({one_line(e, 200)}); this sweep runs without it")
        return None
    _logger().info(f"{title}: {tracker.describe()}")
    return tracker


def sync_folder(folder: str | Path, uri: str | None, experiment: str | None = None) -> str:
    """``yolo-necks report DIR --mlflow URI``: child runs for the rows of ``results.csv`` not in MLflow yet, and the
    sweep's files on its parent run. Raises :class:`TrackingUnavailable` when the store cannot be used."""
    import yaml

    p = Path(folder)
    folder = p if p.is_dir() else p.parent
    rows = ResultsStore(folder / RESULTS).read(warn=False)
    spec: dict = {}
    with contextlib.suppress(OSError, yaml.YAMLError, UnicodeDecodeError):
        loaded = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8"))
        spec = loaded if isinstance(loaded, dict) else {}
    name = str(spec.get("name") or next((r["sweep"] for r in rows if r.get("sweep")), "") or folder.name)
    experiment = experiment or spec.get("mlflow_experiment") or name
    if not isinstance(experiment, str) or not experiment.strip():
        raise NeckConfigError(f"{folder / 'spec.yaml'}: key 'mlflow_experiment': must be a non-empty string")
    tracker = SweepTracker.open(folder, uri, experiment.strip(), spec, name)
    try:
        logged, there = tracker.backfill(rows)
        tracker.log_files()
        if tracker.created:
            tracker.client.set_terminated(tracker.ref.parent_run_id, "FINISHED")
    except Exception as e:
        raise TrackingUnavailable(f"MLflow store {tracker.ref.uri}: back-fill failed ({one_line(e, 200)})") from e
    return f"MLflow: {logged} run(s) logged, {there} already there -> {tracker.describe()}"
