"""No silent recompilation: the loop traces an algorithm's step a fixed number of times however
long the run (chex.assert_max_traces), with seeds vmapped, evaluations and checkpoints between
compiled calls."""
import chex
import pytest

from dlcore import experiment, loop


@pytest.mark.parametrize("steps", [20, 80])
def test_the_loop_traces_the_step_twice_however_long_the_run(steps, tmp_path):
    """Twice: once abstractly (the loop checks the step's contract before compiling) and once
    to compile the call of `steps_per_call` steps; a retrace per call or per evaluation (a
    Python number where an array belongs, a changing shape) would raise here."""
    cfg = experiment.load("mnist1d/mlp", quick=True, overrides=[
        f"loop.steps={steps}", "loop.eval_every=10", "loop.checkpoint_every=10",
        "loop.log_every=10", "loop.steps_per_call=5", "loop.plots=false"])
    alg, data = experiment.build(cfg)
    chex.clear_trace_counter()
    step = chex.assert_max_traces(alg.step, n=2)
    summary = loop.train(alg._replace(step=step), data, cfg["loop"], tmp_path, 2, progress=False)
    assert summary["steps_run"] == steps
