"""The supervised algorithm: input-shape checks, models that cannot take the data, per-family
default configs, CNN padding from --set, and augmentation inside the training step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import config as config_lib
from dlcore import loop, models
from dlcore.algorithms import supervised
from dlcore.algorithms.supervised import check_input_shape, default_config
from dlcore.cli import main
from dlcore.config import ConfigError
from dlcore.data import augment

pytestmark = pytest.mark.timeout(300)


def run_cli(args, workdir, capsys):
    """(exit code, stdout, stderr) of `dlcore run ...` with no progress bar."""
    capsys.readouterr()
    rc = main(["run", *args, "--workdir", str(workdir), "--no-progress"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_config_error(rc, err, workdir, *fragments):
    assert rc == 2
    assert err.startswith("dlcore: error:") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert not workdir.exists()  # refused before the run directory was touched


# --- the data's shape against model.input_shape ---------------------------------------------------

def test_check_input_shape_names_both_shapes():
    with pytest.raises(ConfigError) as e:
        check_input_shape({"input_shape": (40,)}, (8, 8, 1))
    msg = str(e.value)
    assert "(8, 8, 1)" in msg and "(40,)" in msg
    assert msg.index("(8, 8, 1)") < msg.index("(40,)")  # "the data gives ..., model expects ..."
    assert "model.input_shape" in msg
    check_input_shape({"input_shape": None}, (8, 8, 1))      # None accepts any shape
    check_input_shape({}, (3,))
    check_input_shape({"input_shape": [8, 8, 1]}, (8, 8, 1))  # a list (from config.json) is fine
    with pytest.raises(ConfigError, match=r"\(8, 8\)"):
        check_input_shape({"input_shape": (8, 8, 1)}, (8, 8))


@pytest.mark.parametrize("experiment, expected, actual", [
    ("digits/mlp", "(40,)", "(8, 8, 1)"),
    ("mnist1d/mlp", "(8,8,1)", "(40,)"),
    ("digits/cnn", "[8,8]", "(8, 8, 1)"),
])
def test_cli_input_shape_mismatch_exits_2_naming_both(experiment, expected, actual, tmp_path,
                                                      capsys):
    workdir = tmp_path / "run"
    rc, _, err = run_cli([experiment, "--set", f"model.input_shape={expected}"], workdir, capsys)
    want = str(tuple(int(v) for v in expected.strip("()[]").split(",") if v))
    assert_config_error(rc, err, workdir, f"data gives examples of shape {actual}",
                        f"model.input_shape expects {want}")


def test_loop_run_input_shape_mismatch_is_a_config_error(tmp_path):
    cfg = config_lib.apply_overrides(config_lib.load("digits/mlp"), ["model.input_shape=(64,)"])
    with pytest.raises(ConfigError, match=r"\(8, 8, 1\).*\(64,\)"):
        loop.run(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# --- models that cannot take the data: the eval_shape(init) path ----------------------------------

def test_2d_cnn_on_mnist1d_exits_2_with_a_clear_message(tmp_path, capsys):
    workdir = tmp_path / "run"
    rc, _, err = run_cli(["mnist1d/cnn", "--set", "model.dims=2"], workdir, capsys)
    assert_config_error(rc, err, workdir, "model 'cnn' cannot take inputs of shape (40,)",
                        "dims=2", "[batch, height, width, channels]")
    assert len(err.strip().splitlines()) == 1


def test_model_value_error_becomes_config_error_without_the_chain(tmp_path):
    cfg = config_lib.apply_overrides(config_lib.load("digits/cnn"), ["model.dims=1"])
    with pytest.raises(ConfigError, match=r"cannot take inputs of shape \(8, 8, 1\)") as e:
        loop.run(cfg, tmp_path / "run", progress=False)
    assert "dims=1" in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__


def rnn_on_digits_config(tmp_path):
    path = tmp_path / "rnn_digits.py"
    path.write_text(
        "from dlcore.algorithms.supervised import default_config\n"
        "def get_config():\n"
        "    return default_config(data={'name': 'digits', 'batch_size': 32},\n"
        "                          model={'name': 'rnn', 'hidden_size': 8},\n"
        "                          loop={'steps': 20, 'eval_every': 10, 'checkpoint_every': 10,\n"
        "                                'log_every': 10, 'plots': False})\n")
    return path


def test_rnn_on_digits_images_is_refused_clearly(tmp_path, capsys):
    """An RNN reads [time, features]; digits are [8, 8, 1] images. Reading the rows as 8 time steps
    would hide a config mistake (the same model would then accept any image size), so this is a
    config error (exit 2) naming the data's shape and what the RNN expects; nothing is compiled or
    written. Flattening or reshaping the images is the user's explicit choice."""
    workdir = tmp_path / "run"
    rc, _, err = run_cli([str(rnn_on_digits_config(tmp_path))], workdir, capsys)
    assert_config_error(rc, err, workdir, "model 'rnn' cannot take inputs of shape (8, 8, 1)",
                        "RNN expects x of shape [batch, time, features]")


def test_rnn_takes_sequences_and_cnn_takes_images():
    """The positive controls of the two tests above: make() succeeds (abstract init only)."""
    rnn_cfg = default_config(model={"name": "rnn", "hidden_size": 8})
    spec = {"input_shape": (12, 2), "task": "regression", "num_outputs": 1}
    state = jax.eval_shape(supervised.make(rnn_cfg, spec).init, jax.random.key(0))
    assert state.params["head"]["kernel"].shape == (8, 1)
    cnn_cfg = default_config(model={"name": "cnn", "channels": (4,), "kernel_sizes": (3,),
                                    "strides": (1,), "input_shape": (8, 8, 1)})
    spec = {"input_shape": (8, 8, 1), "task": "classification", "num_outputs": 10}
    state = jax.eval_shape(supervised.make(cnn_cfg, spec).init, jax.random.key(0))
    assert state.params["conv_0"]["kernel"].shape == (3, 3, 1, 4)


# --- default_config per model family --------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "logreg", "cnn", "rnn"])
def test_default_config_starts_from_the_family_defaults(name):
    cfg = default_config(model={"name": name})
    assert cfg["model"] == models.defaults(name)
    others = set().union(*(models.defaults(n) for n in ("mlp", "logreg", "cnn", "rnn")))
    assert not (others - set(models.defaults(name))) & set(cfg["model"])  # no foreign keys
    models.build(cfg["model"], 10)  # complete: the builder finds every key it reads


def test_default_config_cnn_keeps_overrides_and_has_no_mlp_keys():
    cfg = default_config(model={"name": "cnn", "dims": 1, "padding": 1})
    assert set(models.defaults("cnn")) <= set(cfg["model"])
    assert "hidden" not in cfg["model"]
    assert cfg["model"]["dims"] == 1 and cfg["model"]["padding"] == 1
    assert cfg["model"]["channels"] == models.defaults("cnn")["channels"]
    assert default_config()["model"] == models.defaults("mlp")
    assert default_config(model={"hidden": (8,)})["model"]["hidden"] == (8,)
    cfg["model"]["channels"] = (1,)  # a config is its own copy
    assert models.defaults("cnn")["channels"] == (32, 64)
    with pytest.raises(ConfigError, match="'model.name'"):
        default_config(model={"name": "transformer"})


# --- CNN padding from --set -----------------------------------------------------------------------

def test_set_integer_padding_on_a_cnn_experiment():
    """digits/cnn has padding 'SAME', so `--set model.padding=1` arrives as the string '1'; the
    builder makes it the integer 1, and the whole training step traces with it. (Abstract tracing
    only: test_cli already compiles and runs digits/cnn.)"""
    base = config_lib.load("digits/cnn", quick=True)
    cfg = config_lib.apply_overrides(base, ["model.padding=1"])
    assert cfg["model"]["padding"] == "1"
    model = models.build(cfg["model"], 10)
    assert model.padding == 1 and type(model.padding) is int
    spec = {"input_shape": (8, 8, 1), "task": "classification", "num_outputs": 10}

    def traced(config):
        algorithm = supervised.make(config, spec)
        state = jax.eval_shape(algorithm.init, jax.random.key(0))
        batch = {"x": jax.ShapeDtypeStruct((4, 8, 8, 1), jnp.float32),
                 "y": jax.ShapeDtypeStruct((4,), jnp.int32)}
        new_state, metrics = jax.eval_shape(algorithm.step, state, batch, jax.random.key(1))
        assert set(metrics) == {"loss", "accuracy"}
        return new_state.params

    params = traced(cfg)
    # 3x3 kernels, stride 1: one zero on each side keeps 8x8 as SAME does, so the dense layer after
    # two 2x2 poolings sees 64 * 2 * 2 = 256 features; with no padding 8 -> 6 -> 3 -> 1 -> 0
    assert params["dense_0"]["kernel"].shape == (256, 128)
    assert traced(base)["dense_0"]["kernel"].shape == (256, 128)
    with pytest.raises(ConfigError, match=r"padding 0\) turns spatial size \(3, 3\)"):
        traced(config_lib.apply_overrides(base, ["model.padding=0"]))
    with pytest.raises(ConfigError, match="'model.padding'"):
        models.build({**cfg["model"], "padding": "-1"}, 10)


# --- augmentation inside the training step --------------------------------------------------------

def test_augmentation_is_applied_in_the_step_and_never_in_evaluation():
    spec = {"input_shape": (12, 2), "task": "regression", "num_outputs": 1}

    def make(shift, noise):
        cfg = default_config(model={"hidden": (8,)}, loop={"steps": 10},
                             data={"augment_shift": shift, "augment_noise": noise})
        return supervised.make(cfg, spec)

    plain, augmented = make(0, 0.0), make(2, 0.3)
    rng = np.random.default_rng(0)
    batch = {"x": rng.uniform(size=(16, 12, 2)).astype(np.float32),
             "y": rng.normal(size=(16, 1)).astype(np.float32)}

    @jax.jit  # one compile for everything: compiling dominates this test's time
    def everything(batch, key):
        state = plain.init(jax.random.key(1))
        new_aug, metrics_aug = augmented.step(state, batch, key)
        # the reference: augment the batch by hand with the key the step splits off, then a plain
        # step with the rest of the key
        k_rest, k_aug = jax.random.split(key)
        x_aug = augment.shift_and_noise(batch["x"], k_aug, 2, 0.3)
        new_ref, metrics_ref = plain.step(state, {**batch, "x": x_aug}, k_rest)
        new_plain, _ = plain.step(state, batch, key)
        evals = [augmented.evaluate(state, batch, k) for k in (key, jax.random.key(9))]
        return new_aug, metrics_aug, new_ref, metrics_ref, new_plain, x_aug, evals

    new_aug, metrics_aug, new_ref, metrics_ref, new_plain, x_aug, evals = everything(
        batch, jax.random.key(2))
    assert np.abs(np.asarray(x_aug) - batch["x"]).max() > 0.3  # the batch really was changed
    aug_leaves, ref_leaves = jax.tree.leaves(new_aug.params), jax.tree.leaves(new_ref.params)
    for a, b in zip(aug_leaves, ref_leaves):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert float(metrics_aug["loss"]) == pytest.approx(float(metrics_ref["loss"]), rel=1e-5)
    assert not all(np.allclose(np.asarray(a), np.asarray(c)) for a, c in
                   zip(aug_leaves, jax.tree.leaves(new_plain.params)))
    # evaluation sees the data as it is: no dependence on the key, which augmentation would draw on
    assert float(evals[0]["mse"]) == float(evals[1]["mse"])
    assert float(evals[0]["loss"]) == float(evals[1]["loss"])


@pytest.mark.parametrize("key, value", [("augment_shift", -1), ("augment_noise", -0.5),
                                        ("augment_shift", 0.5)])
def test_bad_augmentation_is_a_config_error_before_anything_starts(key, value, tmp_path):
    cfg = config_lib.load("digits/mlp")
    cfg["data"][key] = value
    with pytest.raises(ConfigError, match=f"'data.{key}'"):
        loop.run(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# --- overrides that once crashed or misled ---------------------------------------------------------

def test_scalar_input_shape_is_a_config_error(tmp_path, capsys):
    rc, _, err = run_cli(["digits/mlp", "--set", "model.input_shape=64"], tmp_path / "run", capsys)
    assert rc == 2 and "model.input_shape" in err and "(64,)" in err


def test_input_shape_message_gives_an_override_that_works(tmp_path, capsys):
    rc, _, err = run_cli(["digits/cnn", "--set", "model.input_shape=[40]"], tmp_path / "run", capsys)
    assert rc == 2 and "model.input_shape=[8, 8, 1]" in err
    advised = err.split("set ")[-1].strip()
    cfg = config_lib.apply_overrides(config_lib.load("digits/cnn"), [advised])
    supervised.check_input_shape(cfg["model"], (8, 8, 1))


def test_switching_model_family_by_override_uses_its_defaults():
    cfg = config_lib.apply_overrides(config_lib.load("digits/mlp"), ["model.name=rnn"])
    m = models.build(cfg["model"], 10)
    assert type(m).__name__ == "RNN" and m.cell == models.defaults("rnn")["cell"]


def test_string_padding_on_an_integer_padding_experiment_is_a_clear_error():
    # a key's type is its default's: mnist1d/cnn's padding is an integer there
    with pytest.raises(ConfigError, match="'model.padding' expects an integer, got 'SAME'"):
        config_lib.apply_overrides(config_lib.load("mnist1d/cnn"), ["model.padding=SAME"])
