"""No silent recompilation: the loop traces an algorithm's step a fixed number of times however
long the run (chex.assert_max_traces), with seeds vmapped, evaluations and checkpoints between
compiled calls."""
import chex
import jax
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


@pytest.mark.parametrize("place, devices", [("device", 1), ("host", 1), ("device", 4),
                                            ("host", 4)])
def test_the_loop_compiles_its_call_once(place, devices, tmp_path, caplog):
    """Once, not once per placement: every argument of the compiled call is committed to its
    place from the first call on (an argument uncommitted in the first call and committed in
    the next, the call's own output or a streamed batch, compiles it again, inside the timed
    loop: it made streaming look 2-3x slower than it is)."""
    cfg = experiment.load("mnist1d/mlp", quick=True, overrides=[
        "loop.steps=40", "loop.eval_every=20", "loop.checkpoint_every=20", "loop.log_every=10",
        "loop.steps_per_call=5", "loop.plots=false", f"loop.data={place}",
        f"loop.devices={devices}"])
    with jax.log_compiles(), caplog.at_level("WARNING"):
        experiment.run(cfg, tmp_path, progress=False)
    compiled = [r for r in caplog.records if "Compiling jit(train_call)" in r.getMessage()]
    assert len(compiled) == 1
