"""dlcore.algorithms.adversarial (Madry et al.'s adversarial training): with nothing to perturb it
is supervised learning step for step, its examples stay in the budget, it buys robustness a
standard model lacks, and bad settings are refused."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import attack, experiment, models
from dlcore.config import ConfigError

MLP = {"name": "mlp", "hidden": (32,)}


def _build(algorithm: str, own: dict | None = None, data: dict | None = None, steps: int = 200):
    config = {"algorithm": algorithm, "model": MLP, "optim": {"learning_rate": 3e-3},
              "data": {"name": "digits", "batch_size": 64, "shuffle": True, **(data or {})},
              "loop": {"steps": steps}}
    if own is not None:
        config["adversarial"] = own
    return experiment.build(experiment.complete(config))


def _train(algorithm, data, steps: int, seed: int = 0):
    """The state after `steps` steps, batches and keys as the loop draws them."""
    state = algorithm.init(jax.random.key(seed))
    step = jax.jit(algorithm.step)
    sample = jax.jit(data.sample)
    train = data.splits["train"]
    for t in range(steps):
        key = jax.random.fold_in(jax.random.key(seed + 1), t)
        state, metrics = step(state, sample(train, jnp.int32(t), key), key)
    return state, metrics


@pytest.mark.parametrize("own", [{"eps": 0.0}, {"eps": 0.5, "clean_weight": 1.0}])
def test_nothing_to_perturb_is_supervised_learning_step_for_step(own):
    """eps 0 (the attack cannot move) or clean_weight 1 (its examples weigh nothing): the same
    parameters as supervised learning after 30 steps."""
    adv, data = _build("adversarial", {"steps": 3, "step_size": 0.1, **own})
    sup, _ = _build("supervised")
    a, _ = _train(adv, data, 30)
    s, _ = _train(sup, data, 30)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(s.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    assert not np.allclose(jax.tree.leaves(a.params)[0], jax.tree.leaves(adv.init(
        jax.random.key(0)).params)[0])  # it did train


def test_the_step_trains_on_worse_examples_than_the_clean_ones():
    """The training batch's accuracy is taken on PGD's examples: well below the clean accuracy
    of the same parameters, which a step on clean examples would report."""
    adv, data = _build("adversarial", {"eps": 0.3, "steps": 5, "step_size": 0.1})
    sup, _ = _build("supervised")
    state, _ = _train(sup, data, 150)  # a trained classifier, then one adversarial step
    batch = jax.jit(data.sample)(data.splits["train"], jnp.int32(0), jax.random.key(5))
    _, m_adv = jax.jit(adv.step)(state, batch, jax.random.key(6))
    _, m_clean = jax.jit(sup.step)(state, batch, jax.random.key(6))
    assert float(m_clean["accuracy"]) > 0.8
    assert float(m_adv["accuracy"]) < float(m_clean["accuracy"]) - 0.3
    assert float(m_adv["loss"]) > float(m_clean["loss"])


def test_adversarial_training_buys_robustness_a_standard_model_lacks():
    """sklearn digits, an MLP, L-inf eps 0.1: PGD-10 accuracy of the adversarially trained model
    is far above the standard model's, its clean accuracy still high; evaluate's pgd_accuracy is
    what dlcore.attack measures on the same examples."""
    own = {"eps": 0.1, "steps": 5, "step_size": 0.04, "eval_steps": 10, "eval_count": 200}
    adv, data = _build("adversarial", own, steps=400)
    sup, _ = _build("supervised", steps=400)
    a, _ = _train(adv, data, 400)
    s, _ = _train(sup, data, 400)
    test = data.splits["test"]
    model = adv.extras["model"]
    x, y = test["x"][:200], test["y"][:200]
    robust = {}
    for name, state in (("adversarial", a), ("standard", s)):
        robust[name] = attack.robust_accuracy(model, models.variables_of(state), x, y, attack.pgd,
                                              jax.random.key(0), 0.1, steps=10)
    clean_adv = attack.accuracy(model, models.variables_of(a), x, y)
    assert clean_adv > 0.85
    assert robust["adversarial"] > robust["standard"] + 0.25, robust
    m = jax.jit(adv.evaluate)(a, test, jax.random.key(1))
    assert set(m) == {"loss", "accuracy", "pgd_accuracy"}
    assert abs(float(m["pgd_accuracy"]) - robust["adversarial"]) < 0.05  # other random starts
    assert float(m["accuracy"]) == pytest.approx(
        attack.accuracy(model, models.variables_of(a), test["x"], test["y"]), abs=1e-6)


def test_eps_warm_up_grows_the_budget_linearly():
    """With eps_warmup_steps 10, step t attacks with eps and step size times (t + 1) / 10: the
    first step at eps 0.5 is the step without warm-up at eps 0.05, step size 0.025."""
    adv_w, data = _build("adversarial", {"eps": 0.5, "steps": 2, "step_size": 0.25,
                                         "eps_warmup_steps": 10})
    adv_s, _ = _build("adversarial", {"eps": 0.05, "steps": 2, "step_size": 0.025})
    state = adv_w.init(jax.random.key(0))
    batch = jax.jit(data.sample)(data.splits["train"], jnp.int32(0), jax.random.key(1))
    a, _ = jax.jit(adv_w.step)(state, batch, jax.random.key(2))
    b, _ = jax.jit(adv_s.step)(state, batch, jax.random.key(2))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("own, data, words", [
    ({"eps": -0.1}, None, "adversarial.eps"),
    ({"norm": "l3"}, None, "adversarial.norm"),
    ({"steps": 0}, None, "adversarial.steps"),
    ({"clean_weight": 1.5}, None, "adversarial.clean_weight"),
    ({"eps_warmup_steps": 10 ** 6}, None, "adversarial.eps_warmup_steps"),
    ({"random_start": "yes"}, None, "adversarial.random_start"),
    ({}, {"name": "diabetes"}, "classification"),
])
def test_bad_settings_are_refused_naming_the_key(own, data, words):
    with pytest.raises(ConfigError, match=words):
        _build("adversarial", own, data)
