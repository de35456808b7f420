"""dlcore.algorithms.lm: the masked loss against a dense computation, evaluation over fixed windows,
sampling with the KV cache token for token equal to sampling without it, greedy completion
accuracy, the bad inputs of issue 13 (a prompt outside the vocabulary, a sequence past the block
size, a vocabulary that does not match the data, heads that do not divide the width), and the
encoder's permutation invariance through training on MNIST-1D.

Models are tiny GPTs on a text the tests write; one algorithm is built per module and shared."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import experiment
from dlcore.algorithms import lm
from dlcore.config import ConfigError

pytestmark = pytest.mark.timeout(300)
TEXT = "to be, or not to be: that is the question.\nwhether 'tis nobler in the mind to suffer\n" * 30


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "hamlet.txt"
    path.write_text(TEXT)
    return path


def config(corpus, **sections):
    cfg = {"algorithm": "lm",
           "data": {"name": "text", "path": str(corpus), "block_size": 16, "batch_size": 8,
                    "eval_windows": 40},
           "model": {"name": "gpt", "layers": 2, "heads": 2, "width": 16},
           "optim": {"learning_rate": 1e-2}, "loop": {"steps": 20}}
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    return experiment.complete(cfg)


@pytest.fixture(scope="module")
def built(corpus):
    return experiment.build(config(corpus))


@pytest.fixture(scope="module")
def state(built):
    algorithm, data = built
    return algorithm.init(jax.random.key(0))


def test_masked_cross_entropy_is_the_dense_mean_over_scored_positions():
    logits = jax.random.normal(jax.random.key(0), (2, 5, 7))
    y = jnp.array([[1, 2, -1, 3, -1], [0, -1, -1, 6, 5]])
    total, count = lm.masked_cross_entropy(logits, y)
    logp = np.asarray(jax.nn.log_softmax(logits))
    want = [-logp[b, t, y[b, t]] for b in range(2) for t in range(5) if y[b, t] >= 0]
    assert int(count) == len(want) == 6
    assert float(total) == pytest.approx(sum(want), rel=1e-5)


def test_step_lowers_the_loss_and_evaluate_scores_fixed_windows(built, state):
    algorithm, data = built
    step = jax.jit(algorithm.step)
    s = state
    for t in range(30):
        s, m = step(s, data.sample(data.splits["train"], t, jax.random.key(1)), jax.random.key(t))
    before = algorithm.evaluate(state, data.splits["validation"], jax.random.key(0))
    after = algorithm.evaluate(s, data.splits["validation"], jax.random.key(0))
    assert float(after["loss"]) < float(before["loss"]) - 0.7
    assert float(after["bits_per_char"]) == pytest.approx(float(after["loss"]) / np.log(2), rel=1e-6)
    # the same windows every time: evaluating twice gives the same number
    again = algorithm.evaluate(s, data.splits["validation"], jax.random.key(9))
    assert float(again["loss"]) == float(after["loss"])
    # the loss is the dense mean over every window and position
    logits, _ = algorithm.extras["model"].apply({"params": s.params}, data.splits["validation"]["x"])
    dense = -np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)),
                                np.asarray(data.splits["validation"]["y"])[..., None], -1).mean()
    assert float(after["loss"]) == pytest.approx(dense, rel=1e-4)


_JITTED = {}


def _generate(algorithm):
    """One jitted generate per algorithm (tests of one algorithm share its compiles)."""
    key = id(algorithm.extras["generate"])
    if key not in _JITTED:
        _JITTED[key] = jax.jit(algorithm.extras["generate"], static_argnums=(2, 4, 5, 6))
    return _JITTED[key]


@pytest.mark.parametrize("temperature, top_k", [(0.0, 0), (1.0, 0), (0.7, 3)])
def test_sampling_with_the_kv_cache_equals_sampling_without(built, state, temperature, top_k):
    algorithm, data = built
    gen = _generate(algorithm)
    prompt = jnp.asarray(data.splits["validation"]["x"][:3, :4])
    variables = {"params": state.params}
    cached = gen(variables, prompt, 13, jax.random.key(3), temperature, top_k, True)
    plain = gen(variables, prompt, 13, jax.random.key(3), temperature, top_k, False)
    assert cached.shape == (3, 17)
    np.testing.assert_array_equal(cached, plain)
    np.testing.assert_array_equal(cached[:, :4], prompt)
    if temperature:  # a different key draws different text
        other = gen(variables, prompt, 13, jax.random.key(4), temperature, top_k, True)
        assert not np.array_equal(other, cached)


def test_greedy_decoding_is_the_argmax_of_the_full_forward_pass(built, state):
    algorithm, data = built
    prompt = jnp.asarray(data.splits["validation"]["x"][:2, :5])
    out = _generate(algorithm)({"params": state.params}, prompt, 6, jax.random.key(0), 0.0, 0, True)
    logits, _ = algorithm.extras["model"].apply({"params": state.params}, out[:, :-1])
    np.testing.assert_array_equal(jnp.argmax(logits[:, 4:], -1), out[:, 5:])


def test_top_k_draws_only_from_the_k_most_likely():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    draws = {int(lm.pick(logits, jax.random.key(i), 1.0, 2)[0]) for i in range(200)}
    assert draws == {0, 1}
    assert int(lm.pick(logits, jax.random.key(0), 0.0, 0)[0]) == 0


def test_sample_text_decodes_and_refuses_bad_prompts(built, state):
    algorithm, _ = built
    sample = algorithm.extras["sample_text"]
    text = sample(state.params, "to be", 8, jax.random.key(0))
    assert text.startswith("to be") and len(text) == 5 + 8
    with pytest.raises(ConfigError, match="outside the vocabulary.*'B'"):
        sample(state.params, "to Be", 4, jax.random.key(0))
    with pytest.raises(ConfigError, match="longer than its block size 16"):
        sample(state.params, "to be", 13, jax.random.key(0))


@pytest.mark.parametrize("sections, words", [
    ({"lm": {"prompt": "ROMEO:"}}, "lm.prompt.*outside the vocabulary.*'R'"),
    ({"lm": {"prompt": "to be", "sample_length": 20}}, "lm.sample_length.*block size 16"),
    ({"model": {"vocab_size": 65}}, "does not match the data's vocabulary of"),
    ({"model": {"heads": 3}}, "3 heads do not divide the width 16"),
    ({"lm": {"top_k": -1}}, "lm.top_k"),
    ({"data": {"name": "digits"}}, "choose a text source"),
])
def test_bad_input_is_one_clear_error_before_anything_compiles(corpus, sections, words):
    cfg = config(corpus)
    for k, v in sections.items():
        if k == "data":
            cfg["data"] = {"name": "digits"}
        else:
            cfg[k] = {**cfg[k], **v}
    with pytest.raises(ConfigError, match=words):
        experiment.build(experiment.complete(cfg))


def test_completion_accuracy_scores_whole_greedy_completions():
    cfg = experiment.complete({"algorithm": "lm", "data": {"name": "sort"},
                               "model": {"name": "gpt", "layers": 1, "heads": 1, "width": 8},
                               "loop": {"steps": 1}})
    algorithm, data = experiment.build(cfg)
    s = algorithm.init(jax.random.key(0))
    got = algorithm.evaluate(s, data.splits["test"], jax.random.key(0))
    # by hand: greedy completions of the untrained model, compared with the sorted digits
    test = data.splits["test"]
    out = _generate(algorithm)({"params": s.params}, jnp.asarray(test["x"][:, :6]), 6,
                               jax.random.key(0), 0.0, 0, True)
    want = np.mean(np.all(np.asarray(out[:, 6:]) == test["y"][:, 5:], -1))
    assert float(got["completion_accuracy"]) == pytest.approx(want)
    assert algorithm.headline == ("test_loss", "test_completion_accuracy")


def test_encoder_without_positions_scores_the_same_on_shuffled_mnist1d(tmp_path):
    """Issue 13's exact check: no positional information + a pooled readout = permutation
    invariance, so training on MNIST-1D with its samples shuffled by one fixed permutation gives
    the accuracy of training on it unshuffled."""
    scores = []
    for shuffled in (False, True):
        cfg = experiment.load("mnist1d/transformer", quick=True, overrides=[
            "model.positions=none", f"data.shuffle_seq={str(shuffled).lower()}",
            "model.layers=1", "model.width=16", "loop.plots=false"])
        summary = experiment.run(cfg, tmp_path / str(shuffled), progress=False)
        scores.append(summary["metrics"]["test_accuracy"])
    assert scores[0] == scores[1] and scores[0] > 0.2


def test_report_writes_a_sample_and_attention_maps(corpus, tmp_path, capsys):
    from dlcore.cli import main
    cfg = config(corpus, lm={"prompt": "to be", "sample_length": 8},
                 loop={"steps": 10, "eval_every": 10, "checkpoint_every": 10, "log_every": 10,
                       "plots": False})
    experiment.run(cfg, tmp_path, progress=False)
    assert main(["report", str(tmp_path)]) == 0
    header, text = (tmp_path / "plots" / "sample.txt").read_text().split("\n", 1)
    assert header.startswith("# ") and text.startswith("to be") and len(text) == 5 + 8 + 1
    assert (tmp_path / "plots" / "attention.png").stat().st_size > 5000
