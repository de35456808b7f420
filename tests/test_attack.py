"""dlcore.attack: perturbations inside their budget and value range, FGSM against the gradient
sign by hand, the ordering checks that catch a broken attack, and `dlcore attack RUN`."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import attack as A
from dlcore import experiment, models
from dlcore.cli import main


def _model(cfg: dict, shape: tuple, seed: int = 0, classes: int = 5):
    model = models.build({**models.defaults(cfg["name"]), **cfg}, shape, classes)
    return model, model.init(jax.random.key(seed), jnp.zeros((1, *shape)))


def _batch(shape, n=16, seed=1, lo=-1.0, hi=1.0):
    return jax.random.uniform(jax.random.key(seed), (n, *shape), minval=lo, maxval=hi)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_perturbations_stay_in_the_ball_and_the_value_range(norm):
    model, v = _model({"name": "mlp", "hidden": (16,)}, (12,))
    x = _batch((12,), lo=0.0, hi=1.0)
    y = jnp.arange(16) % 5
    eps = 0.3
    for attack, opts in [(A.uniform_noise, {}), (A.fgsm, {}),
                         (A.pgd, {"steps": 5, "norm": norm, "restarts": 2})]:
        for clip in ({}, {"clip_min": 0.0, "clip_max": 1.0}):
            adv = A.perturb(attack, model, v, x, y, jax.random.key(3), eps, **opts, **clip)
            d = np.asarray(adv - x).reshape(len(x), -1)
            if attack is A.pgd and norm == "l2":
                assert np.linalg.norm(d, axis=1).max() <= eps + 1e-5
            else:
                assert np.abs(d).max() <= eps + 1e-6
            assert np.abs(d).max() > 0.01  # it did move
            if clip:
                assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    with pytest.raises(A.ConfigError):
        A.perturb(A.pgd, model, v, x, y, eps=0.1, norm="l3")
    with pytest.raises(A.ConfigError):
        A.perturb(A.fgsm, model, v, x, y, eps=-0.1)


def test_fgsm_on_a_linear_model_is_the_gradient_sign_by_hand():
    model, v = _model({"name": "mlp", "hidden": ()}, (7,))
    w = np.asarray(v["params"]["head"]["kernel"])                        # [7, classes]
    b = np.asarray(v["params"]["head"]["bias"])
    x, y = np.asarray(_batch((7,), n=4)), np.array([0, 4, 2, 2])
    adv = np.asarray(A.perturb(A.fgsm, model, v, x, y, eps=0.1))
    for xi, yi, ai in zip(x, y, adv):
        # dCE/dx = W (softmax(z) - onehot(y)) = sum_k p_k w_k - w_y
        z = xi @ w + b
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        np.testing.assert_allclose(ai, xi + 0.1 * np.sign(w @ p - w[:, yi]), atol=1e-6)
    # two classes: the direction is exactly sign(w_other - w_y)
    model2, v2 = _model({"name": "mlp", "hidden": ()}, (7,), classes=2)
    w2 = np.asarray(v2["params"]["head"]["kernel"])
    adv = np.asarray(A.perturb(A.fgsm, model2, v2, x, np.array([0, 1, 0, 1]), eps=0.2))
    for xi, yi, ai in zip(x, [0, 1, 0, 1], adv):
        np.testing.assert_allclose(ai, xi + 0.2 * np.sign(w2[:, 1 - yi] - w2[:, yi]), atol=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("attack") / "mlp"
    assert main(["run", "mnist1d/mlp", "--quick", "--workdir", str(run), "--no-progress"]) == 0
    return run


def test_ordering_checks_on_a_trained_classifier(trained):
    r = experiment.load_run(trained)
    x, y = (np.asarray(r.data.splits["test"][k])[:500] for k in ("x", "y"))
    model, v = r.model, models.variables_of(r.final)
    key, eps = jax.random.key(0), 0.2
    acc = {"clean": A.robust_accuracy(model, v, x, y)}
    acc["noise"] = A.robust_accuracy(model, v, x, y, A.uniform_noise, key, eps)
    acc["fgsm"] = A.robust_accuracy(model, v, x, y, A.fgsm, key, eps)
    acc["pgd10"] = A.robust_accuracy(model, v, x, y, A.pgd, key, eps, steps=10)
    acc["pgd40"] = A.robust_accuracy(model, v, x, y, A.pgd, key, eps, steps=40)
    assert acc["clean"] > 0.3, acc
    assert acc["clean"] >= acc["fgsm"] >= acc["pgd40"], acc
    assert acc["pgd40"] <= acc["pgd10"] + 0.01, acc
    assert acc["noise"] >= acc["pgd40"] + 0.1, acc
    assert acc["clean"] - acc["pgd40"] > 0.1, acc  # the attack bites
    l2 = A.robust_accuracy(model, v, x, y, A.pgd, key, 1.0, steps=20, norm="l2", restarts=2)
    assert l2 < acc["clean"] - 0.1, (l2, acc)


def test_cli_attacks_a_run_and_refuses_bad_input(trained, tmp_path, capsys):
    before = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert main(["attack", str(trained), "--eps", "0.1", "--eps", "0.3", "--steps", "10",
                 "--count", "200"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("| eps | clean") and len(out) == 5
    assert out[-1] == str(trained / "attack.json")
    report = json.loads((trained / "attack.json").read_text())
    assert report["count"] == 200 and [r["eps"] for r in report["results"]] == [0.1, 0.3]
    for r in report["results"]:
        assert r["clean"] >= r["fgsm"] >= r["pgd"] and r["noise"] > r["pgd"], r
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == before  # read only

    def refused(*argv):
        assert main(["attack", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dlcore: error:"), err
        return err[0]
    assert "not a run directory" in refused(str(tmp_path / "nothing"))
    assert "--eps" in refused(str(trained), "--eps", "-0.1")
    assert "--eps" in refused(str(trained), "--eps", "nan")
    assert "--steps" in refused(str(trained), "--steps", "0")
    assert "splits" in refused(str(trained), "--split", "nope")
    regression = tmp_path / "diabetes"
    assert main(["run", "diabetes/mlp", "--quick", "--workdir", str(regression),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert "classification" in refused(str(regression))
    assert not (regression / "attack.json").exists()
