"""dlcore.explain: each attribution method against a hand computation, Integrated Gradients'
completeness, the randomisation sanity check both ways, and `dlcore explain RUN`."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import explain as E
from dlcore import models
from dlcore.cli import main


def _model(cfg: dict, shape: tuple, seed: int = 0, classes: int = 5):
    model = models.build({**models.defaults(cfg["name"]), **cfg}, shape, classes)
    return model, model.init(jax.random.key(seed), jnp.zeros((1, *shape)))


MLP = ({"name": "mlp", "hidden": (16, 16)}, (12,))
CNN1 = ({"name": "cnn", "dims": 1, "channels": (4, 4), "kernel_sizes": (3, 3),
         "strides": (2, 1), "padding": 1, "head": "flatten"}, (16,))
CNN2 = ({"name": "cnn", "dims": 2, "channels": (4,), "kernel_sizes": (3,), "strides": (1,),
         "padding": "SAME", "head": "flatten"}, (6, 6, 1))


def _batch(shape, n=4, seed=1):
    return jax.random.uniform(jax.random.key(seed), (n, *shape), minval=-1.0, maxval=1.0)


@pytest.mark.parametrize("cfg,shape", [MLP, CNN1, CNN2], ids=["mlp", "cnn1d", "cnn2d"])
def test_every_method_maps_each_example_to_its_shape(cfg, shape):
    model, v = _model(cfg, shape)
    x = _batch(shape, n=3)
    t = jnp.array([0, 3, 1])
    for name, method in E.METHODS.items():
        opts = {"occlusion": {"window": 2, "stride": 1}, "smoothgrad": {"n": 4},
                "ig": {"steps": 8}}.get(name, {})
        a = E.attributions(method, model, v, x, t, **opts)
        assert a.shape == x.shape and bool(jnp.all(jnp.isfinite(a))), name


def test_saliency_and_gradient_x_input_are_the_gradient_by_hand():
    model, v = _model(*MLP)
    x, t = _batch(MLP[1]), jnp.array([0, 1, 2, 4])
    by_hand = jnp.stack([jax.grad(lambda xi: model.apply(v, xi[None])[0][0, int(c)])(xi)
                         for xi, c in zip(x, t)])
    np.testing.assert_allclose(E.attributions(E.saliency, model, v, x, t), by_hand, atol=1e-6)
    np.testing.assert_allclose(E.attributions(E.gradient_x_input, model, v, x, t), x * by_hand,
                               atol=1e-6)


def test_smoothgrad_without_noise_is_saliency():
    model, v = _model(*CNN1)
    x, t = _batch(CNN1[1]), jnp.array([0, 1, 2, 3])
    np.testing.assert_allclose(E.attributions(E.smoothgrad, model, v, x, t, n=3, sigma=0.0),
                               E.attributions(E.saliency, model, v, x, t), atol=1e-6)
    noisy = E.attributions(E.smoothgrad, model, v, x, t, n=3, sigma=0.2)
    assert not np.allclose(noisy, E.attributions(E.saliency, model, v, x, t))


def _completeness(model, v, x, t, steps, baseline=None):
    maps = E.attributions(E.integrated_gradients, model, v, x, t, steps=steps, baseline=baseline)
    return np.array([float(E.completeness_error(E.class_score(model, v, int(c)), xi, a, baseline))
                     for xi, c, a in zip(x, t, maps)])


def _with_biases(variables, seed):
    """Random biases: with zero biases and a zero baseline a ReLU network is linear along the
    path (positively homogeneous), and any step count would be exact."""
    leaves, tree = jax.tree_util.tree_flatten_with_path(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree_util.tree_unflatten(tree, [
        leaf + 0.1 * jax.random.normal(k, leaf.shape) if path[-1].key == "bias" else leaf
        for (path, leaf), k in zip(leaves, keys)])


@pytest.mark.parametrize("cfg,shape", [MLP, CNN1, CNN2], ids=["mlp", "cnn1d", "cnn2d"])
def test_integrated_gradients_complete_within_one_percent_at_64_steps(cfg, shape):
    for seed in (0, 1):
        model, v = _model(cfg, shape, seed)
        v = _with_biases(v, seed)
        x = _batch(shape, n=8, seed=seed + 5)
        t = E.predicted(model, v, x)
        delta = np.array([float(E.class_score(model, v, int(c))(xi) - E.class_score(
            model, v, int(c))(jnp.zeros_like(xi))) for xi, c in zip(x, t)])
        errors = _completeness(model, v, x, t, 64)
        # relative to F(x) - F(0): meaningless where that is ~0, so those examples are left out;
        # the mean, not every example: a kink of a ReLU between two of the 64 points costs
        # a few per cent in the worst examples (measured up to ~4 %)
        assert errors[np.abs(delta) >= 0.1].mean() < 0.01, errors
        assert np.median(errors) < 0.01, errors
        # a crude path misses by more: the check can fail
        assert _completeness(model, v, x, t, 2).mean() > 3 * errors.mean()


def test_integrated_gradients_of_a_linear_model_are_exact():
    model, v = _model({"name": "mlp", "hidden": ()}, (7,))
    w = v["params"]["head"]["kernel"]                                    # [7, classes]
    x, t = _batch((7,), n=4), jnp.array([0, 4, 2, 2])
    baseline = jnp.full((7,), 0.3)
    ig = E.attributions(E.integrated_gradients, model, v, x, t, steps=64, baseline=baseline)
    np.testing.assert_allclose(ig, (x - baseline) * w[:, t].T, atol=1e-5)
    assert _completeness(model, v, x, t, 64, baseline).max() < 1e-4


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_occlusion_of_a_linear_model_is_the_patch_times_the_weights(value):
    model, v = _model({"name": "mlp", "hidden": ()}, (9,))
    w = np.asarray(v["params"]["head"]["kernel"])
    x, t = np.asarray(_batch((9,), n=2)), np.array([1, 3])
    occ = np.asarray(E.attributions(E.occlusion, model, v, x, t, window=3, stride=3, value=value))
    for xi, c, a in zip(x, t, occ):
        # occluding patch P changes the score by w_P . (value - x_P): the drop is its negative,
        # and each cell of a non-overlapping patch carries its patch's drop
        by_hand = np.concatenate([np.full(3, -w[p:p + 3, c] @ (value - xi[p:p + 3]))
                                  for p in (0, 3, 6)])
        np.testing.assert_allclose(a, by_hand, atol=1e-5)
    # overlapping patches: each cell the mean drop of the patches covering it
    masks = E.occlusion_masks((9,), 3, 1)
    assert masks.shape == (7, 9) and masks.sum(0).tolist() == [1, 2, 3, 3, 3, 3, 3, 2, 1]
    assert E.occlusion_masks((6, 6, 1), 2, 2).shape == (9, 6, 6, 1)


def test_randomisation_check_falls_for_gradients_and_not_for_an_edge_detector():
    cfg, shape = ({"name": "mlp", "hidden": (32, 32)}, (24,))
    model, trained = _model(cfg, shape, seed=0)
    x = jnp.sin(jnp.linspace(0, 6, 24))[None] * jnp.arange(1, 9)[:, None] / 8 + \
        0.1 * _batch(shape, n=8)
    t = E.predicted(model, trained, x)
    grads = E.randomisation_check(model, trained, jax.random.key(7), x, t, E.saliency)
    assert list(grads) == ["head", "dense_1", "dense_0"]  # top down
    assert grads["head"] < 0.9 and grads["dense_0"] < 0.4, grads
    edges = E.randomisation_check(model, trained, jax.random.key(7), x, t, E.edge_detector)
    assert edges == {"head": 1.0, "dense_1": 1.0, "dense_0": 1.0}
    np.testing.assert_allclose(E.edge_detector(None, jnp.array([0., 2., 1.])), [2., 1., 0.])


def test_layers_top_down_follow_the_network_not_the_names():
    cfg = {"name": "cnn", "dims": 1, "channels": (2, 2), "kernel_sizes": (3, 3),
           "strides": (1, 1), "padding": 1, "head": "flatten", "batch_norm": True}
    model, v = _model(cfg, (8,))
    assert E.layers_top_down(model, v, jnp.zeros((1, 8))) == ["head", "bn_1", "conv_1", "bn_0",
                                                              "conv_0"]


def test_cli_explains_a_run_and_refuses_bad_input(tmp_path, capsys):
    run = tmp_path / "mlp"
    assert main(["run", "mnist1d/mlp", "--quick", "--workdir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert main(["explain", str(run), "--method", "all", "--count", "4"]) == 0
    printed = capsys.readouterr().out.split()
    for name in ("saliency", "gradxinput", "smoothgrad", "ig", "occlusion"):
        assert str(run / "plots" / f"explain_{name}.png") in printed
        assert (run / "plots" / f"explain_{name}.png").stat().st_size > 1000
    assert printed[-1] == str(run / "explain.json")
    report = json.loads((run / "explain.json").read_text())
    assert report["count"] == 4 and len(report["targets"]) == 4
    assert report["methods"]["ig"]["completeness_error"]["mean"] < 0.01
    assert list(report["methods"]["saliency"]["randomisation"]) == ["head", "dense_1", "dense_0"]
    assert report["methods"]["saliency"]["randomisation"]["dense_0"] < 0.5
    assert set(report["edge_detector"]["randomisation"].values()) == {1.0}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # read only

    def refused(*argv):
        assert main(["explain", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dlcore: error:"), err
        return err[0]
    assert "not a run directory" in refused(str(tmp_path / "nothing"))
    assert "--count" in refused(str(run), "--count", "0")
    assert "splits" in refused(str(run), "--split", "nope")
    regression = tmp_path / "diabetes"
    assert main(["run", "diabetes/mlp", "--quick", "--workdir", str(regression),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert "classification" in refused(str(regression))
    assert not (regression / "explain.json").exists()
