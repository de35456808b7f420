"""Where metrics go: JSON lines, TensorBoard event files, and a progress bar on stderr.

TensorBoard's files are written by tensorboardX (scalars, the config as text and as
hyperparameters, parameter histograms at checkpoint steps, the run's pictures as images and text),
without TensorFlow. A damaged metrics file is read past line by line, never a
traceback; a resumed run drops what the interrupted one logged after its checkpoint from both
files.
"""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import TqdmWarning

with warnings.catch_warnings():  # in Jupyter without ipywidgets: the text bar, not a warning
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm as _tqdm

# --- JSON lines -----------------------------------------------------------------------------------


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: Path, warn: bool = True) -> list[dict]:
    """Every row of a metrics file: a JSON object with an integer `step`. A torn last line from a
    killed process is skipped silently; any other line that is no such row (bytes that are not
    UTF-8, a JSON list, a step that is not an integer) is skipped with one warning on stderr
    naming the lines, so that a damaged file still draws and resumes."""
    rows, problems = [], []
    for _, row, problem in _scan(path):
        if row is not None:
            rows.append(row)
        elif problem:
            problems.append(problem)
    if problems and warn:
        _warn(f"{path}: skipped {_lines(problems)}")
    return rows


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep only rows with step <= last_step: a resumed run rewrites what came after. Lines that
    are no row are not silently dropped: they go to `<path>.unreadable`, with a warning."""
    if not Path(path).exists():
        return
    kept, bad, problems = [], [], []
    for raw, row, problem in _scan(path):
        if row is not None and row["step"] <= last_step:
            kept.append(row)
        elif problem:
            bad.append(raw)
            problems.append(problem)
    if bad:  # kept aside before the file is rewritten: nothing is lost if this is interrupted
        aside = Path(f"{path}.unreadable")
        with open(aside, "ab") as f:
            f.write(b"".join(line + b"\n" for line in bad))
        _warn(f"{path}: moved {_lines(problems)} to {aside.name}")
    tmp = Path(f"{path}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)


def _scan(path: Path) -> list[tuple[bytes, dict | None, str | None]]:
    """(raw line, row or None, what is wrong with it or None) for each non-blank line; a torn last
    line (no newline after it) that does not parse is (raw, None, None)."""
    if not Path(path).exists():
        return []
    lines = Path(path).read_bytes().split(b"\n")
    out = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        row, problem = _row(raw)
        torn = number == len(lines)  # after the last newline: killed mid-write
        out.append((raw, row, f"line {number}: {problem}" if problem and not torn else None))
    return out


def _row(raw: bytes) -> tuple[dict | None, str | None]:
    """A metrics row, or None and why not."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError:
        return None, "not JSON"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an object"
    step = value.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return None, f"its step is {step!r}, not an integer"
    return value, None


def _lines(problems: list[str]) -> str:
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return f"{len(problems)} unreadable line{'s' if len(problems) > 1 else ''} ({shown})"


def _warn(message: str) -> None:
    print(f"dlcore: warning: {message}", file=sys.stderr, flush=True)


# --- one logged record -------------------------------------------------------------------------------

def means(record: dict, seed_axis: bool) -> dict:
    """Means over the seed axis; a vector metric (one value per test-time step, say) stays a list."""
    out = {}
    for k, v in record.items():
        m = np.asarray(v, np.float64)
        m = m.mean(0) if seed_axis else m
        out[k] = float(m) if m.ndim == 0 else m.tolist()
    return out


def log(workdir: Path, tb, t: int, record: dict, vmapped: bool, trackers=None) -> None:
    """One row of metrics.jsonl (means over seeds, and each seed's values), its scalars in
    TensorBoard, and the row to the experiment trackers (dlcore.trackers.Tracked) if given."""
    mean = means(record, vmapped)
    row = {"step": t, "time": time.time(), **mean}
    if vmapped:
        row["per_seed"] = {k: np.asarray(v).tolist() for k, v in record.items()}
    append_jsonl(workdir / "metrics.jsonl", row)
    tb.scalars(t, mean)
    if trackers is not None:
        trackers.log(t, row)


# --- TensorBoard ----------------------------------------------------------------------------------

class TensorBoardWriter:
    """A run's TensorBoard folder, written by `tensorboardX` (imported here, not with dlcore).

    Scalars go in at their step, one event per step (on disk within a second: tensorboardX's
    thread writes them as they come and flushes every second; `close` writes all). The run's config (`config`, else the
    config.json beside the folder when there is one) goes in once, at step 0 of a fresh run: as
    text (tag 'config', the JSON), and as hyperparameters (its leaves by dotted name, lists as
    JSON), which TensorBoard's HParams view sets beside the run's metrics to compare runs.
    `histograms` adds the parameters' distributions (the loop: at checkpoint steps);
    `write_pictures`, the run's pictures in a file of their own.

    A resumed run must not show the steps its interrupted predecessor logged after the checkpoint
    twice. TensorBoard's own mechanism is used: an event with a SessionLog START at step s makes
    it drop every earlier event at step >= s, across the folder's files. start: the step the run
    resumes from (0: from scratch); when the folder already holds events, START goes at
    start + 1, so the rows up to the checkpoint stay, as in metrics.jsonl, and the config is not
    written again. None: append, drop nothing. Each writer has its own file, named so that
    TensorBoard (which reads a folder's files in name order) reads it after the earlier ones."""

    def __init__(self, logdir: Path, start: int | None = None, config: dict | None = None,
                 suffix: str = ""):
        SummaryWriter = _tensorboardX().SummaryWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        logdir = Path(logdir)
        logdir.mkdir(parents=True, exist_ok=True)
        earlier = any(p.stat().st_size for p in logdir.glob("events.out.tfevents.*"))
        suffix = f".{time.time_ns()}{suffix}"  # unique, and in time order within one second
        self._w = SummaryWriter(str(logdir), flush_secs=1, filename_suffix=suffix)
        self.path = next(logdir.glob(f"events.out.tfevents.*{suffix}"))
        if earlier:
            if start is not None:
                self._w.file_writer.add_event(Event(
                    wall_time=time.time(), step=start + 1,
                    session_log=SessionLog(status=SessionLog.START)))
            return
        if config is None and (logdir.parent / "config.json").exists():
            config = json.loads((logdir.parent / "config.json").read_text())
        if config:
            from tensorboardX.summary import hparams
            self._w.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)
            _, session_start, _ = hparams(_flat(config), {})  # metrics: the run's scalars
            self._w.file_writer.add_summary(session_start, 0)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Numbers, numpy/JAX scalars and 0-d arrays are written; anything else is skipped."""
        from tensorboardX.summary import scalar
        from tensorboardX.proto.summary_pb2 import Summary

        summary = Summary(value=[scalar(k, f).value[0] for k, f in
                                 ((k, _as_float(v)) for k, v in values.items()) if f is not None])
        self._w.file_writer.add_summary(summary, step)

    BINS = 64  # equal widths from the leaf's min to its max (tensorboardX's default, ~500 of
    # uneven width, made sort/gpt --quick's file 5.6x larger; TensorBoard redraws with 30)

    def histograms(self, step: int, state, seed_axis: bool = False) -> int:
        """A histogram of each leaf of `state.params` at `step`, named by its path
        ('params/Dense_0/kernel'); the number of histograms written. Nothing for a state without a
        `params` field, for parameters split over several processes (not all on this one), and for
        a leaf that is not a finite real array. seed_axis: the state is vmapped over seeds; seed
        0's values are written (its leaves' leading axis dropped on the device, before the one
        device_get), as `dlcore report` draws seed 0's pictures: pooling the seeds would blur
        each seed's distribution into one."""
        params = getattr(state, "params", None)
        if params is None:
            return 0
        import jax
        import jax.numpy as jnp

        def real(x) -> bool:  # bfloat16 too, which numpy does not call floating
            dtype = getattr(x, "dtype", None)
            return dtype is not None and (jnp.issubdtype(dtype, jnp.floating)
                                          or jnp.issubdtype(dtype, jnp.integer))

        leaves = jax.tree.leaves(params)
        if not leaves or not all(getattr(x, "is_fully_addressable", True) for x in leaves):
            return 0
        params = jax.tree.map(lambda x: x[0] if seed_axis and real(x) else x, params)
        written = 0
        for path, x in jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]:
            if not real(x) or not np.size(x):
                continue
            values = np.asarray(x).astype(np.float64).ravel()
            if not np.isfinite(values).all():
                continue
            self._w.add_histogram("/".join(["params", *map(_key_name, path)]), values, step,
                                  bins=self.BINS)
            written += 1
        return written

    def pictures(self, step: int, paths) -> None:
        """The run's pictures at `step`: each PNG as an image (tag 'plots/<name>', its pixels as
        PIL reads them), each .txt (a GPT sample, say) as text (tag 'plots/<name>', as written)."""
        from PIL import Image
        for path in map(Path, paths):
            tag = f"plots/{path.stem}"
            if path.suffix.lower() == ".png" and path.exists():
                with Image.open(path) as im:
                    pixels = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
                self._w.add_image(tag, pixels, step, dataformats="HWC")
            elif path.suffix.lower() == ".txt" and path.exists():
                text = path.read_text(encoding="utf-8", errors="replace")
                self._w.add_text(tag, "```\n" + text.rstrip("\n") + "\n```", step)

    def close(self) -> None:
        self._w.close()


PICTURES = ".pictures"  # the name's end of an event file holding pictures only


def write_pictures(logdir: Path, step: int, paths) -> Path | None:
    """The run's pictures (PNG, .txt) in TensorBoard at `step` (the run's last), in a file of
    their own that replaces the one an earlier call wrote (at the end of `dlcore run`, by
    `dlcore report`): pictures drawn again are not shown twice. None when there is nothing to
    write, or the run has no TensorBoard folder."""
    logdir = Path(logdir)
    paths = [Path(p) for p in paths if Path(p).suffix.lower() in (".png", ".txt")]
    if not paths or not logdir.is_dir():
        return None
    earlier = list(logdir.glob(f"events.out.tfevents.*{PICTURES}"))
    w = TensorBoardWriter(logdir, suffix=PICTURES)
    try:
        w.pictures(step, paths)
    finally:
        w.close()
    for old in earlier:
        old.unlink(missing_ok=True)
    return w.path


def _key_name(key) -> str:
    """One step of a pytree path: a dict key, an attribute, an index."""
    for field in ("key", "name", "idx"):
        if hasattr(key, field):
            return str(getattr(key, field))
    return str(key)


def _tensorboardX():
    """`import tensorboardX`, without the PyTorch it imports at import time when installed (for a
    type alias only; it imports it again where it converts tensors, which dlcore never gives it).
    Measured on `dlcore run mnist1d/mlp --quick` (2 CPUs), the import of PyTorch added 1.5 s to
    3.3 s and 190 MiB of memory; tensorboardX alone, about 0.1 s. A PyTorch imported before stays."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        import tensorboardX
        return tensorboardX
    sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects
    try:
        import tensorboardX
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return tensorboardX


def _as_float(v) -> float | None:
    if isinstance(v, (str, bytes)) or getattr(v, "shape", ()) != ():
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _flat(config: dict, prefix: str = "") -> dict:
    """{'optim.learning_rate': 0.01, 'model.hidden': '[100, 100]', ...}: leaves by dotted name,
    what is not a number, a bool or a string as JSON."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


def read_tensorboard(path: Path) -> list[tuple[int, str, float]]:
    """[(step, tag, value)] of the scalars in an event file, or in a folder of them read in name
    order as TensorBoard reads them, by TensorBoard's own reader (`tensorboard`, the `test`
    extra; used by tests). A SessionLog START at step s drops the values before it at steps
    >= s, as TensorBoard does."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.name.startswith("events.out.tfevents.")) \
        if path.is_dir() else [path]
    out: list[tuple[int, str, float]] = []
    for file in files:
        for event in LegacyEventFileLoader(str(file)).Load():
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                out = [e for e in out if e[0] < event.step]
            out.extend((event.step, v.tag, v.simple_value) for v in event.summary.value
                       if v.HasField("simple_value"))
    return out


# --- progress bar ---------------------------------------------------------------------------------

class Progress:
    """The run's progress bar: `tqdm.auto` (a widget in Jupyter, a redrawn line on a terminal).

    `label:  40%|####      | 1200/3000 [00:04<00:06, 291.05step/s, train/loss 0.31 test/accuracy
    0.92]` (one line)

    The rate, the ETA and the elapsed time count training steps only: from `start_timing` (called
    after the first call, which compiles) and without the seconds passed to `exclude` (evaluation).
    Every scalar metric is shown at its latest value under its full name ('train/loss',
    'test/accuracy', the test ones kept between evaluations); anything else (a curve) is not.

    Where it goes (`mode`, else the environment variable DLCORE_PROGRESS, else "auto"):
    - "auto": the bar on a terminal or in a Jupyter kernel (the text bar there when ipywidgets is
      missing, without tqdm's warning); nothing when the stream is not a TTY (a pipe, a CI log).
    - "lines": one plain line (no "\\r", no bar) about every 10 % of the run, and the last step,
      wherever the stream goes: for CI logs and `| tee`.
    - "bar": the bar even on a non-TTY stream. "off": nothing (as `dlcore run --no-progress`).
    """

    MODES = ("auto", "bar", "lines", "off")
    LINE_FORMAT = ("{desc}{n_fmt}/{total_fmt} {percentage:3.0f}% "
                   "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def __init__(self, total: int, start: int = 0, stream=None, label: str = "",
                 mode: str | None = None):
        mode = (mode or os.environ.get("DLCORE_PROGRESS") or "auto").strip().lower()
        if mode not in self.MODES:
            raise ValueError(f"progress mode must be one of {', '.join(self.MODES)}; got {mode!r} "
                             "(from DLCORE_PROGRESS when not given)")
        self.total, self.start, self.label = total, start, label
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        if mode == "auto":
            mode = "bar" if tty or "ipykernel" in sys.modules else "off"
        self.mode = mode
        # Timing is ours: tqdm's own timer starts at its creation, i.e. before compiling, and
        # counts evaluations, so its first rates and ETAs would be dragged down. _Bar overrides
        # tqdm's `format_dict` (its documented hook for custom fields) with our elapsed time (from
        # `start_timing`, less `exclude`) and start step, and smoothing=0 makes tqdm's rate
        # (n - initial) / elapsed: tqdm's own formatting of rate, ETA and elapsed is then right.
        # Moving tqdm's start_t instead breaks its close() (it believes it never drew, and leaves
        # no final bar), and `reset` would zero the count.
        self.t0: float | None = None
        self.step0 = start
        self.step, self.metrics = start, ""
        self._shown: int | None = None
        self._latest: dict = {}
        self._next_line = start
        self.bar: _Bar | None = None
        if mode == "bar":
            # A terminal that reports 0 columns (a pty nobody sized: `script`, some containers)
            # gets nothing from tqdm (0 rows, 0 columns): a fixed size there, the live one elsewhere.
            sized = _columns(self.stream) != 0
            self.bar = _Bar(total=total, initial=start, file=self.stream, unit="step",
                            desc=label.rstrip() or None, postfix="compiling", smoothing=0,
                            miniters=1, dynamic_ncols=sized, ncols=None if sized else 120,
                            nrows=None if sized else 20, disable=False, leave=True)

    def start_timing(self, step: int) -> None:
        self.t0, self.step0 = time.time(), step
        if self.bar is not None:
            self.bar.timing = self
            self.bar.set_postfix_str(self.metrics, refresh=False)

    def exclude(self, seconds: float) -> None:
        """Time spent on something else than training steps (evaluating, compiling it)."""
        if self.t0 is not None:
            self.t0 += seconds

    def update(self, step: int, metrics: dict | None = None) -> None:
        self.step = step
        if metrics:  # each metric's latest value: test/ ones stay shown between evaluations
            self._latest.update({k: v for k, v in metrics.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)})
            self.metrics = " ".join(f"{k} {v:.4g}" for k, v in self._latest.items())
        if self.bar is not None:
            if self.t0 is not None:  # until then, "compiling"
                self.bar.set_postfix_str(self.metrics, refresh=False)
            self.bar.update(step - self.bar.n)
        elif self.mode == "lines" and (step >= self._next_line or step >= self.total):
            self._next_line = step + max(1, self.total // 10)
            self._line()

    def elapsed(self) -> float:
        """Seconds of training since `start_timing` (0 before it: tqdm then shows no rate)."""
        return max(time.time() - self.t0, 0.0) if self.t0 is not None else 0.0

    def _line(self) -> None:
        self.stream.write(_Bar.format_meter(
            self.step, self.total, self.elapsed(), prefix=self.label, unit="step",
            initial=self.step0, postfix=self.metrics or None, bar_format=self.LINE_FORMAT) + "\n")
        self.stream.flush()
        self._shown = self.step

    def close(self) -> None:
        """Leaves the final state on screen and the stream at the start of a new line."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "lines" and self._shown != self.step:
            self._line()  # an interrupted run: where it stopped


class _Bar(_tqdm):
    monitor_interval = 0  # no monitor thread: every update is explicit, with miniters=1
    timing: Progress | None = None  # the Progress, once it times; before, no rate ('?')

    @property
    def format_dict(self):
        d = super().format_dict
        if self.timing is None:
            d.update(elapsed=0, initial=d["n"])
        else:
            d.update(elapsed=self.timing.elapsed(), initial=self.timing.step0)
        return d


def _columns(stream) -> int | None:
    """The stream's terminal width (0 for a pty with no size), None when it is not a terminal."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None
