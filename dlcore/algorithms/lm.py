"""Language modelling: next-token prediction with a causal model (dlcore.models.gpt, or yours).

    state = State(step, params, opt_state)
    batch = {'x': [b, T] int32 tokens, 'y': [b, T] int32 next tokens; -1 = no loss at that position}

The data is a language source (spec['task'] == 'language_model': dlcore.data.text,
tiny_shakespeare, sort): its evaluation splits are fixed windows {'x', 'y'} (the same for every
seed and run), so the validation loss is an estimate over the same tokens each time. `evaluate`
gives the mean next-token loss in nats ('loss'), in bits per token ('bits_per_char' for a
character-level corpus, 'bits_per_byte', 'bits_per_token'), the next-token accuracy, and, for
data with a prompt (spec['prompt_length'] P > 0: minGPT's sort), 'completion_accuracy': the
fraction of examples whose whole completion greedy decoding gets right.

`generate(variables, prompt [b, P], steps, key, temperature, top_k) -> [b, P + steps]` samples in
one compiled `lax.scan`, with the model's KV cache when its family has one (`init_cache`), and by
full forward passes otherwise (`generate(..., cached=False)`, what the tests compare against).
`dlcore report` writes sample.txt (text from `lm.prompt`) and attention.png (every layer's and
head's attention over a validation window).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dlcore import models, optim, parallel
from dlcore.config import ConfigError, check
from dlcore.core import Algorithm, Data, Snapshot


class State(NamedTuple):
    step: jax.Array      # int32 scalar: updates applied so far
    params: Any
    opt_state: Any


def defaults() -> dict:
    """The sections language modelling reads (the model's keys come from its family)."""
    return {"model": {"name": "gpt"}, "optim": optim.defaults(),
            # prompt: where sample.txt starts ('' = the start of the first evaluation window);
            # sample_length: tokens generated (0 = up to the block size); temperature 0 = greedy
            "lm": {"eval_batch_size": 64, "prompt": "", "sample_length": 0, "temperature": 0.8,
                   "top_k": 0}}


def masked_cross_entropy(logits: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """logits [..., V], y [...] (-1: no loss) -> (summed loss in nats, number of scored tokens)."""
    valid = y >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(y, 0))
    return jnp.sum(jnp.where(valid, ce, 0.0)), jnp.sum(valid)


def pick(logits: jax.Array, key: jax.Array, temperature: float, top_k: int) -> jax.Array:
    """The next token from logits [b, V]: greedy for temperature 0, else a draw from
    softmax(logits / temperature) over the top_k most likely tokens (0 = all)."""
    if temperature == 0:
        return jnp.argmax(logits, -1).astype(jnp.int32)
    logits = logits / temperature
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, -1).astype(jnp.int32)


def check_settings(own: dict, spec: dict) -> None:
    """ConfigError for an `lm` section no run can use."""
    check(type(own["eval_batch_size"]) is int and own["eval_batch_size"] > 0, "lm.eval_batch_size",
          f"must be a positive integer; got {own['eval_batch_size']!r}")
    check(isinstance(own["prompt"], str), "lm.prompt", f"must be text; got {own['prompt']!r}")
    n = own["sample_length"]
    check(type(n) is int and n >= 0, "lm.sample_length", f"must be an integer >= 0; got {n!r}")
    temp = own["temperature"]
    check(isinstance(temp, (int, float)) and not isinstance(temp, bool) and temp >= 0,
          "lm.temperature", f"must be a number >= 0 (0: greedy); got {temp!r}")
    k = own["top_k"]
    check(type(k) is int and 0 <= k <= spec["vocab_size"], "lm.top_k",
          f"must be an integer in [0, vocab size {spec['vocab_size']}] (0: all); got {k!r}")


def make(config: dict, data: Data, steps: int) -> Algorithm:
    """From config['model'], config['optim'] and config['lm'], for `steps` steps of `data`."""
    spec = data.spec
    check(spec.get("task") == "language_model", "data.name",
          "language modelling reads token windows {'x', 'y'}; choose a text source (text, "
          "tiny_shakespeare, sort)")
    own = config["lm"]
    check_settings(own, spec)
    model = models.build(config["model"], spec["input_shape"], spec["num_outputs"], jnp.int32)
    tx = optim.build(config["optim"], steps)
    block = getattr(model.module, "block_size", spec["block_size"])
    unit = spec.get("token_unit", "token")
    prompt_length = spec.get("prompt_length", 0)
    if own["prompt"]:  # what `dlcore report` will generate from, checked before training
        try:
            ids = spec["encode"](own["prompt"])
        except ConfigError as e:
            raise ConfigError(f"config key 'lm.prompt': {e}") from None
        if own["sample_length"]:
            try:
                check_length(len(ids), own["sample_length"], block)
            except ConfigError as e:
                raise ConfigError(f"config key 'lm.sample_length': {e}") from None

    def init(key: jax.Array) -> State:
        params = model.init(key, jnp.zeros((1, *spec["input_shape"]), jnp.int32))["params"]
        return State(jnp.zeros((), jnp.int32), params, tx.init(params))

    def loss_fn(params, batch, key):
        logits, _ = model.apply({"params": params}, batch["x"], True, key)
        total, count = masked_cross_entropy(logits, batch["y"])
        return total / jnp.maximum(count, 1)

    def step(state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return State(state.step + 1, params, opt_state), {"loss": loss}

    generate = generator(model, block)

    def evaluate(state: State, split: dict, key: jax.Array) -> dict:
        """Over the split's fixed windows, in chunks of eval_batch_size: loss (nats per token),
        bits per token, next-token accuracy (and completion accuracy, for prompted data)."""
        x, y = split["x"], split["y"]
        n = x.shape[0]
        chunk = min(n, own["eval_batch_size"])
        pad = (-n) % chunk
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
        y = jnp.concatenate([y, jnp.full((pad, *y.shape[1:]), -1, y.dtype)])
        variables = {"params": state.params}

        def scores(xy):
            xs, ys = xy
            logits, _ = model.apply(variables, xs, False, None)
            total, count = masked_cross_entropy(logits, ys)
            right = jnp.sum((jnp.argmax(logits, -1) == ys) & (ys >= 0))
            out = [total, count, right]
            if prompt_length:  # greedy decoding of the whole completion, exact match
                done = generate(variables, xs[:, :prompt_length], xs.shape[1] - prompt_length + 1,
                                key, 0.0, 0)[:, prompt_length:]
                out.append(jnp.sum(jnp.all(done == ys[:, prompt_length - 1:], -1)
                                   & (ys[:, -1] >= 0)))
            return out

        resh = lambda a: a.reshape(-1, chunk, *a.shape[1:])
        sums = [jnp.sum(s) for s in jax.lax.map(scores, (resh(x), resh(y)))]
        count = jnp.maximum(sums[1], 1).astype(jnp.float32)
        loss = sums[0] / count
        out = {"loss": loss, f"bits_per_{unit}": loss / math.log(2), "accuracy": sums[2] / count}
        if prompt_length:
            out["completion_accuracy"] = sums[3] / n
        return out

    def sample_text(params, prompt: str, length: int, key, temperature=None, top_k=None) -> str:
        """`length` tokens after `prompt` (text in the data's vocabulary), decoded: the prompt and
        its continuation. ConfigError for characters outside the vocabulary or more tokens than
        the model's block size."""
        ids = (spec["encode"](prompt) if prompt
               else data.splits[_held_out(data)]["x"][0, :max(1, block // 4)])
        temperature = own["temperature"] if temperature is None else temperature
        top_k = own["top_k"] if top_k is None else top_k
        length = length or block - len(ids) + 1
        check_length(len(ids), length, block)
        out = jax.jit(generate, static_argnums=(2, 4, 5))(
            {"params": params}, jnp.asarray(ids, jnp.int32)[None], length, key,
            float(temperature), int(top_k))
        return spec["decode"]([int(t) for t in out[0]])

    def pictures(s: Snapshot) -> list:
        """sample.txt (a continuation of lm.prompt) and attention.png (each layer's and head's
        attention weights over the start of the first held-out window)."""
        from dlcore import plots
        text = sample_text(s.state.params, own["prompt"], own["sample_length"], jax.random.key(0))
        path = s.out_dir / "sample.txt"
        path.write_text(f"# {s.title}: temperature {own['temperature']}, top_k {own['top_k']}\n"
                        f"{text}\n", encoding="utf-8")
        window = data.splits[_held_out(data)]["x"][:1, :min(block, 48)]
        weights = attention_weights(model, {"params": s.state.params}, window)
        if not weights:
            return [path]
        labels = [spec["decode"]([int(t)]) for t in window[0]]
        return [path, plots.attention_maps(weights, labels, s.out_dir / "attention.png",
                                           f"{s.title}: attention over a held-out window")]

    split = _held_out(data)
    headline = (f"{split}_loss",) + ((f"{split}_completion_accuracy",) if prompt_length else ())
    return Algorithm(init, step, evaluate, headline=headline, pictures=pictures,
                     extras={"model": model, "generate": generate, "sample_text": sample_text},
                     state_axes=lambda state: parallel.state_axes(state, models.logical_axes(
                         model, jnp.zeros((1, *spec["input_shape"]), jnp.int32))))


def _held_out(data: Data) -> str:
    return "validation" if "validation" in data.splits else "test"


def check_length(prompt_length: int, steps: int, block: int) -> None:
    """ConfigError unless a prompt of `prompt_length` tokens followed by `steps` generated ones
    fits the model's block size (the last generated token is never fed back)."""
    if prompt_length < 1:
        raise ConfigError("generation needs a prompt of at least one token")
    if prompt_length + steps - 1 > block:
        raise ConfigError(f"a prompt of {prompt_length} tokens and {steps} more make a sequence "
                          f"of {prompt_length + steps - 1} tokens to feed the model, longer than "
                          f"its block size {block}; shorten the prompt or the sample")


def generator(model: models.Model, block: int):
    """generate(variables, prompt [b, P] int32, steps, key, temperature, top_k, cached=True) ->
    tokens [b, P + steps]: the prompt and `steps` tokens drawn one after another (`pick`, the key
    of token i being fold_in(key, i)). Jittable with steps, temperature, top_k and cached static.
    With the KV cache (the model family's `init_cache`), the prompt is one forward pass and each
    new token one more; without it, every token is a full forward pass over the sequence so far."""
    module = model.module
    family = model.family

    def generate(variables, prompt, steps: int, key, temperature: float = 1.0, top_k: int = 0,
                 cached: bool = True):
        b, p = prompt.shape
        check_length(p, steps, block)
        prompt = prompt.astype(jnp.int32)
        if cached and hasattr(family, "init_cache"):
            cache = family.init_cache(module, b)
            logits, cache = module.apply(variables, prompt, cache=cache)
            first = pick(logits[:, -1], jax.random.fold_in(key, 0), temperature, top_k)

            def body(carry, i):
                token, cache = carry
                logits, cache = module.apply(variables, token[:, None], cache=cache)
                nxt = pick(logits[:, -1], jax.random.fold_in(key, i), temperature, top_k)
                return (nxt, cache), nxt
            _, rest = jax.lax.scan(body, (first, cache), jnp.arange(1, steps))
            return jnp.concatenate([prompt, first[:, None], rest.T], axis=1)

        length = p + steps - 1  # the tokens ever fed; later ones are padding the mask never sees
        buf = jnp.concatenate([prompt, jnp.zeros((b, steps), jnp.int32)], axis=1)

        def full(buf, i):
            logits, _ = model.apply(variables, buf[:, :length], False, None)
            at = jax.lax.dynamic_index_in_dim(logits, p + i - 1, axis=1, keepdims=False)
            token = pick(at, jax.random.fold_in(key, i), temperature, top_k)
            return jax.lax.dynamic_update_index_in_dim(buf, token, p + i, axis=1), None
        return jax.lax.scan(full, buf, jnp.arange(steps))[0]
    return generate


def attention_weights(model: models.Model, variables: dict, tokens) -> list:
    """Each layer's attention weights [heads, T, T] for tokens [1, T] (the ones the model records
    as 'attention' intermediates; [] for a model that records none)."""
    from dlcore import analysis
    found = analysis.intermediates(model, variables, jnp.asarray(tokens, jnp.int32))
    keys = sorted((k for k in found if k.split("/")[-1].startswith("attention")),
                  key=lambda k: [int(p) if p.isdigit() else p
                                 for p in k.replace("_", "/").split("/")])
    return [found[k][0] for k in keys]
