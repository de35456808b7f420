"""The supervised algorithm: input-shape checks, models that cannot take the data, configs
completed from each family's defaults, CNN padding from --set, augmentation in the data's sample
(not in the step), the L2 penalty in the optimizer, chunked evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlcore import config as config_lib
from dlcore import experiment, losses, models, optim
from dlcore.algorithms import supervised
from dlcore.cli import main
from dlcore.config import ConfigError
from dlcore.core import Data
from dlcore.data import augment
from dlcore.models import check_input_shape

pytestmark = pytest.mark.timeout(300)


def run_cli(args, workdir, capsys):
    """(exit code, stdout, stderr) of `dlcore run ...` with no progress bar."""
    capsys.readouterr()
    rc = main(["run", *args, "--workdir", str(workdir), "--no-progress"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def config(model=None, data=None, **sections):
    """A complete supervised config from the sections that differ (digits data by default)."""
    cfg = {"algorithm": "supervised", "data": {"name": "digits", **(data or {})}, **sections}
    if model is not None:
        cfg["model"] = model
    return experiment.complete(cfg)


def make(cfg, spec, steps=10):
    """supervised.make for data described by `spec` alone (nothing is loaded)."""
    return supervised.make(cfg, Data({}, spec, None), steps)


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
    cfg = experiment.load("digits/mlp", overrides=["model.input_shape=(64,)"])
    with pytest.raises(ConfigError, match=r"\(8, 8, 1\).*\(64,\)"):
        experiment.run(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match=r"\(8, 8, 1\).*\(64,\)"):
        experiment.build(cfg)
    assert not (tmp_path / "run").exists()


# --- models that cannot take the data: the eval_shape(init) path ----------------------------------

def test_2d_cnn_on_mnist1d_exits_2_with_a_clear_message(tmp_path, capsys):
    workdir = tmp_path / "run"
    rc, _, err = run_cli(["mnist1d/cnn", "--set", "model.dims=2"], workdir, capsys)
    assert_config_error(rc, err, workdir, "model 'cnn' cannot take inputs of shape (40,)",
                        "dims=2", "[batch, height, width, channels]")
    assert len(err.strip().splitlines()) == 1


def test_model_value_error_becomes_config_error_without_the_chain(tmp_path):
    cfg = experiment.load("digits/cnn", overrides=["model.dims=1"])
    with pytest.raises(ConfigError, match=r"cannot take inputs of shape \(8, 8, 1\)") as e:
        experiment.run(cfg, tmp_path / "run", progress=False)
    assert "dims=1" in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__


def rnn_on_digits_config(tmp_path):
    path = tmp_path / "rnn_digits.py"
    path.write_text(
        "def get_config():\n"
        "    return {'algorithm': 'supervised', 'data': {'name': 'digits', 'batch_size': 32},\n"
        "            'model': {'name': 'rnn', 'hidden_size': 8},\n"
        "            'loop': {'steps': 20, 'eval_every': 10, 'checkpoint_every': 10,\n"
        "                     'log_every': 10, 'plots': False}}\n")
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
    rnn_cfg = config(model={"name": "rnn", "hidden_size": 8}, data={"name": "adding"})
    spec = {"input_shape": (12, 2), "task": "regression", "num_outputs": 1}
    state = jax.eval_shape(make(rnn_cfg, spec).init, jax.random.key(0))
    assert state.params["head"]["kernel"].shape == (8, 1)
    cnn_cfg = config(model={"name": "cnn", "channels": (4,), "kernel_sizes": (3,),
                            "strides": (1,), "input_shape": (8, 8, 1)})
    spec = {"input_shape": (8, 8, 1), "task": "classification", "num_outputs": 10}
    state = jax.eval_shape(make(cnn_cfg, spec).init, jax.random.key(0))
    assert state.params["conv_0"]["kernel"].shape == (3, 3, 1, 4)


# --- a config completed from the model family's defaults -------------------------------------------

SHAPES = {"mlp": (7,), "logreg": (7,), "cnn": (8, 8, 1), "rnn": (12, 2)}


@pytest.mark.parametrize("name", ["mlp", "logreg", "cnn", "rnn"])
def test_complete_starts_from_the_family_defaults(name):
    cfg = config(model={"name": name})
    assert cfg["model"] == models.defaults(name)
    others = set().union(*(models.defaults(n) for n in ("mlp", "logreg", "cnn", "rnn")))
    assert not (others - set(models.defaults(name))) & set(cfg["model"])  # no foreign keys
    models.build(cfg["model"], SHAPES[name], 10)  # complete: the builder finds every key it reads
    assert set(cfg) == {"algorithm", "seed", "experiment", "data", "model", "optim", "supervised",
                        "loop"}
    assert cfg["optim"] == optim.defaults()
    assert cfg["supervised"] == {"eval_batch_size": 4096, "log_details": False}


def test_complete_cnn_keeps_overrides_and_has_no_mlp_keys():
    cfg = config(model={"name": "cnn", "dims": 1, "padding": 1})
    assert set(models.defaults("cnn")) <= set(cfg["model"])
    assert "hidden" not in cfg["model"]
    assert cfg["model"]["dims"] == 1 and cfg["model"]["padding"] == 1
    assert cfg["model"]["channels"] == models.defaults("cnn")["channels"]
    assert config()["model"] == models.defaults("mlp")  # supervised's default family
    assert config(model={"hidden": (8,)})["model"]["hidden"] == (8,)
    cfg["model"]["channels"] = (1,)  # a config is its own copy
    assert models.defaults("cnn")["channels"] == (32, 64)
    with pytest.raises(ConfigError, match="'model.name'"):
        config(model={"name": "transfomer"})
    with pytest.raises(ConfigError, match=r"'model\.hidden' is not read.*model has: activation, batch_norm, channels"):
        config(model={"name": "cnn", "hidden": (8,)})  # an mlp key on a cnn
    with pytest.raises(ConfigError, match=r"'loop\.eval_batch_size'.*"):
        config(loop={"eval_batch_size": 64})  # moved to supervised.eval_batch_size


# --- CNN padding from --set -----------------------------------------------------------------------

def test_set_integer_padding_on_a_cnn_experiment():
    """digits/cnn has padding 'SAME', so `--set model.padding=1` arrives as the string '1'; the
    builder makes it the integer 1, and the whole training step traces with it. (Abstract tracing
    only: test_cli already compiles and runs digits/cnn.)"""
    base = experiment.load("digits/cnn", quick=True)
    cfg = experiment.apply_overrides(base, ["model.padding=1"])
    assert cfg["model"]["padding"] == "1"
    model = models.build(cfg["model"], (8, 8, 1), 10).module
    assert model.padding == 1 and type(model.padding) is int
    spec = {"input_shape": (8, 8, 1), "task": "classification", "num_outputs": 10}

    def traced(config):
        algorithm = make(config, spec)
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
        traced(experiment.apply_overrides(base, ["model.padding=0"]))
    with pytest.raises(ConfigError, match="'model.padding'"):
        models.build({**cfg["model"], "padding": "-1"}, (8, 8, 1), 10)


# --- augmentation: the data's, never the step's -----------------------------------------------------

def test_augmentation_is_in_the_datas_sample_and_never_in_the_step_or_evaluation():
    data_cfg = {"name": "adding", "seq_len": 12, "train_size": 64, "test_size": 16,
                "batch_size": 16, "shuffle": True}
    plain_cfg = config(model={"hidden": (8,)}, data=data_cfg, loop={"steps": 10})
    aug_cfg = config(model={"hidden": (8,)}, loop={"steps": 10},
                     data={**data_cfg, "augment_shift": 2, "augment_noise": 0.3})
    (plain, plain_data), (augmented, aug_data) = (experiment.build(c) for c in (plain_cfg, aug_cfg))
    train = plain_data.splits["train"]

    @jax.jit  # one compile for everything: compiling dominates this test's time
    def everything(key_data, key):
        state = plain.init(jax.random.key(1))
        batch = plain_data.sample(train, 3, key_data)
        aug_batch = aug_data.sample(train, 3, key_data)
        k_aug = jax.random.fold_in(jax.random.fold_in(key_data, 0x5EED), 3)
        by_hand = augment.shift_and_noise(batch["x"], k_aug, 2, 0.3)
        # the same step whatever the data section says: the algorithm does not augment
        steps = [alg.step(state, b, key) for alg in (plain, augmented) for b in (batch, aug_batch)]
        evals = [augmented.evaluate(state, aug_data.splits["test"], k)
                 for k in (key, jax.random.key(9))]
        return batch, aug_batch, by_hand, steps, evals

    batch, aug_batch, by_hand, steps, evals = everything(jax.random.key(2), jax.random.key(3))
    assert np.abs(np.asarray(aug_batch["x"]) - np.asarray(batch["x"])).max() > 0.3  # changed
    np.testing.assert_allclose(aug_batch["x"], by_hand, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(aug_batch["y"], batch["y"])  # targets untouched
    (p_plain, _), (p_aug, m_aug), (a_plain, _), (a_aug, m_aug2) = steps
    jax.tree.map(np.testing.assert_array_equal, p_plain.params, a_plain.params)
    jax.tree.map(np.testing.assert_array_equal, p_aug.params, a_aug.params)
    assert float(m_aug["loss"]) == float(m_aug2["loss"])
    # and the augmented batch does train differently
    assert not all(np.allclose(np.asarray(a), np.asarray(c)) for a, c in
                   zip(jax.tree.leaves(p_plain.params), jax.tree.leaves(p_aug.params)))
    # evaluation sees the data as it is: no dependence on the key
    assert float(evals[0]["mse"]) == float(evals[1]["mse"])
    assert float(evals[0]["loss"]) == float(evals[1]["loss"])
    np.testing.assert_array_equal(aug_data.splits["test"]["x"], plain_data.splits["test"]["x"])


@pytest.mark.parametrize("key, value", [("augment_shift", -1), ("augment_noise", -0.5),
                                        ("augment_shift", 0.5)])
def test_bad_augmentation_is_a_config_error_before_anything_starts(key, value, tmp_path):
    cfg = config_lib.load("digits/mlp")
    cfg["data"][key] = value
    with pytest.raises(ConfigError, match=f"'data.{key}'"):
        experiment.run(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# --- the L2 penalty: the optimizer's, the same as in the loss ---------------------------------------

def test_l2_step_equals_a_plain_step_on_the_penalised_loss():
    spec = {"input_shape": (8, 8, 1), "task": "classification", "num_outputs": 10}
    l2 = 0.05
    with_l2 = make(config(model={"hidden": (16,)}, optim={"l2": l2}), spec)
    plain_cfg = config(model={"hidden": (16,)})
    plain = make(plain_cfg, spec)
    model = models.build(plain_cfg["model"], (8, 8, 1), 10)
    tx = optim.build(plain_cfg["optim"], 10)
    rng = np.random.default_rng(0)
    batches = [{"x": jnp.asarray(rng.uniform(size=(16, 8, 8, 1)), jnp.float32),
                "y": jnp.asarray(rng.integers(0, 10, 16), jnp.int32)} for _ in range(3)]

    @jax.jit
    def both(key):
        state = with_l2.init(key)
        assert plain.init(key).params.keys() == state.params.keys()
        params, opt_state = state.params, tx.init(state.params)
        logged, data_terms = [], []
        for b in batches:
            data_term = lambda p: losses.cross_entropy(model.apply({"params": p}, b["x"])[0], b["y"])
            penalised = lambda p: data_term(p) + l2 * losses.l2_penalty(p)
            data_terms.append(data_term(params))
            state, metrics = with_l2.step(state, b, key)
            updates, opt_state = tx.update(jax.grad(penalised)(params), opt_state, params)
            params = optax.apply_updates(params, updates)
            logged.append(metrics["loss"])
        return state.params, params, logged, data_terms

    got, want, logged, data_terms = both(jax.random.key(0))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
    # the logged loss is the data term (the penalty is the optimizer's, as it was the loss's extra)
    np.testing.assert_allclose(logged, data_terms, rtol=1e-5)


# --- evaluation in chunks of supervised.eval_batch_size ---------------------------------------------

def test_evaluation_in_chunks_equals_one_pass():
    cfg = config(model={"hidden": (8,)}, data={"batch_size": 32})
    algorithm, data = experiment.build(cfg)
    small, _ = experiment.build(experiment.apply_overrides(cfg, ["supervised.eval_batch_size=7"]))
    state = algorithm.init(jax.random.key(0))
    test = data.splits["test"]  # 360 examples: 7 does not divide them
    whole, chunked = (alg.evaluate(state, test, jax.random.key(1)) for alg in (algorithm, small))
    for k in ("loss", "accuracy"):
        assert float(chunked[k]) == pytest.approx(float(whole[k]), rel=1e-5)
    out, _ = algorithm.extras["model"].apply(models.variables_of(state), jnp.asarray(test["x"]))
    assert float(whole["accuracy"]) == pytest.approx(
        float(np.mean(np.argmax(out, -1) == test["y"])), abs=1e-6)
    assert float(whole["loss"]) == pytest.approx(float(losses.cross_entropy(out, test["y"])), rel=1e-5)
    with pytest.raises(ConfigError, match="'supervised.eval_batch_size'"):
        experiment.build({**cfg, "supervised": {"eval_batch_size": 0}})


# --- overrides that once crashed or misled ---------------------------------------------------------

def test_scalar_input_shape_is_a_config_error(tmp_path, capsys):
    rc, _, err = run_cli(["digits/mlp", "--set", "model.input_shape=64"], tmp_path / "run", capsys)
    assert rc == 2 and "model.input_shape" in err and "(64,)" in err


def test_input_shape_message_gives_an_override_that_works(tmp_path, capsys):
    rc, _, err = run_cli(["digits/cnn", "--set", "model.input_shape=[40]"], tmp_path / "run", capsys)
    assert rc == 2 and "model.input_shape=[8, 8, 1]" in err
    advised = err.split("set ")[-1].strip()
    cfg = experiment.load("digits/cnn", overrides=[advised])
    check_input_shape(cfg["model"], (8, 8, 1))


def test_switching_model_family_by_override_uses_its_defaults():
    cfg = experiment.load("digits/mlp", overrides=["model.name=rnn"])
    assert set(cfg["model"]) == set(models.defaults("rnn")) and "hidden" not in cfg["model"]
    m = models.build(cfg["model"], (12, 2), 10).module
    assert type(m).__name__ == "RNN" and m.cell == models.defaults("rnn")["cell"]
    # in either order with a key of the new family
    for overrides in (["model.name=rnn", "model.hidden_size=8"],
                      ["model.hidden_size=8", "model.name=rnn"]):
        assert experiment.load("digits/mlp", overrides=overrides)["model"]["hidden_size"] == 8


def test_string_padding_on_an_integer_padding_experiment_is_a_clear_error():
    # a key's type is its default's: mnist1d/cnn's padding is an integer there
    with pytest.raises(ConfigError, match="'model.padding' expects an integer, got 'SAME'"):
        experiment.load("mnist1d/cnn", overrides=["model.padding=SAME"])
