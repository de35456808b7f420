"""Experiment trackers: a run's config, metrics, summary and pictures sent to Weights & Biases
and/or MLflow, as well as to its own files (which stay the truth about the run).

    names = trackers.check(["wandb", "mlflow"])      # ConfigError: unknown, or not installed
    with trackers.tracking(names, workdir, record, name) as tracked:
        tracked.catch_up(workdir / "metrics.jsonl")  # rows a tracker has not had yet
        tracked.log(step, row)                       # a metrics.jsonl row: its scalar numbers
        tracked.summary(summary)                     # summary.json: final metrics
        tracked.images(paths)                        # the run's PNG pictures

Each library is optional (`pip install 'dlcore[wandb]'`, `'dlcore[mlflow]'`) and imported only
when its tracker starts: importing dlcore imports neither. Each is configured by its own
environment variables (WANDB_MODE, WANDB_PROJECT, WANDB_DIR; MLFLOW_TRACKING_URI,
MLFLOW_EXPERIMENT_NAME); dlcore only picks defaults where a library has none that fit: the W&B
project 'dlcore', W&B's files in the run directory, the MLflow experiment named after the dlcore
experiment.

A run directory is one tracked run: RUN/tracker.json keeps each tracker's run id and the last
step it was sent, so a resumed run (or `dlcore report`) continues the same tracked run, and a row
at a step the tracker already has is not sent again (W&B refuses steps that go backwards; a
resumed run replays the steps after its checkpoint exactly, so nothing is lost). Rows a tracker
missed (added to a run that had none, or down for a while) are sent from metrics.jsonl when the
run is resumed.

A tracker that fails (no network, a server gone, a bad key) warns once on stderr and is dropped
for the rest of the run; training goes on, and the run's files are complete.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from dlcore.config import ConfigError

STATE = "tracker.json"


# --- which trackers -----------------------------------------------------------------------------

def check(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """The tracker names of `--tracker` values (repeated, or comma lists), deduplicated in order;
    ConfigError naming the first unknown one or the first whose library is not installed."""
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for given in names or ():
        for name in str(given).split(","):
            name = name.strip().lower()
            if not name or name in out:
                continue
            if name not in KINDS:
                raise ConfigError(f"--tracker: '{name}' is not a tracker; choose "
                                  f"{' or '.join(KINDS)} (repeatable, or a comma list)")
            if not _installed(name):
                raise ConfigError(f"--tracker {name}: {name} is not installed; pip install "
                                  f"'dlcore[{name}]' (or pip install {name})")
            out.append(name)
    return tuple(out)


def recorded(workdir: Path) -> tuple[str, ...]:
    """The trackers a run directory was tracked with (`dlcore report` sends its pictures there);
    one whose library is missing now is left out with a warning."""
    names = [n for n in _read_state(Path(workdir)) if n in KINDS]
    for name in (n for n in names if not _installed(n)):
        _warn(f"{name}: not installed, so the pictures are not sent there "
              f"(pip install 'dlcore[{name}]')")
    return tuple(n for n in names if _installed(n))


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# --- the trackers of one run, as one --------------------------------------------------------------

@contextlib.contextmanager
def tracking(names: Iterable[str], workdir: Path, record: dict,
             name: str) -> Iterator[Tracked]:
    """`start(...)`, closed at the end with the run's outcome (finished, failed or killed)."""
    from dlcore.watch import Interrupted
    tracked = start(names, workdir, record, name)
    status = "failed"
    try:
        yield tracked
        status = "finished"
    except Interrupted:
        status = "killed"
        raise
    finally:
        tracked.close(status)


def start(names: Iterable[str], workdir: Path, record: dict, name: str) -> Tracked:
    """Start (or continue, by the ids in RUN/tracker.json) a tracked run of `workdir` in each
    tracker `names`; record: the run's config (config.json), name: the run's name. A tracker
    that cannot start warns and is left out. No names: nothing is imported or written."""
    workdir, names = Path(workdir), tuple(names)
    state = _read_state(workdir) if names else {}
    params = _params(record)
    experiment = str(record.get("experiment") or name)
    opened: dict[str, Tracker] = {}
    for kind in names:
        try:
            tracker = KINDS[kind](workdir, params, experiment, dict(state.get(kind, {})))
        except Exception as e:  # noqa: BLE001 - any failure of a tracker leaves the run alone
            _failed(kind, e)
            continue
        # a new tracked run (none recorded, or the recorded one is gone) has no step yet
        state[kind] = {**(state.get(kind, {}) if tracker.resumed else {}), **tracker.state}
        opened[kind] = tracker
        print(f"{kind}: {'continuing' if tracker.resumed else 'started'} run {tracker.where}",
              flush=True)
    tracked = Tracked(workdir, opened, state)
    tracked.save()
    return tracked


class Tracked:
    """The trackers of one run: every call goes to each; one that raises is dropped with a
    warning. Steps a tracker was sent are remembered in RUN/tracker.json."""

    def __init__(self, workdir: Path, opened: dict[str, Tracker], state: dict):
        self.workdir, self._on, self._state = Path(workdir), opened, state

    def log(self, step: int, row: dict) -> None:
        """The scalar numbers of a metrics row (not its time) at `step`, to each tracker that
        has not had this step yet: the means over seeds, and with several seeds (or a sweep's
        members) each one's value as '<name>_seed<i>', i its index in the run's seed list (a
        sweep's member; '/<i>' would make a metric both a file and a folder in MLflow's store)."""
        values = _scalars({k: v for k, v in row.items() if k not in ("step", "time", "per_seed")})
        values.update(_per_seed(row.get("per_seed", {})))
        sent = False
        for kind in list(self._on):
            if values and step > self._state[kind].get("step", -1):
                if self._call(kind, "log", step, values, row.get("time")):
                    self._state[kind]["step"] = step
                    sent = True
        if sent:
            self.save()

    def catch_up(self, metrics: Path) -> None:
        """Send the rows of `metrics` (metrics.jsonl, already cut back to the checkpoint) that a
        tracker has not had: all of them to a new tracked run."""
        if not self._on:
            return
        from dlcore.writers import read_jsonl
        for row in read_jsonl(metrics, warn=False):
            self.log(row["step"], row)

    def summary(self, summary: dict) -> None:
        """The final metrics of summary.json (scalars), its time and rate."""
        values = _scalars({**summary.get("metrics", {}), "seconds": summary.get("seconds"),
                           "steps_per_second": summary.get("steps_per_second")})
        values.update(_per_seed(summary.get("per_seed", {})))
        for kind in list(self._on):
            self._call(kind, "summary", self._state[kind].get("step", 0), values)

    def images(self, paths: Iterable[str | Path]) -> None:
        """PNG pictures, named by file name (a later picture of the same name replaces it where
        the tracker keeps files, and is added at the run's last step where it keeps a history)."""
        paths = [Path(p) for p in paths if Path(p).suffix.lower() == ".png" and Path(p).exists()]
        for kind in list(self._on) if paths else ():
            self._call(kind, "images", self._state[kind].get("step", 0), paths)

    def close(self, status: str | None = "finished") -> None:
        """End each tracked run as finished, failed or killed; None: as it was before this
        (`dlcore report` adding pictures to an interrupted run leaves it interrupted)."""
        for kind in list(self._on):
            self._call(kind, "close", status)
        self._on = {}

    def save(self) -> None:
        if self._state:
            from dlcore.rundir import write_json
            write_json(self.workdir / STATE, self._state)

    def _call(self, kind: str, method: str, *args: object) -> bool:
        try:
            getattr(self._on[kind], method)(*args)
            return True
        except Exception as e:  # noqa: BLE001 - see the module's docstring
            self._on.pop(kind)
            _failed(kind, e)
            return False


def _failed(kind: str, e: Exception) -> None:
    message = " ".join(str(e).split())[:300]
    _warn(f"{kind}: {type(e).__name__}: {message}; training goes on without it (the run "
          "directory holds everything; run the same command again to send what it missed)")


def _warn(message: str) -> None:
    print(f"dlcore: warning: {message}", file=sys.stderr, flush=True)


def _read_state(workdir: Path) -> dict:
    """RUN/tracker.json, or {} when absent or unreadable (then new tracked runs are started)."""
    path = workdir / STATE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        _warn(f"{path} is unreadable; new tracked runs are started")
        return {}
    return {k: v for k, v in state.items() if isinstance(v, dict)} if isinstance(state, dict) \
        else {}


def _params(record: dict) -> dict:
    """The config's leaves by dotted name; lists, None and the like as JSON text."""
    from dlcore.config import flatten
    return {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v, default=str)
            for k, v in flatten(record).items()}


def _per_seed(per_seed: dict) -> dict[str, float]:
    """{'train/loss': [v0, v1, ...]} -> {'train/loss_seed0': v0, ...}: one number per seed (a
    metric that is a vector for each seed is left out, as with the means)."""
    return _scalars({f"{k}_seed{i}": v for k, vs in per_seed.items()
                     if isinstance(vs, list) and len(vs) > 1
                     for i, v in enumerate(vs)})


def _scalars(values: dict) -> dict[str, float]:
    """The finite real numbers of `values` (numpy and JAX scalars too) as floats."""
    out = {}
    for k, v in values.items():
        if isinstance(v, (str, bytes, bool, dict, list, tuple)) or v is None \
                or getattr(v, "shape", ()) != ():
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
    return out


def _label(workdir: Path) -> str:
    """The tracked run's name: the run directory's last two parts (runs/mnist1d/mlp-quick ->
    'mnist1d/mlp-quick'; a seed's directory keeps its run's name)."""
    return "/".join(workdir.resolve().parts[-2:])


class Tracker(Protocol):
    """What each library's class gives: made by `KINDS[name](workdir, params, experiment,
    state)`, state being what RUN/tracker.json kept of it ({} the first time)."""

    resumed: bool  # it continues the tracked run `state` names
    state: dict    # what RUN/tracker.json keeps of it: its run id
    where: str     # the run's id and where it is, said once on stdout

    def log(self, step: int, values: dict[str, float], time: float | None) -> None: ...

    def summary(self, step: int, values: dict[str, float]) -> None: ...

    def images(self, step: int, paths: list[Path]) -> None: ...

    def close(self, status: str | None) -> None: ...


# --- Weights & Biases -----------------------------------------------------------------------------

class _Wandb:
    """A W&B run per run directory. Metrics are logged against a custom x-axis, the metric
    'step' (W&B's own `_step` just counts calls), so pictures and a resumed run's rows never
    clash with W&B's rule that steps only go forward. wandb's console capture is off (it would
    wrap the progress bar's stream); W&B's files go to RUN/wandb unless WANDB_DIR says where.
    `reinit='create_new'`: a run already open in the process (a notebook's) is left alone."""

    def __init__(self, workdir: Path, params: dict, experiment: str, state: dict):
        import wandb
        self._wandb = wandb
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "dlcore",
            dir=None if os.environ.get("WANDB_DIR") else str(workdir),
            id=state.get("id"), resume="allow", name=_label(workdir), group=experiment,
            tags=[experiment[:64]], config={**params, "dlcore.workdir": str(workdir.resolve())},
            allow_val_change=True, reinit="create_new",
            settings=wandb.Settings(console="off", silent=True))
        run.define_metric("step")
        run.define_metric("*", step_metric="step")
        self.run = run
        self.resumed = bool(state.get("id")) and state["id"] == run.id
        self.state = {"id": run.id, "project": run.project}
        self.where = (f"{run.id} (offline: {Path(run.dir).parent})" if run.offline
                      else f"{run.id} ({run.url})")

    def log(self, step: int, values: dict, time: float | None) -> None:
        self.run.log({**values, "step": step})

    def summary(self, step: int, values: dict) -> None:
        self.run.summary.update(values)

    def images(self, step: int, paths: list[Path]) -> None:
        self.run.log({"step": step,
                      **{f"plots/{p.stem}": self._wandb.Image(str(p)) for p in paths}})

    def close(self, status: str | None) -> None:
        self.run.finish(exit_code=0 if status in ("finished", None) else 1)


# --- MLflow ---------------------------------------------------------------------------------------

class _Mlflow:
    """An MLflow run per run directory, through `MlflowClient` (never mlflow's active-run global):
    the tracking URI is MLflow's (MLFLOW_TRACKING_URI, else its default), the experiment
    MLFLOW_EXPERIMENT_NAME or else the dlcore experiment's name. Params are the config's leaves
    (MLflow never changes a param, so a resumed run adds only new ones; config.json, an artifact,
    has the current values); summary metrics go at the run's last step, with summary.json and
    config.json as artifacts; pictures are artifacts in plots/. A call to a server that is gone
    waits for MLflow's own retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT)
    before it fails."""

    STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
    _before = "FINISHED"  # the status a continued run had

    def __init__(self, workdir: Path, params: dict, experiment: str, state: dict):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        self._client = client = MlflowClient()
        self._workdir = workdir
        run = self._existing(state.get("run_id"))
        self.resumed = run is not None
        if run is None:
            run = client.create_run(self._experiment_id(experiment), run_name=_label(workdir),
                                    tags={"dlcore.experiment": experiment,
                                          "dlcore.workdir": str(workdir.resolve())})
            have = {}
        else:
            self._before = run.info.status
            client.update_run(run.info.run_id, status="RUNNING")
            have = run.data.params
        self.run_id = run.info.run_id
        new = [Param(_key(k), str(v)[:6000]) for k, v in params.items() if _key(k) not in have]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 params per request
            client.log_batch(self.run_id, params=new[i:i + 100])
        self.state = {"run_id": self.run_id, "tracking_uri": client.tracking_uri}
        self.where = f"{self.run_id} in {client.tracking_uri}"

    def _existing(self, run_id):
        """The recorded run, or None when there is none or this tracking store does not have it
        (another MLFLOW_TRACKING_URI, a deleted run): then a new run is started."""
        from mlflow.exceptions import MlflowException
        if not run_id:
            return None
        try:
            run = self._client.get_run(run_id)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return None
            raise
        return run if run.info.lifecycle_stage == "active" else None

    def _experiment_id(self, experiment: str) -> str:
        if os.environ.get("MLFLOW_EXPERIMENT_ID"):
            return os.environ["MLFLOW_EXPERIMENT_ID"]
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or experiment
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self._client.create_experiment(name)
        except Exception:  # noqa: BLE001 - another process created it meanwhile
            found = self._client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log(self, step: int, values: dict, time: float | None) -> None:
        import time as clock
        from mlflow.entities import Metric
        ms = int((time or clock.time()) * 1000)
        metrics = [Metric(_key(k), v, ms, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):  # MLflow's limit per request
            self._client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def summary(self, step: int, values: dict) -> None:
        self.log(step, values, None)
        for name in ("config.json", "summary.json"):  # the run's own record of itself
            if (self._workdir / name).exists():
                self._client.log_artifact(self.run_id, str(self._workdir / name))

    def images(self, step: int, paths: list[Path]) -> None:
        for path in paths:
            self._client.log_artifact(self.run_id, str(path), "plots")

    def close(self, status: str | None) -> None:
        before = self._before if self._before in self.STATUS.values() else "FINISHED"
        self._client.set_terminated(self.run_id, self.STATUS[status] if status else before)


def _key(name: str) -> str:
    """A param or metric name MLflow takes: letters, digits and _-. /: only, at most 250."""
    return re.sub(r"[^\w\-. /]", "_", name)[:250]


KINDS: dict[str, Callable[[Path, dict, str, dict], Tracker]] = {"wandb": _Wandb,
                                                             "mlflow": _Mlflow}
