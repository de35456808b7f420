"""Training speed and MFU of nanoGPT's CPU "baby" GPT: hand-written `jax.jit`, PyTorch eager, dlcore.

    python benchmarks/gpt_speed.py [--config cpu|gpu] [--steps 50] [--repeats 3]
                                   [--dtype float32|bfloat16] [--variants] [--torch-threads 0]
                                   [--check] [--loss-check 200] [--json out.json]

The model and recipe are nanoGPT's `shakespeare_char` CPU configuration (`--config cpu`, the
default): 65-character vocabulary, 4 layers, 4 heads, width 128, block 64, batch 12; pre-LayerNorm
blocks, LayerNorm without bias and no biases anywhere (bias=False), MLP 4x wide with exact (erf)
GELU, learned positional embeddings, token embedding tied to the output head, final LayerNorm,
dropout 0; AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on the 2-D weights only (embeddings
included, as nanoGPT's `configure_optimizers`), gradient clipping at global norm 1.0; init
normal(0, 0.02), the two residual projections of each block normal(0, 0.02 / sqrt(2 * layers)).
`--config gpu` is nanoGPT's GPU configuration (6 layers, 6 heads, width 384, block 256, batch 64);
it is timed only on a GPU backend.

Data: a fixed random stream of 1,000,000 int tokens kept on the device; every step cuts `batch`
random windows of block + 1 tokens with `jax.random.randint` from the step's key (fold_in of the
step number), inside the jitted step (PyTorch: `torch.randint` on the host tensor).

Contenders, each compiled and warmed up once, then timed for `--steps` steps (block_until_ready
at the end), `--repeats` times in turn so that drift in machine speed hits all alike; medians:

* hand-written `jax.jit`: plain jax.numpy + optax, params a dict, causal attention
  `jax.nn.dot_product_attention(q, k, v, is_causal=True)` on [B, T, H, D], the whole update (batch
  cut, forward, backward, clip + adamw) one jitted function, params and optimizer state donated;
  the baseline of the ratio column. `--dtype bfloat16` adds the same step computing in bfloat16
  (params and optimizer state float32, cast inside the forward; LayerNorm statistics and the loss
  in float32); `--variants` adds the hand-written alternatives measured while writing this
  benchmark (attention forms, embedding lookup, layers as a `lax.scan`, ...);
* dlcore: `dlcore.algorithms.lm.make(dlcore.config.load("shakespeare/gpt_baby"), data, steps)`
  on a synthetic in-memory `Data` with the same token stream; its step jitted with the batch
  sampled inside, state donated (see `dlcore_step`; "not available" until those modules exist);
* PyTorch eager (when installed): the same model as a `nn.Module` (the hand-written JAX model's
  weights can be copied in: `--check`), `F.scaled_dot_product_attention(is_causal=True)`,
  `torch.optim.AdamW` (its default implementation), `clip_grad_norm_`,
  `torch.set_num_threads(cores this process may use)` (or `--torch-threads`).

Columns: ms/step; tokens/s = batch * block / (s/step); ratio = time per step against the
hand-written f32 step of the same run; MFU = achieved model FLOP/s / peak FLOP/s. Model FLOPs are
nanoGPT's `estimate_mfu` (the PaLM appendix-B count): flops_per_token = 6 N + 12 L H Q T with N =
`get_num_params()`, i.e. all parameters except the positional embedding (nanoGPT's default
non_embedding=True subtracts wpe; the tied token embedding stays, counted once), L layers, H heads,
Q head size, T block. The peak is measured in this process: a jitted 2048 x 2048 @ 2048 x 2048
matmul in JAX (float32; bfloat16 for the bf16 contender), warmed up, median of several calls,
2 * 2048^3 / seconds. PyTorch's own float32 (and bfloat16) matmul peak is measured the same way
and the PyTorch contender's MFU is printed against both.

`--check`: copies the hand-written JAX params into the PyTorch model and compares the loss on one
batch (rtol 1e-4), and again after three identical optimizer steps; exits non-zero on a mismatch.
`--loss-check N`: N training steps of the hand-written model on the real text
(../shared/data/tinyshakespeare.txt relative to the repository root, character vocabulary = the
sorted set of its characters, the first 90 % as nanoGPT's train split), float32 and bfloat16,
printing the final training loss of each (the mean of the last 10 steps); skipped with a note when
the file is absent.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = Path(__file__).resolve().parent.parent
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
STREAM = 1_000_000   # tokens of the synthetic stream
BASELINE = "hand-written jax.jit"


class GPTConfig(NamedTuple):
    vocab: int = 65
    layers: int = 4
    heads: int = 4
    width: int = 128
    block: int = 64
    batch: int = 12
    lr: float = 1e-3
    betas: tuple = (0.9, 0.99)
    weight_decay: float = 0.1
    clip: float = 1.0


CONFIGS = {
    "cpu": GPTConfig(),                                            # shakespeare_char on a CPU
    "gpu": GPTConfig(layers=6, heads=6, width=384, block=256, batch=64),  # its GPU config
}


def cpu_threads() -> int:
    """The cores this process may use (as benchmarks/_common.py; not imported from there, which
    imports dlcore.experiment: this script must run while dlcore's GPT modules are mid-edit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- model FLOPs (nanoGPT's estimate_mfu) ------------------------------------------------------------

def param_count(cfg: GPTConfig, non_embedding: bool = True) -> int:
    """nanoGPT's get_num_params: the tied wte once; non_embedding subtracts wpe."""
    C = cfg.width
    per_layer = C + 3 * C * C + C * C + C + 4 * C * C + 4 * C * C  # ln1, c_attn, c_proj, ln2, mlp
    n = cfg.vocab * C + cfg.block * C + cfg.layers * per_layer + C
    return n - cfg.block * C if non_embedding else n


def flops_per_token(cfg: GPTConfig) -> int:
    L, H, T = cfg.layers, cfg.heads, cfg.block
    return 6 * param_count(cfg) + 12 * L * H * (cfg.width // H) * T


# --- the hand-written JAX GPT ------------------------------------------------------------------------

def init_params(cfg: GPTConfig, key) -> dict:
    """nanoGPT's init; weights laid out [in, out] (PyTorch's Linear is [out, in])."""
    C, L = cfg.width, cfg.layers
    keys = iter(jax.random.split(key, 2 + 4 * L))
    normal = lambda shape, std=0.02: std * jax.random.normal(next(keys), shape, jnp.float32)
    proj_std = 0.02 / math.sqrt(2 * L)
    blocks = [{"ln1": jnp.ones((C,)), "attn": normal((C, 3 * C)),
               "attn_proj": normal((C, C), proj_std), "ln2": jnp.ones((C,)),
               "fc": normal((C, 4 * C)), "proj": normal((4 * C, C), proj_std)}
              for _ in range(L)]
    return {"wte": normal((cfg.vocab, C)), "wpe": normal((cfg.block, C)), "blocks": blocks,
            "ln_f": jnp.ones((C,))}


def layer_norm(x, w, eps: float = 1e-5):
    """Without bias; statistics in float32 whatever x's dtype (as PyTorch's autocast does)."""
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps) * w).astype(x.dtype)


def attention_dpa(q, k, v, implementation=None):
    """q, k, v [B, T, H, D] -> [B, T, H, D]."""
    return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=implementation)


def attention_softmax(q, k, v):
    """The same written out: einsum scores [B, H, T, T], causal mask, softmax in float32."""
    T, D = q.shape[1], q.shape[-1]
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(D)
    s = jnp.where(jnp.tril(jnp.ones((T, T), bool)), s, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v)


ATTENTION = {
    "dpa": attention_dpa,                                         # implementation=None (default)
    "dpa-xla": partial(attention_dpa, implementation="xla"),
    "softmax": attention_softmax,
}


class Options(NamedTuple):
    """How the hand-written model is written (same function, different programs)."""
    dtype: str = "float32"
    attention: str = "dpa"
    embedding: str = "gather"   # 'gather': wte[idx]; 'onehot': one_hot(idx) @ wte
    scan_layers: bool = False   # the blocks' params stacked, the layers one lax.scan
    gelu: str = "erf"           # 'erf' (exact, nanoGPT's nn.GELU()) or 'tanh' (NOT the same model)
    barrier: bool = False       # optimization_barrier on the residual stream's gradient
    linear: str = "plain"       # 'plain': x @ w; 'xt': custom_vjp saving x.T for dW = x.T @ g


@jax.custom_vjp
def grad_barrier(x):
    """Identity; its cotangent passes an optimization_barrier, so XLA materialises it once."""
    return x


grad_barrier.defvjp(lambda x: (x, None), lambda _, g: (jax.lax.optimization_barrier(g),))


@jax.custom_vjp
def linear_xt(x, w):
    """x [..., C] @ w [C, N]; the forward saves x.T [C, tokens] so that the backward's
    dW = x.T @ g contracts the minor dimension of both operands (no transposed copy of g)."""
    return x @ w


def _linear_xt_fwd(x, w):
    x2 = x.reshape(-1, x.shape[-1])
    return x @ w, (x2.T, w)


def _linear_xt_bwd(res, g):
    xt, w = res
    g2 = g.reshape(-1, g.shape[-1])
    dw = (xt @ g2).astype(w.dtype)
    dx = (g @ w.T).astype(g.dtype)
    return dx, dw


linear_xt.defvjp(_linear_xt_fwd, _linear_xt_bwd)


def block_fwd(x, blk, cfg: GPTConfig, opt: Options):
    B, T, C = x.shape
    H = cfg.heads
    dt = jnp.dtype(opt.dtype)
    w = lambda name: blk[name].astype(dt)
    mm = linear_xt if opt.linear == "xt" else jnp.matmul
    qkv = mm(layer_norm(x, blk["ln1"]), w("attn"))                    # [B, T, 3C]
    q, k, v = (a.reshape(B, T, H, C // H) for a in jnp.split(qkv, 3, axis=-1))
    y = ATTENTION[opt.attention](q, k, v).reshape(B, T, C)
    x = x + mm(y, w("attn_proj"))
    if opt.barrier:
        x = grad_barrier(x)
    h = mm(layer_norm(x, blk["ln2"]), w("fc"))
    h = jax.nn.gelu(h, approximate=opt.gelu == "tanh")
    x = x + mm(h, w("proj"))
    return grad_barrier(x) if opt.barrier else x


def forward(params, idx, cfg: GPTConfig, opt: Options = Options()):
    """idx int [B, T] -> logits float32 [B, T, vocab]."""
    dt = jnp.dtype(opt.dtype)
    wte = params["wte"].astype(dt)
    T = idx.shape[1]
    if opt.embedding == "onehot":
        tok = jax.nn.one_hot(idx, cfg.vocab, dtype=dt) @ wte
    else:
        tok = wte[idx]
    x = tok + params["wpe"][:T].astype(dt)
    if opt.scan_layers:
        x, _ = jax.lax.scan(lambda h, blk: (block_fwd(h, blk, cfg, opt), None), x,
                            params["blocks"])
    else:
        for blk in params["blocks"]:
            x = block_fwd(x, blk, cfg, opt)
    x = layer_norm(x, params["ln_f"])
    return jnp.einsum("btc,vc->btv", x, wte, preferred_element_type=jnp.float32)


def loss_fn(params, x, y, cfg: GPTConfig, opt: Options = Options()):
    logits = forward(params, x, cfg, opt)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def optimizer(cfg: GPTConfig):
    decay = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
    return optax.chain(optax.clip_by_global_norm(cfg.clip),
                       optax.adamw(cfg.lr, b1=cfg.betas[0], b2=cfg.betas[1],
                                   weight_decay=cfg.weight_decay, mask=decay))


def cut_batch(tokens, key, cfg: GPTConfig):
    """`batch` random windows of block + 1 tokens -> x, y int32 [batch, block]."""
    starts = jax.random.randint(key, (cfg.batch,), 0, tokens.shape[0] - cfg.block)
    win = tokens[starts[:, None] + jnp.arange(cfg.block + 1)]
    return win[:, :-1], win[:, 1:]


def stack_blocks(params):
    return {**params, "blocks": jax.tree.map(lambda *a: jnp.stack(a), *params["blocks"])}


def handwritten_step(cfg: GPTConfig, tokens, opt: Options = Options(), seed: int = 0):
    """-> (state, step): step(state, t) -> (state, loss), jitted, state donated."""
    tx = optimizer(cfg)
    params = init_params(cfg, jax.random.key(seed))
    if opt.scan_layers:
        params = stack_blocks(params)
    state = (params, tx.init(params))
    key_data = jax.random.key(seed + 1)

    def step(state, t):
        params, opt_state = state
        x, y = cut_batch(tokens, jax.random.fold_in(key_data, t), cfg)
        loss, g = jax.value_and_grad(loss_fn)(params, x, y, cfg, opt)
        updates, opt_state = tx.update(g, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return state, jax.jit(step, donate_argnums=0)


# --- the same model in PyTorch ------------------------------------------------------------------------

def torch_gpt(torch, cfg: GPTConfig):
    """nanoGPT's GPT with bias=False, dropout 0 (its init; weights can be overwritten by
    `torch_load_jax`)."""
    nn, F = torch.nn, torch.nn.functional

    class LayerNorm(nn.Module):
        def __init__(self, C):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(C))

        def forward(self, x):
            return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            C = cfg.width
            self.ln_1, self.ln_2 = LayerNorm(C), LayerNorm(C)
            self.c_attn = nn.Linear(C, 3 * C, bias=False)
            self.attn_proj = nn.Linear(C, C, bias=False)
            self.c_fc = nn.Linear(C, 4 * C, bias=False)
            self.mlp_proj = nn.Linear(4 * C, C, bias=False)
            self.gelu = nn.GELU()

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (a.view(B, T, cfg.heads, C // cfg.heads).transpose(1, 2) for a in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, T, C))
            return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            C = cfg.width
            self.wte = nn.Embedding(cfg.vocab, C)
            self.wpe = nn.Embedding(cfg.block, C)
            self.h = nn.ModuleList(Block() for _ in range(cfg.layers))
            self.ln_f = LayerNorm(C)
            self.lm_head = nn.Linear(C, cfg.vocab, bias=False)
            self.wte.weight = self.lm_head.weight  # tied
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = 0.02 / math.sqrt(2 * cfg.layers) if name.endswith("proj.weight") else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
            for blk in self.h:
                x = blk(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    return GPT()


def torch_optimizer(torch, net, cfg: GPTConfig):
    params = [p for p in net.parameters() if p.requires_grad]  # the tied weight once
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def torch_load_jax(torch, net, params) -> None:
    """Copy the hand-written JAX params (unstacked blocks) into `net`."""
    t = lambda a: torch.tensor(np.asarray(a))
    with torch.no_grad():
        net.wte.weight.copy_(t(params["wte"]))
        net.wpe.weight.copy_(t(params["wpe"]))
        net.ln_f.weight.copy_(t(params["ln_f"]))
        for blk, p in zip(net.h, params["blocks"]):
            blk.ln_1.weight.copy_(t(p["ln1"]))
            blk.ln_2.weight.copy_(t(p["ln2"]))
            for mod, name in ((blk.c_attn, "attn"), (blk.attn_proj, "attn_proj"),
                              (blk.c_fc, "fc"), (blk.mlp_proj, "proj")):
                mod.weight.copy_(t(p[name]).T)


def torch_step(torch, cfg: GPTConfig, tokens: np.ndarray, seed: int = 0):
    """-> (net, step): step(t) runs one training step (the loss stays on the tensor)."""
    torch.manual_seed(seed)
    net = torch_gpt(torch, cfg)
    opt = torch_optimizer(torch, net, cfg)
    data = torch.from_numpy(tokens.astype(np.int64))
    offsets = torch.arange(cfg.block + 1)
    gen = torch.Generator().manual_seed(seed + 1)

    def step(t):
        starts = torch.randint(0, len(data) - cfg.block, (cfg.batch,), generator=gen)
        win = data[starts[:, None] + offsets]
        loss = net(win[:, :-1], win[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        opt.step()
        return loss

    return net, step


# --- dlcore's own step (adjust here while dlcore's GPT settles) ---------------------------------

DLCORE_EXPERIMENT = "shakespeare/gpt_baby"


def synthetic_data(tokens, cfg: GPTConfig):
    """A dlcore `Data` over the token stream: sample cuts the same random windows as the
    hand-written step (dlcore/core.py is the contract)."""
    from dlcore.core import Data

    spec = {"task": "language_model", "input_shape": (cfg.block,), "input_dtype": "int32",
            "num_outputs": cfg.vocab, "vocab_size": cfg.vocab, "block_size": cfg.block,
            "token_unit": "char", "prompt_length": 0}
    n_val = 10 * (cfg.block + 1) * cfg.batch  # a small held-out tail, for algorithms that want one
    splits = {"train": {"tokens": tokens[:-n_val]}, "validation": {"tokens": tokens[-n_val:]},
              "test": {"tokens": tokens[-n_val:]}}

    def sample(train, step, key):
        x, y = cut_batch(train["tokens"], jax.random.fold_in(key, step), cfg)
        return {"x": x, "y": y}

    return Data(splits, spec, sample, evaluate_train=False)


def dlcore_step(config_overrides=(), cfg: GPTConfig = CONFIGS["cpu"], tokens=None,
                steps: int = 1000, seed: int = 0):
    """-> (init_state, step_fn): step_fn(state, t) -> (state, metrics), jitted, state donated.

    config_overrides: `--set`-style strings ('model.width=128', ...) applied to the experiment's
    config. Raises (ImportError, ConfigError, ...) while dlcore's GPT is not there; the caller
    reports the contender as not available with the reason.
    """
    import dlcore.algorithms.lm as lm
    import dlcore.config

    config = dlcore.config.load(DLCORE_EXPERIMENT)
    if config_overrides:
        config = dlcore.config.apply_overrides(config, list(config_overrides))
    if tokens is None:
        tokens = jax.random.randint(jax.random.key(7), (STREAM,), 0, cfg.vocab, jnp.int32)
    data = synthetic_data(tokens, cfg)
    config["data"] = {"name": "synthetic (benchmarks/gpt_speed.py)", "batch_size": cfg.batch}
    alg = lm.make(config, data, steps)
    key, key_data = jax.random.split(jax.random.key(seed))
    train = data.splits["train"]
    state = alg.init(jax.random.fold_in(key, 10**6))

    def step(s, t):
        return alg.step(s, data.sample(train, t, key_data), jax.random.fold_in(key, t))

    return state, jax.jit(step, donate_argnums=0)


# --- measurement -------------------------------------------------------------------------------------

def matmul_peak_jax(dtype: str, n: int = 2048, calls: int = 9) -> float:
    """FLOP/s of a jitted n x n @ n x n matmul: warmed up, median of `calls`."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(jnp.matmul)
    for _ in range(2):
        f(a, b).block_until_ready()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


def matmul_peak_torch(torch, dtype: str, n: int = 2048, calls: int = 9) -> float:
    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


class Contender:
    """prepare() once (build, compile, warm up: untimed); run(steps) -> seconds per step."""

    def __init__(self, name: str, prepare: Callable[[], Callable[[int], float]], peak: str):
        self.name, self._prepare, self.peak = name, prepare, peak
        self.run: Callable[[int], float] | None = None
        self.compile_s = float("nan")
        self.missing: str | None = None

    def prepare(self) -> None:
        t0 = time.perf_counter()
        try:
            self.run = self._prepare()
        except Exception as e:  # noqa: BLE001 - reported as "not available (reason)"
            tb = e.__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
            msg = str(e).splitlines()[0] if str(e) else ""
            self.missing = f"{type(e).__name__}: {msg[:160]} [{where}]"
        self.compile_s = time.perf_counter() - t0


def jax_runner(state, step, warmup: int = 3) -> Callable[[int], float]:
    """Compile and warm up `step`; return run(steps) timing `steps` calls after a sync."""
    box = [state]
    for t in range(warmup):
        box[0], out = step(box[0], jnp.int32(t))
    jax.block_until_ready((box[0], out))
    counter = [warmup]

    def run(steps: int) -> float:
        ts = [jnp.int32(counter[0] + i) for i in range(steps)]  # made before the clock starts
        t0 = time.perf_counter()
        for t in ts:
            box[0], out = step(box[0], t)
        jax.block_until_ready((box[0], out))
        dt = time.perf_counter() - t0
        counter[0] += steps
        return dt / steps

    return run


def torch_runner(torch, cfg, tokens_np, warmup: int = 3) -> Callable[[int], float]:
    _, step = torch_step(torch, cfg, tokens_np)
    for t in range(warmup):
        step(t)

    def run(steps: int) -> float:
        t0 = time.perf_counter()
        for t in range(steps):
            loss = step(t)
        loss.item()
        return (time.perf_counter() - t0) / steps

    return run


VARIANTS = {  # name: Options; each the same model (but 'gelu tanh', marked) written differently
    "attention implementation='xla'": Options(attention="dpa-xla"),
    "attention hand-written softmax": Options(attention="softmax"),
    "embedding one_hot @ wte": Options(embedding="onehot"),
    "layers as one lax.scan": Options(scan_layers=True),
    "GELU tanh (other model)": Options(gelu="tanh"),
}


def build_contenders(args, cfg: GPTConfig, tokens, torch) -> list[Contender]:
    cs = [Contender(BASELINE, lambda: jax_runner(*handwritten_step(cfg, tokens)), "jax float32")]
    if args.dtype == "bfloat16":
        cs.append(Contender("hand-written jax.jit bf16", lambda: jax_runner(
            *handwritten_step(cfg, tokens, Options(dtype="bfloat16"))), "jax bfloat16"))
    if args.variants:
        for name, opt in VARIANTS.items():
            cs.append(Contender(f"hand-written, {name}", lambda opt=opt: jax_runner(
                *handwritten_step(cfg, tokens, opt)), f"jax {opt.dtype}"))
    cs.append(Contender("dlcore (lm.make)", lambda: jax_runner(
        *dlcore_step(args.dlcore_set, cfg, tokens, steps=10 ** 6)), "jax float32"))
    if torch is None:
        c = Contender("pytorch eager", lambda: None, "torch float32")
        c.missing = "torch not installed"
        cs.append(c)
    else:
        tokens_np = np.asarray(tokens)
        cs.append(Contender("pytorch eager", lambda: torch_runner(torch, cfg, tokens_np),
                            "torch float32"))
    return cs


# --- checks ------------------------------------------------------------------------------------------

def check_same_function(torch, cfg: GPTConfig, tokens, rtol: float = 1e-4) -> bool:
    """The JAX params copied into the PyTorch model: the same loss on one batch, and after three
    optimizer steps on the same batches."""
    params = init_params(cfg, jax.random.key(0))
    batches = [cut_batch(tokens, jax.random.key(100 + i), cfg) for i in range(4)]
    net = torch_gpt(torch, cfg)
    torch_load_jax(torch, net, params)
    opt_t = torch_optimizer(torch, net, cfg)
    tx = optimizer(cfg)
    opt_state = tx.init(params)

    @jax.jit
    def jstep(params, opt_state, x, y):
        loss, g = jax.value_and_grad(loss_fn)(params, x, y, cfg)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    ok = True
    for i, (x, y) in enumerate(batches):
        xt, yt = (torch.from_numpy(np.asarray(a).astype(np.int64)) for a in (x, y))
        loss_t = net(xt, yt)
        if i < 3:
            params, opt_state, loss_j = jstep(params, opt_state, x, y)
            opt_t.zero_grad()
            loss_t.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
            opt_t.step()
        else:
            loss_j = jax.jit(loss_fn, static_argnums=3)(params, x, y, cfg)
        lj, lt = float(loss_j), loss_t.item()
        rel = abs(lj - lt) / abs(lt)
        good = rel <= rtol
        ok &= good
        what = "initial params" if i == 0 else f"after {i} optimizer step{'s' * (i > 1)}"
        print(f"  loss, {what:24s}: jax {lj:.7f}  torch {lt:.7f}  rel diff {rel:.1e}  "
              f"{'ok' if good else f'MISMATCH (rtol {rtol:g})'}")
    return ok


def loss_check(cfg: GPTConfig, steps: int) -> dict | None:
    if not TEXT.is_file():
        print(f"loss check skipped: {TEXT} is absent")
        return None
    text = TEXT.read_text()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = np.array([lookup[c] for c in text], np.int32)
    train = jnp.asarray(ids[:int(0.9 * len(ids))])
    cfg = cfg._replace(vocab=len(chars))
    out = {}
    for dtype in ("float32", "bfloat16"):
        state, step = handwritten_step(cfg, train, Options(dtype=dtype))
        losses = []
        for t in range(steps):
            state, loss = step(state, jnp.int32(t))
            losses.append(loss)
        losses = np.asarray(jax.device_get(losses))
        out[dtype] = {"first": float(losses[0]), "final": float(losses[-10:].mean())}
        print(f"  {dtype:8s}: loss at step 0 {losses[0]:.4f}, mean of the last 10 of {steps} "
              f"steps {losses[-10:].mean():.4f}")
    return out


# --- main --------------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    p.add_argument("--steps", type=int, default=50, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16: also time the hand-written step computing in bf16")
    p.add_argument("--variants", action="store_true",
                   help="also time the hand-written alternatives (VARIANTS)")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch.set_num_threads (0: the cores this process may use)")
    p.add_argument("--dlcore-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override in dlcore's experiment config (repeatable)")
    p.add_argument("--check", action="store_true",
                   help="check that the JAX and PyTorch models compute the same loss, and stop")
    p.add_argument("--loss-check", type=int, default=0, metavar="N",
                   help="also train N steps on tiny Shakespeare, f32 and bf16 (0: off)")
    p.add_argument("--json", metavar="PATH", help="write the numbers here")
    args = p.parse_args()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)

    backend = jax.default_backend()
    if args.config == "gpu" and backend != "gpu":
        p.error(f"--config gpu is timed on a GPU backend only (this one is {backend})")
    cfg = CONFIGS[args.config]
    torch = None
    try:
        import torch
        torch.set_num_threads(args.torch_threads or cpu_threads())
    except ImportError:
        pass
    tokens = jax.random.randint(jax.random.key(7), (STREAM,), 0, cfg.vocab, jnp.int32)

    if args.check:
        if torch is None:
            sys.exit("--check needs PyTorch, which is not installed")
        print(f"JAX and PyTorch GPT ({args.config} config) on the same params and batches:")
        sys.exit(0 if check_same_function(torch, cfg, tokens) else 1)

    tokens_per_step = cfg.batch * cfg.block
    fpt = flops_per_token(cfg)
    log("measuring matmul peaks")
    peaks = {"jax float32": matmul_peak_jax("float32")}
    if args.dtype == "bfloat16" or backend == "gpu":
        peaks["jax bfloat16"] = matmul_peak_jax("bfloat16")
    if torch is not None:
        peaks["torch float32"] = matmul_peak_torch(torch, "float32")
        peaks["torch bfloat16"] = matmul_peak_torch(torch, "bfloat16")

    contenders = build_contenders(args, cfg, tokens, torch)
    for c in contenders:
        if c.missing is None:
            log(f"preparing {c.name}")
            c.prepare()
        if c.missing:
            log(f"  {c.name}: not available ({c.missing})")
    live = [c for c in contenders if c.missing is None]
    times: dict[str, list[float]] = {c.name: [] for c in live}
    for r in range(args.repeats):
        for c in live:
            s = c.run(args.steps)
            times[c.name].append(s)
            log(f"  repeat {r + 1}/{args.repeats} {c.name}: {s * 1e3:.2f} ms/step")

    base = statistics.median(times[BASELINE])
    rows = []
    for c in contenders:
        if c.missing:
            rows.append({"contender": c.name, "available": False, "reason": c.missing})
            continue
        s = statistics.median(times[c.name])
        achieved = fpt * tokens_per_step / s
        row = {"contender": c.name, "available": True, "ms_per_step": s * 1e3,
               "ms_per_step_all": [t * 1e3 for t in times[c.name]],
               "tokens_per_s": tokens_per_step / s, "ratio": s / base,
               "achieved_gflops": achieved / 1e9, "peak": c.peak,
               "mfu": achieved / peaks[c.peak], "prepare_s": c.compile_s}
        if c.name == "pytorch eager":
            row["mfu_vs_jax_float32_peak"] = achieved / peaks["jax float32"]
        rows.append(row)

    threads = f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else ""
    print(f"\nnanoGPT shakespeare_char '{args.config}' config: {cfg.layers} layers, {cfg.heads} "
          f"heads, width {cfg.width}, block {cfg.block}, batch {cfg.batch}; {args.steps} steps, "
          f"median of {args.repeats}, {backend} backend, jax {jax.__version__}{threads}")
    print(f"N = {param_count(cfg):,} params (nanoGPT's get_num_params: without wpe; "
          f"{param_count(cfg, False):,} in all); flops/token = 6N + 12LHQT = {fpt:,}; "
          f"{tokens_per_step} tokens/step = {fpt * tokens_per_step / 1e9:.3f} GFLOP/step")
    print("matmul peaks (2048^3, median of 9): "
          + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    w = max(len(r["contender"]) for r in rows) + 1
    print(f"\n{'contender':{w}s} {'ms/step':>8s} {'tokens/s':>9s} {'ratio':>6s} "
          f"{'GFLOP/s':>8s} {'MFU':>6s}  peak")
    for r in rows:
        if not r["available"]:
            print(f"{r['contender']:{w}s} not available ({r['reason']})")
            continue
        extra = (f"; {r['mfu_vs_jax_float32_peak']:.1%} of jax float32"
                 if "mfu_vs_jax_float32_peak" in r else "")
        print(f"{r['contender']:{w}s} {r['ms_per_step']:8.2f} {r['tokens_per_s']:9.0f} "
              f"{r['ratio']:6.2f} {r['achieved_gflops']:8.1f} {r['mfu']:6.1%}  {r['peak']}{extra}")

    losses = None
    if args.loss_check:
        print(f"\nloss check: {args.loss_check} steps of the hand-written model on "
              f"tiny Shakespeare (characters; random ~ ln 65 = {math.log(65):.2f})")
        losses = loss_check(cfg, args.loss_check)

    if args.json:
        out = {"config": args.config, "model": cfg._asdict(), "steps": args.steps,
               "repeats": args.repeats, "backend": backend, "jax": jax.__version__,
               "torch": torch.__version__ if torch else None,
               "torch_threads": torch.get_num_threads() if torch else None,
               "machine": platform.processor() or platform.machine(), "cores": cpu_threads(),
               "xla_flags": os.environ.get("XLA_FLAGS", ""),
               "params": param_count(cfg), "params_all": param_count(cfg, False),
               "flops_per_token": fpt, "tokens_per_step": tokens_per_step,
               "peaks_flops": peaks, "contenders": rows, "loss_check": losses}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
