"""dlcore.optim: the optax chain from the `optim` config section, checked against hand-computed
updates; the L2 penalty inside it; its injected hyperparameters."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlcore import losses, optim
from dlcore.config import ConfigError
from dlcore.models.mlp import MLP

LR = 0.1


def params_and_grads():
    params = {"dense_0": {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]]),
                          "bias": jnp.array([0.25, -0.75])},
              "bn_0": {"scale": jnp.array([1.5, 0.5]), "bias": jnp.array([0.1, 0.2])},
              "head": {"kernel": jnp.array([[2.0], [-1.0]]), "bias": jnp.array([0.3])}}
    grads = {"dense_0": {"kernel": jnp.array([[0.5, -0.25], [2.0, -4.0]]),
                         "bias": jnp.array([1.0, -3.0])},
             "bn_0": {"scale": jnp.array([-0.5, 0.75]), "bias": jnp.array([0.2, -0.1])},
             "head": {"kernel": jnp.array([[0.125], [-1.5]]), "bias": jnp.array([2.5])}}
    return params, grads


def first_update(tx, params, grads):
    state = tx.init(params)
    updates, _ = tx.update(grads, state, params)
    return updates


def assert_tree_close(a, b, **kw):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw), a, b)


# --- decay_mask -----------------------------------------------------------------------------------

def test_decay_mask_excludes_bias_and_scale():
    params, _ = params_and_grads()
    mask = optim.decay_mask(params)
    assert mask == {"dense_0": {"kernel": True, "bias": False},
                    "bn_0": {"scale": False, "bias": False},
                    "head": {"kernel": True, "bias": False}}


def test_decay_mask_on_real_model_params():
    model = MLP(hidden=(3,), num_outputs=2, batch_norm=True)
    variables = model.init(jax.random.key(0), jnp.ones((2, 4)))
    flat = jax.tree_util.tree_flatten_with_path(optim.decay_mask(variables["params"]))[0]
    named = {"/".join(p.key for p in path): m for path, m in flat}
    assert named == {"dense_0/kernel": True, "dense_0/bias": False, "bn_0/scale": False,
                     "bn_0/bias": False, "head/kernel": True, "head/bias": False}


# --- each optimizer builds and steps --------------------------------------------------------------

@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_each_optimizer_takes_a_descent_step(name):
    """Minimise 0.5 ||w - 1||^2 for a few steps; every optimizer must lower the loss."""
    tx = optim.build(optim.defaults(name=name, learning_rate=0.05), total_steps=10)
    params = {"w": {"kernel": jnp.zeros((3,)), "bias": jnp.zeros((2,))}}
    loss = lambda p: 0.5 * sum(jnp.sum((x - 1.0) ** 2) for x in jax.tree.leaves(p))
    state = tx.init(params)
    start = float(loss(params))
    for _ in range(3):
        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < start
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


# --- numerical references -------------------------------------------------------------------------

def test_sgd_update_is_minus_lr_times_grad():
    params, grads = params_and_grads()
    upd = first_update(optim.build(optim.defaults(name="sgd", learning_rate=LR), 10), params, grads)
    assert_tree_close(upd, jax.tree.map(lambda g: -LR * g, grads), rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_two_steps(nesterov):
    m = 0.9
    cfg = optim.defaults(name="momentum", learning_rate=LR, momentum=m, nesterov=nesterov)
    tx = optim.build(cfg, 10)
    w = {"kernel": jnp.array([1.0, -1.0])}
    g1, g2 = np.array([1.0, 2.0]), np.array([-0.5, 4.0])
    state = tx.init(w)
    u1, state = tx.update({"kernel": jnp.asarray(g1)}, state, w)
    u2, state = tx.update({"kernel": jnp.asarray(g2)}, state, w)
    v1 = g1
    v2 = m * v1 + g2
    if nesterov:  # look-ahead: g + m * v
        e1, e2 = -LR * (g1 + m * v1), -LR * (g2 + m * v2)
    else:
        e1, e2 = -LR * v1, -LR * v2
    np.testing.assert_allclose(u1["kernel"], e1, rtol=1e-6)
    np.testing.assert_allclose(u2["kernel"], e2, rtol=1e-6)


def test_adam_first_step_is_minus_lr_sign():
    params, grads = params_and_grads()
    upd = first_update(optim.build(optim.defaults(name="adam", learning_rate=LR), 10), params, grads)
    # bias-corrected moments on step 1 are g and g^2, so the update is -lr * g / (|g| + eps)
    assert_tree_close(upd, jax.tree.map(lambda g: -LR * jnp.sign(g), grads), rtol=1e-5)


def test_adam_second_step_matches_reference():
    b1, b2, eps = 0.9, 0.999, 1e-8
    tx = optim.build(optim.defaults(name="adam", learning_rate=LR, b1=b1, b2=b2, eps=eps), 10)
    w = {"kernel": jnp.zeros(3)}
    gs = [np.array([1.0, -2.0, 0.5]), np.array([0.5, 1.0, -3.0])]
    state = tx.init(w)
    m = v = np.zeros(3)
    for t, g in enumerate(gs, start=1):
        u, state = tx.update({"kernel": jnp.asarray(g)}, state, w)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        expected = -LR * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(u["kernel"], expected, rtol=1e-4)  # float32 bias correction


@pytest.mark.parametrize("name,wd_cfg,wd", [("adam", 0.05, 0.05), ("adamw", 0.05, 0.05),
                                            ("adamw", 0.0, 1e-4), ("sgd", 0.5, 0.5)])
def test_decoupled_weight_decay_on_kernels_only(name, wd_cfg, wd):
    params, grads = params_and_grads()
    plain = first_update(optim.build(optim.defaults(name=name if name != "adamw" else "adam",
                                                    learning_rate=LR), 10), params, grads)
    decayed = first_update(optim.build(optim.defaults(name=name, learning_rate=LR,
                                                      weight_decay=wd_cfg), 10), params, grads)
    mask = optim.decay_mask(params)
    expected = jax.tree.map(lambda u, w, k: u - LR * wd * w if k else u, plain, params, mask)
    assert_tree_close(decayed, expected, rtol=1e-5, atol=1e-9)
    # and the decay term is really there: kernels moved by -lr*wd*w relative to plain adam
    diff = decayed["dense_0"]["kernel"] - plain["dense_0"]["kernel"]
    np.testing.assert_allclose(diff, -LR * wd * params["dense_0"]["kernel"], rtol=1e-2, atol=1e-7)
    assert np.all(np.abs(diff) > 0.5 * LR * wd * np.abs(params["dense_0"]["kernel"]))
    np.testing.assert_array_equal(decayed["dense_0"]["bias"], plain["dense_0"]["bias"])
    np.testing.assert_array_equal(decayed["bn_0"]["scale"], plain["bn_0"]["scale"])


def test_rmsprop_first_step_reference():
    decay, eps = 0.99, 1e-8
    tx = optim.build(optim.defaults(name="rmsprop", learning_rate=LR, rms_decay=decay, eps=eps), 10)
    g = np.array([1.0, -2.0, 0.5])
    u = first_update(tx, {"k": jnp.zeros(3)}, {"k": jnp.asarray(g)})["k"]
    nu = (1 - decay) * g ** 2
    # optax.scale_by_rms puts eps inside the square root
    np.testing.assert_allclose(u, -LR * g / np.sqrt(nu + eps), rtol=1e-5)


def test_clip_norm_clips_global_norm():
    params, grads = params_and_grads()
    norm = float(optax.tree.norm(grads))
    assert norm > 1.0
    upd = first_update(optim.build(optim.defaults(name="sgd", learning_rate=LR, clip_norm=1.0), 10),
                       params, grads)
    assert_tree_close(upd, jax.tree.map(lambda g: -LR * g / norm, grads), rtol=1e-5)
    np.testing.assert_allclose(float(optax.tree.norm(upd)), LR * 1.0, rtol=1e-5)
    # a norm below the threshold is left alone
    upd = first_update(optim.build(optim.defaults(name="sgd", learning_rate=LR,
                                                  clip_norm=10 * norm), 10), params, grads)
    assert_tree_close(upd, jax.tree.map(lambda g: -LR * g, grads), rtol=1e-6)


def test_clip_happens_before_adam_preconditioning():
    # clipping then Adam on step 1 still gives -lr*sign(g): the clip is a uniform rescale
    params, grads = params_and_grads()
    upd = first_update(optim.build(optim.defaults(name="adam", learning_rate=LR, clip_norm=0.5), 10),
                       params, grads)
    assert_tree_close(upd, jax.tree.map(lambda g: -LR * jnp.sign(g), grads), rtol=1e-4)


def test_optimizer_follows_schedule():
    cfg = optim.defaults(name="sgd", learning_rate=1.0, schedule="linear", end_learning_rate=0.0)
    tx = optim.build(cfg, total_steps=4)
    w = {"k": jnp.zeros(1)}
    state = tx.init(w)
    seen = []
    for _ in range(5):
        u, state = tx.update({"k": jnp.ones(1)}, state, w)
        seen.append(-float(u["k"][0]))
    np.testing.assert_allclose(seen, [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-6)


# --- schedules ------------------------------------------------------------------------------------

def schedule(cfg, total_steps):
    """The learning rate at a step: learning_rate x a + end_learning_rate x b."""
    shape = optim.schedule_shape(cfg, total_steps)

    def rate(step):
        a, b = shape(step)
        return cfg["learning_rate"] * a + cfg["end_learning_rate"] * b
    return rate


def lr_at(sched, steps):
    return np.array([float(sched(s)) for s in steps])


def test_schedule_shape_weighs_the_peak_and_the_end_rate():
    cfg = optim.defaults(learning_rate=0.5, schedule="linear", end_learning_rate=0.1)
    a, b = optim.schedule_shape(cfg, 10)(jnp.asarray([0, 5, 10]))
    np.testing.assert_allclose(a, [1.0, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(b, [0.0, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(lr_at(schedule(cfg, 10), [0, 5, 10]), [0.5, 0.3, 0.1], rtol=1e-6)
    # the shape does not depend on the rates: both stay numbers in the state (sweepable)
    other = optim.schedule_shape({**cfg, "learning_rate": 5.0, "end_learning_rate": 3.0}, 10)
    np.testing.assert_allclose(other(jnp.arange(11))[0], optim.schedule_shape(cfg, 10)(
        jnp.arange(11))[0], rtol=1e-6)


def test_constant_schedule():
    s = schedule(optim.defaults(learning_rate=0.3, schedule="constant"), 100)
    np.testing.assert_allclose(lr_at(s, [0, 1, 50, 99, 100]), 0.3, rtol=1e-6)


def test_cosine_schedule():
    lr, end, total = 0.1, 0.001, 100
    s = schedule(optim.defaults(learning_rate=lr, schedule="cosine", end_learning_rate=end),
                       total)
    np.testing.assert_allclose(float(s(0)), lr, rtol=1e-6)
    np.testing.assert_allclose(float(s(total)), end, rtol=1e-5)
    np.testing.assert_allclose(float(s(total // 2)), end + (lr - end) * 0.5, rtol=1e-5)
    t = 30
    np.testing.assert_allclose(float(s(t)), end + (lr - end) * 0.5 * (1 + np.cos(np.pi * t / total)),
                               rtol=1e-5)
    assert np.all(np.diff(lr_at(s, range(total + 1))) <= 1e-9)


def test_linear_schedule():
    s = schedule(optim.defaults(learning_rate=1.0, schedule="linear", end_learning_rate=0.2),
                       10)
    np.testing.assert_allclose(lr_at(s, [0, 5, 10, 20]), [1.0, 0.6, 0.2, 0.2], rtol=1e-6)


def test_warmup_cosine_schedule():
    lr, warmup, total = 0.5, 10, 110
    s = schedule(optim.defaults(learning_rate=lr, schedule="warmup_cosine", warmup_steps=warmup,
                                      end_learning_rate=0.0), total)
    np.testing.assert_allclose(float(s(0)), 0.0, atol=1e-9)
    np.testing.assert_allclose(float(s(warmup // 2)), lr / 2, rtol=1e-6)
    np.testing.assert_allclose(float(s(warmup)), lr, rtol=1e-6)
    values = lr_at(s, range(total + 1))
    assert values.max() == pytest.approx(lr, rel=1e-6) and int(values.argmax()) == warmup
    np.testing.assert_allclose(float(s(warmup + (total - warmup) // 2)), lr / 2, rtol=1e-5)
    np.testing.assert_allclose(float(s(total)), 0.0, atol=1e-7)


def test_warmup_then_constant():
    s = schedule(optim.defaults(learning_rate=0.2, schedule="constant", warmup_steps=4), 20)
    np.testing.assert_allclose(lr_at(s, [0, 1, 2, 4, 10, 20]), [0, 0.05, 0.1, 0.2, 0.2, 0.2],
                               rtol=1e-6, atol=1e-9)


def test_step_schedule():
    s = schedule(optim.defaults(learning_rate=1.0, schedule="step"), 100)
    np.testing.assert_allclose(lr_at(s, [0, 49, 50, 74, 75, 99]), [1, 1, 0.1, 0.1, 0.01, 0.01],
                               rtol=1e-5)


# --- validate -------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,key", [
    (dict(learning_rate=-1e-3), "optim.learning_rate"),
    (dict(learning_rate=0.0), "optim.learning_rate"),
    (dict(b1=1.0), "optim.b1"),
    (dict(b1=1.5), "optim.b1"),
    (dict(b2=-0.1), "optim.b2"),
    (dict(momentum=1.0), "optim.momentum"),
    (dict(name="adagrad"), "optim.name"),
    (dict(schedule="exponential"), "optim.schedule"),
    (dict(weight_decay=-0.1), "optim.weight_decay"),
    (dict(clip_norm=-1.0), "optim.clip_norm"),
    (dict(warmup_steps=100), "optim.warmup_steps"),
    (dict(warmup_steps=150), "optim.warmup_steps"),
    (dict(warmup_steps=-1), "optim.warmup_steps"),
    (dict(warmup_steps="a"), "optim.warmup_steps"),
    (dict(nesterov="x"), "optim.nesterov"),
])
def test_validate_rejects(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        optim.validate(optim.defaults(**overrides), total_steps=100)
    with pytest.raises(ConfigError):
        optim.build(optim.defaults(**overrides), total_steps=100)


def test_validate_accepts_defaults_and_last_warmup():
    optim.validate(optim.defaults(), 100)
    optim.validate(optim.defaults(warmup_steps=99, schedule="warmup_cosine"), 100)


def test_defaults_rejects_unknown_key():
    with pytest.raises(AssertionError):
        optim.defaults(learnin_rate=1.0)


# --- the L2 penalty, inside the optimizer -----------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "rmsprop"])
def test_l2_in_the_optimizer_equals_the_penalty_in_the_loss(name):
    """optim.l2 adds l2 * w (kernels only) to the gradient before anything else: the same updates,
    step after step, as minimising loss + l2 * losses.l2_penalty with l2 = 0 in the optimizer."""
    l2 = 0.3
    params, _ = params_and_grads()
    target = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)

    def loss(p):
        return sum(jnp.sum(jnp.sin(a - b) ** 2) for a, b in
                   zip(jax.tree.leaves(p), jax.tree.leaves(target)))

    with_l2 = optim.build(optim.defaults(name=name, learning_rate=LR, l2=l2), 10)
    plain = optim.build(optim.defaults(name=name, learning_rate=LR), 10)
    penalised = lambda p: loss(p) + l2 * losses.l2_penalty(p)

    def three_steps(tx, f, p):
        state = tx.init(p)
        for _ in range(3):
            updates, state = tx.update(jax.grad(f)(p), state, p)
            p = optax.apply_updates(p, updates)
        return p

    a, b, unpenalised = jax.jit(lambda p: (three_steps(with_l2, loss, p),
                                           three_steps(plain, penalised, p),
                                           three_steps(plain, loss, p)))(params)
    assert_tree_close(a, b, rtol=1e-5, atol=1e-6)
    # the penalty really acted on kernels, and left biases and norm scales alone
    ka, ku = a["dense_0"]["kernel"], unpenalised["dense_0"]["kernel"]
    assert np.abs(np.asarray(ka) - np.asarray(ku)).max() > 1e-3
    for layer, leaf in (("dense_0", "bias"), ("bn_0", "scale"), ("head", "bias")):
        np.testing.assert_allclose(a[layer][leaf], unpenalised[layer][leaf], rtol=1e-6)


def test_l2_gradient_is_added_before_clipping():
    """The penalty's gradient is part of the gradient that is clipped (as in the loss)."""
    params, grads = params_and_grads()
    l2 = 0.5
    upd = first_update(optim.build(optim.defaults(name="sgd", learning_rate=LR, l2=l2,
                                                  clip_norm=1.0), 10), params, grads)
    total = jax.tree.map(lambda g, p, k: g + l2 * p * k, grads, params, optim.decay_mask(params))
    norm = float(optax.tree.norm(total))
    assert norm > 1.0
    assert_tree_close(upd, jax.tree.map(lambda g: -LR * g / norm, total), rtol=1e-5)


# --- injected hyperparameters --------------------------------------------------------------------

def test_hyperparameters_are_injected_into_the_state():
    cfg = optim.defaults(name="adam", learning_rate=0.02, l2=0.1, clip_norm=2.0, b1=0.8)
    tx = optim.build(cfg, 10)
    state = tx.init({"k": jnp.zeros(2)})
    assert isinstance(state, optax.InjectStatefulHyperparamsState)
    hyper = optim.hyperparameters(state)
    assert set(hyper) == set(optim.HYPERPARAMETERS)
    assert {k: float(v) for k, v in hyper.items()} == pytest.approx(optim.injected(cfg))
    assert float(hyper["learning_rate"]) == pytest.approx(0.02) and hyper["b1"].dtype == jnp.float32
    # adamw's default decay when unset
    assert optim.injected(optim.defaults(name="adamw"))["weight_decay"] == 1e-4
    assert optim.injected(optim.defaults(name="adamw", weight_decay=0.3))["weight_decay"] == 0.3


def test_injected_rates_set_the_whole_schedule():
    """A sweep sets a member's peak and end rates in its state: its schedule is then the one a run
    with those rates would have."""
    cfg = optim.defaults(name="sgd", learning_rate=1.0, schedule="linear", end_learning_rate=0.0)
    tx = optim.build(cfg, total_steps=4)
    w = {"k": jnp.zeros(1)}
    state = tx.init(w)
    state.hyperparams["learning_rate"] = jnp.asarray(0.5, jnp.float32)  # what a sweep does
    state.hyperparams["end_learning_rate"] = jnp.asarray(0.1, jnp.float32)
    lr_at_step = optim.learning_rate_at(cfg, 4)
    seen, logged = [], []
    for t in range(3):
        logged.append(float(lr_at_step(state, jnp.int32(t))))
        u, state = tx.update({"k": jnp.ones(1)}, state, w)
        seen.append(-float(u["k"][0]))
    np.testing.assert_allclose(seen, [0.5, 0.4, 0.3], atol=1e-6)
    np.testing.assert_allclose(logged, seen, atol=1e-6)
    alone = optim.build({**cfg, "learning_rate": 0.5, "end_learning_rate": 0.1}, 4)
    state = alone.init(w)
    expected = []
    for t in range(3):
        u, state = alone.update({"k": jnp.ones(1)}, state, w)
        expected.append(-float(u["k"][0]))
    np.testing.assert_allclose(seen, expected, atol=1e-6)


def test_states_differing_in_hyperparameters_vmap_as_separate_runs():
    cfg = optim.defaults(name="adam", learning_rate=0.1, l2=0.01, weight_decay=0.01)
    tx = optim.build(cfg, 10)
    params, grads = params_and_grads()
    rates, l2s = jnp.array([0.1, 0.03]), jnp.array([0.01, 0.2])

    def one(lr, l2):
        state = tx.init(params)
        state.hyperparams["learning_rate"], state.hyperparams["l2"] = lr, l2
        return tx.update(grads, state, params)[0]

    together = jax.jit(jax.vmap(one))(rates, l2s)
    for i in range(2):
        alone = first_update(optim.build({**cfg, "learning_rate": float(rates[i]),
                                          "l2": float(l2s[i])}, 10), params, grads)
        assert_tree_close(jax.tree.map(lambda a: a[i], together), alone, rtol=1e-5, atol=1e-7)


def test_clip_norm_zero_in_a_program_built_with_clipping_does_not_clip():
    params, grads = params_and_grads()
    tx = optim.build(optim.defaults(name="sgd", learning_rate=LR, clip_norm=1.0), 10)
    state = tx.init(params)
    state.hyperparams["clip_norm"] = jnp.asarray(0.0, jnp.float32)
    upd, _ = tx.update(grads, state, params)
    assert_tree_close(upd, jax.tree.map(lambda g: -LR * g, grads), rtol=1e-6)
