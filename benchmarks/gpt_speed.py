"""Training speed and MFU of nanoGPT's CPU "baby" GPT: hand-written jax.jit, PyTorch eager, dlcore.

    python benchmarks/gpt_speed.py [--config cpu|gpu] [--steps 50] [--repeats 3]
                                   [--dtype float32|bfloat16] [--variants] [--torch-threads 0]
                                   [--dlcore-set KEY=VALUE ...] [--check] [--loss-check 200]
                                   [--json out.json]

The model and recipe are nanoGPT's `shakespeare_char` CPU configuration (`--config cpu`, the
default): 65-character vocabulary, 4 layers, 4 heads, width 128, block 64, batch 12; pre-LayerNorm
blocks, LayerNorm without bias and no biases anywhere (bias=False), MLP 4x wide with exact (erf)
GELU, learned positional embeddings, token embedding tied to the output head, final LayerNorm,
dropout 0; AdamW lr 1e-3 (constant), betas (0.9, 0.99), weight decay 0.1 on the 2-D weights only
(the embeddings included, as nanoGPT's `configure_optimizers`), gradient clipping at global norm
1.0; init normal(0, 0.02), the two residual projections of each block normal(0, 0.02 /
sqrt(2 * layers)). `--config gpu` is nanoGPT's GPU configuration (6 layers, 6 heads, width 384,
block 256, batch 64); it is timed only on a GPU backend.

Data: a fixed random stream of 1,000,000 int tokens kept on the device; every step cuts `batch`
random windows of block + 1 tokens with `jax.random.randint` from the step's key (fold_in of the
step number), inside the jitted step (PyTorch: `torch.randint` on the host tensor).

Contenders, each built, compiled and warmed up once (untimed), then timed for `--steps` steps
(block_until_ready at the end), `--repeats` times in turn so that drift in machine speed hits all
alike; medians:

* hand-written `jax.jit` (the baseline of the ratio column): plain jax.numpy + optax, params a
  dict, causal attention `jax.nn.dot_product_attention(q, k, v, is_causal=True)` on [B, T, H, D],
  autodiff throughout; the whole update (batch cut, forward, backward, clip + adamw) one jitted
  function, params and optimizer state donated;
* hand-written, tuned: the same function written the way measured fastest on a 2-core CPU
  (`TUNED`; `--variants` times each change alone): every matmul a custom_vjp whose forward keeps
  x.T for the weight gradient (dW = x.T @ g), exact GELU through `lax.erf` with a hand-written
  derivative, LayerNorm with a hand-written backward, attention as einsum + masked softmax, the
  batch as two independent halves;
* `--dtype bfloat16` adds both computing in bfloat16 (params and optimizer state float32, cast
  inside the forward; LayerNorm statistics, softmax and the loss in float32), their MFU against the
  bfloat16 matmul peak;
* dlcore: `dlcore.algorithms.lm.make` on the completed config of the experiment
  `shakespeare/gpt_baby` (`--config gpu`: `shakespeare/gpt` with dropout 0, as the hand-written
  model; `DLCORE_EXPERIMENTS`) (`dlcore.experiment.load`: `dlcore.config.load` plus the defaults;
  `--dlcore-set` overrides; note its warm-up + cosine learning-rate schedule) and a synthetic
  in-memory `Data` over the same token stream; its step jitted with the batch sampled inside, the
  state donated (`dlcore_step`, the place to adjust); "not available (reason)" while that code is
  missing or broken;
* PyTorch eager (when installed), in a child process of its own (JAX's thread pool and PyTorch's
  OpenMP threads in one process slow each other down): the same model as an `nn.Module`
  (`--check` copies the JAX weights in and compares), `F.scaled_dot_product_attention(
  is_causal=True)`, `torch.optim.AdamW` (its default implementation), `clip_grad_norm_`,
  `torch.set_num_threads(cores this process may use)` or `--torch-threads`; and again on one
  thread (with several threads its OpenMP pool is fast on an idle machine and very slow on a busy
  one: every parallel region waits for a thread the OS has descheduled).

Columns: ms/step; tokens/s = batch * block / (s/step); ratio = time per step against the
hand-written step of the same run; GFLOP/s achieved and MFU = achieved / peak. Model FLOPs are
nanoGPT's `estimate_mfu` (the PaLM appendix-B count): flops_per_token = 6 N + 12 L H Q T, with N =
nanoGPT's `get_num_params()`: all parameters but the positional embedding (its default
non_embedding=True subtracts wpe; the tied token embedding counts once), L layers, H heads, Q head
size, T block. The peak is measured in this process, once in every repeat (the median is used): a
jitted 2048 x 2048 @ 2048 x 2048 matmul in JAX (float32; bfloat16 for the bf16 contenders), warmed
up, median of 5 calls, 2 * 2048^3 / seconds. PyTorch's own float32 peak is measured the same way, in
its worker process with all its threads; its contenders' MFU is printed against both.

Measured on the 2-core CPU (Xeon, AVX-512/AMX; jax 0.10.2, torch 2.13; a machine shared with other
jobs, so medians moved by up to 30 % between runs; float32 2048^3 peak 180-270 GFLOP/s in JAX,
230-275 in PyTorch): hand-written 92-108 ms/step (18-21 % MFU); tuned 44-59 ms (33-37 %); dlcore
98-113 ms (as the hand-written baseline); PyTorch on 2 threads 32-42 ms (42-47 %) while it has
both cores, 0.7-2 s while another process takes one; on 1 thread 48-65 ms. One change at a time
(`--variants`, ratios to the baseline): linear keeping x.T 0.72, LayerNorm vjp 0.73 (either
removes the transposed gradient fusions), GELU via lax.erf 0.97, einsum softmax attention 1.08
alone but the better form once tuned, implementation='xla' 1.12, layers as lax.scan 1.20, Eigen
instead of YNNPACK dots 1.04; bfloat16 0.71 for the baseline, no gain once tuned (XLA:CPU's bf16
matmul runs no faster than f32 here, PyTorch's reaches 700+ GFLOP/s).

`--check`: copies the hand-written JAX params into the PyTorch model and compares the loss on one
batch (rtol 1e-4), and again after each of three identical optimizer steps; compares the tuned
JAX step's loss and gradients with the baseline's; exits non-zero on a mismatch.
`--loss-check N`: N training steps of the hand-written model (float32, bfloat16, and the tuned
float32) on the real text, ../shared/data/tinyshakespeare.txt from the repository root (character
vocabulary = the sorted set of its characters, the first 90 % as nanoGPT's train split), printing
each final training loss (the mean of the last 10 steps); skipped with a note when it is absent.
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
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = Path(__file__).resolve().parent.parent
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
STREAM = 1_000_000   # tokens of the synthetic stream
# tiny Shakespeare's 65 characters: the synthetic data's vocabulary (dlcore's spec encodes prompts)
VOCAB65 = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
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
    "cpu": GPTConfig(),                                                   # shakespeare_char, CPU
    "gpu": GPTConfig(layers=6, heads=6, width=384, block=256, batch=64),  # its GPU config
}


def cpu_threads() -> int:
    """The cores this process may use (as benchmarks/_common.py, not imported from there: it
    imports dlcore.experiment, and this script must run while dlcore's GPT code is mid-edit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- model FLOPs (nanoGPT's estimate_mfu) ---------------------------------------------------------

def param_count(cfg: GPTConfig, non_embedding: bool = True) -> int:
    """nanoGPT's get_num_params: the tied wte once; non_embedding subtracts wpe."""
    C = cfg.width
    per_layer = C + 3 * C * C + C * C + C + 4 * C * C + 4 * C * C  # ln1, c_attn, c_proj, ln2, mlp
    n = cfg.vocab * C + cfg.block * C + cfg.layers * per_layer + C
    return n - cfg.block * C if non_embedding else n


def flops_per_token(cfg: GPTConfig) -> int:
    L, H, T = cfg.layers, cfg.heads, cfg.block
    return 6 * param_count(cfg) + 12 * L * H * (cfg.width // H) * T


# --- the hand-written JAX GPT ---------------------------------------------------------------------

class Options(NamedTuple):
    """How the hand-written model is written: the same function (but gelu='tanh'), different
    programs. The defaults are the plain baseline; TUNED the fastest measured on a 2-core CPU."""
    dtype: str = "float32"      # compute dtype; params and optimizer state stay float32
    attention: str = "dpa"      # 'dpa': jax.nn.dot_product_attention; 'dpa-xla': the same with
                                # implementation='xla'; 'softmax': einsum + masked softmax
    linear: str = "plain"       # 'plain': x @ w by autodiff; 'xt': custom_vjp keeping x.T, so the
                                # weight gradient is x.T @ g (see `linear_xt`)
    gelu: str = "erf"           # 'erf': jax.nn.gelu(approximate=False), exact as nanoGPT's
                                # nn.GELU; 'erf-vjp': the same via lax.erf, hand-written
                                # derivative; 'tanh': the tanh approximation (NOT the same model)
    layer_norm: str = "plain"   # 'plain': autodiff; 'vjp': hand-written backward
    qkv: str = "fused"          # 'fused': one [C, 3C] matmul (nanoGPT's c_attn); 'separate': three
    embedding: str = "gather"   # 'gather': wte[idx]; 'onehot': one_hot(idx) @ wte
    scan_layers: bool = False   # the blocks' params stacked, the layers one lax.scan
    split: int = 1              # the batch as this many independent forward passes (same loss)


TUNED = Options(attention="softmax", linear="xt", gelu="erf-vjp", layer_norm="vjp", split=2)


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


@jax.custom_vjp
def layer_norm_vjp(x, w):
    """`layer_norm` with a hand-written backward (keeps the normalised input and 1/std)."""
    return layer_norm(x, w)


def _layer_norm_fwd(x, w, eps: float = 1e-5):
    x32 = x.astype(jnp.float32)
    xc = x32 - x32.mean(-1, keepdims=True)
    rstd = jax.lax.rsqrt(jnp.square(xc).mean(-1, keepdims=True) + eps)
    xhat = xc * rstd
    return (xhat * w).astype(x.dtype), (xhat, rstd, w)


def _layer_norm_bwd(res, g):
    xhat, rstd, w = res
    g32 = g.astype(jnp.float32)
    dw = jnp.sum(g32 * xhat, axis=tuple(range(g.ndim - 1)))
    gx = g32 * w
    dx = rstd * (gx - gx.mean(-1, keepdims=True) - xhat * (gx * xhat).mean(-1, keepdims=True))
    return dx.astype(g.dtype), dw.astype(w.dtype)


layer_norm_vjp.defvjp(_layer_norm_fwd, _layer_norm_bwd)

_SQRT_HALF = 1 / math.sqrt(2)


@jax.custom_vjp
def gelu_erf(x):
    """Exact GELU x * Phi(x) through lax.erf (jax.nn.gelu's exact form goes through erfc, whose
    XLA expansion has two polynomials and four selects, recomputed in the backward); derivative
    Phi(x) + x * phi(x)."""
    return x * (0.5 + 0.5 * jax.lax.erf(x * _SQRT_HALF))


def _gelu_erf_bwd(x, g):
    cdf = 0.5 + 0.5 * jax.lax.erf(x * _SQRT_HALF)
    pdf = jnp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return (g * (cdf + x * pdf).astype(g.dtype),)


gelu_erf.defvjp(lambda x: (gelu_erf(x), x), _gelu_erf_bwd)


def gelu(x, form: str):
    if form == "erf-vjp":
        return gelu_erf(x)
    return jax.nn.gelu(x, approximate=form == "tanh")


@jax.custom_vjp
def linear_xt(x, w):
    """x [..., C] @ w [C, N], its forward keeping x.T [C, tokens] for the weight gradient
    dW = x.T @ g. By autodiff, XLA:CPU (jax 0.10) transposes the incoming gradient g instead, in a
    loop fusion that also recomputes the whole chain of residual-stream gradient sums feeding it,
    read in transposed order: about half of the baseline's step time on a 2-core CPU."""
    return x @ w


def _linear_xt_fwd(x, w):
    return x @ w, (x.reshape(-1, x.shape[-1]).T, w)


def _linear_xt_bwd(res, g):
    xt, w = res
    return (g @ w.T).astype(g.dtype), (xt @ g.reshape(-1, g.shape[-1])).astype(w.dtype)


linear_xt.defvjp(_linear_xt_fwd, _linear_xt_bwd)


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


ATTENTION = {"dpa": attention_dpa, "softmax": attention_softmax,
             "dpa-xla": lambda q, k, v: attention_dpa(q, k, v, implementation="xla")}


def block_fwd(x, blk, cfg: GPTConfig, opt: Options):
    B, T, C = x.shape
    H = cfg.heads
    dt = jnp.dtype(opt.dtype)
    w = lambda name: blk[name].astype(dt)
    mm = linear_xt if opt.linear == "xt" else jnp.matmul
    ln = layer_norm_vjp if opt.layer_norm == "vjp" else layer_norm
    h = ln(x, blk["ln1"])
    if opt.qkv == "separate":
        q, k, v = (mm(h, wi) for wi in jnp.split(w("attn"), 3, axis=-1))
    else:
        q, k, v = jnp.split(mm(h, w("attn")), 3, axis=-1)                # [B, T, C] each
    q, k, v = (a.reshape(B, T, H, C // H) for a in (q, k, v))
    y = ATTENTION[opt.attention](q, k, v).reshape(B, T, C)
    x = x + mm(y, w("attn_proj"))
    h = gelu(mm(ln(x, blk["ln2"]), w("fc")), opt.gelu)
    return x + mm(h, w("proj"))


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
    x = (layer_norm_vjp if opt.layer_norm == "vjp" else layer_norm)(x, params["ln_f"])
    return jnp.einsum("btc,vc->btv", x, wte, preferred_element_type=jnp.float32)


def loss_fn(params, x, y, cfg: GPTConfig, opt: Options = Options()):
    """Mean next-token cross-entropy of the batch."""
    if opt.split > 1:  # independent programs (XLA may run them side by side)
        parts = [loss_fn(params, xs, ys, cfg, opt._replace(split=1))
                 for xs, ys in zip(jnp.split(x, opt.split), jnp.split(y, opt.split))]
        return sum(parts) / opt.split
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


def handwritten_step(cfg: GPTConfig, tokens, opt: Options = Options(), seed: int = 0):
    """-> (state, step): step(state, t) -> (state, loss), jitted, the state donated."""
    tx = optimizer(cfg)
    params = init_params(cfg, jax.random.key(seed))
    if opt.scan_layers:
        params = {**params, "blocks": jax.tree.map(lambda *a: jnp.stack(a), *params["blocks"])}
    state = (params, tx.init(params))
    key_data = jax.random.key(seed + 1)

    def step(state, t):
        params, opt_state = state
        x, y = cut_batch(tokens, jax.random.fold_in(key_data, t), cfg)
        loss, g = jax.value_and_grad(loss_fn)(params, x, y, cfg, opt)
        updates, opt_state = tx.update(g, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return state, jax.jit(step, donate_argnums=0)


# --- the same model in PyTorch --------------------------------------------------------------------

def torch_gpt(torch, cfg: GPTConfig):
    """nanoGPT's GPT with bias=False, dropout 0, its init (`torch_load_jax` overwrites it)."""
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
    params = list(net.parameters())  # the tied weight once
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


def torch_step(torch, cfg: GPTConfig, tokens: np.ndarray, seed: int = 0, dev: str = "cpu"):
    """-> (net, step): step(t) runs one training step and returns the loss tensor."""
    torch.manual_seed(seed)
    net = torch_gpt(torch, cfg).to(dev)
    opt = torch_optimizer(torch, net, cfg)
    data = torch.from_numpy(tokens.astype(np.int64)).to(dev)
    offsets = torch.arange(cfg.block + 1, device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed + 1)

    def step(t):
        starts = torch.randint(0, len(data) - cfg.block, (cfg.batch,), generator=gen, device=dev)
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
# --config: dlcore's experiment of the same model, and the overrides that make it the hand-written
# model (shakespeare/gpt trains with dropout 0.2; the hand-written GPT has none)
DLCORE_EXPERIMENTS = {"cpu": (DLCORE_EXPERIMENT, ()),
                      "gpu": ("shakespeare/gpt", ("model.dropout=0.0",))}


def synthetic_data(tokens, cfg: GPTConfig):
    """A dlcore `Data` over the token stream, shaped as dlcore.data.text's (dlcore/core.py is the
    contract): sample cuts the same random windows as the hand-written step."""
    from dlcore.core import Data
    try:
        from dlcore.data.text import language_spec, windows
        spec = language_spec(VOCAB65[:cfg.vocab] if cfg.vocab <= 65 else None, cfg.block,
                             "char", "synthetic tokens (benchmarks/gpt_speed.py)")
    except ImportError:  # an older or half-written dlcore: the keys the brief names
        spec = {"task": "language_model", "input_shape": (cfg.block,), "input_dtype": "int32",
                "num_outputs": cfg.vocab, "vocab_size": cfg.vocab, "block_size": cfg.block,
                "token_unit": "char", "prompt_length": 0}
        windows = None
    stream = np.asarray(tokens)
    n_val = 64 * (cfg.block + 1)  # a small held-out tail for the evaluation windows
    train, val = stream[:-n_val], stream[-n_val:]
    splits = {"train": {"tokens": jnp.asarray(train)}, "validation": {}}
    if windows is not None:
        for part, into in ((train, splits["train"]), (val, splits["validation"])):
            into["x"], into["y"] = windows(part, cfg.block, 64)

    def sample(train_split, step, key):
        x, y = cut_batch(train_split["tokens"], jax.random.fold_in(key, step), cfg)
        return {"x": x, "y": y}

    return Data(splits, spec, sample, evaluate_train=False)


def dlcore_step(config_overrides=(), cfg: GPTConfig = CONFIGS["cpu"], tokens=None,
                steps: int = 10 ** 6, seed: int = 0, experiment: str = DLCORE_EXPERIMENT):
    """-> (init_state, step_fn): step_fn(state, t) -> (state, metrics), jitted, state donated.

    config_overrides: `--set`-style strings ('model.width=128', 'optim.schedule=constant', ...)
    applied to the config of `experiment` (`DLCORE_EXPERIMENTS`). Raises (ImportError,
    ConfigError, ...) while dlcore's GPT is not there; the caller reports the contender as not available, with the reason.
    """
    import dlcore.algorithms.lm as lm
    import dlcore.experiment

    config = dlcore.experiment.load(experiment, overrides=list(config_overrides))
    if tokens is None:
        tokens = jax.random.randint(jax.random.key(7), (STREAM,), 0, cfg.vocab, jnp.int32)
    data = synthetic_data(tokens, cfg)  # in place of config["data"]'s corpus
    alg = lm.make(config, data, steps)
    key, key_data = jax.random.split(jax.random.key(seed))
    train = data.splits["train"]
    state = alg.init(jax.random.fold_in(key, 10 ** 6))

    def step(s, t):
        return alg.step(s, data.sample(train, t, key_data), jax.random.fold_in(key, t))

    return state, jax.jit(step, donate_argnums=0)


# --- measurement ----------------------------------------------------------------------------------

def matmul_peak_jax(dtype: str, n: int = 2048, calls: int = 5) -> float:
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


def matmul_peak_torch(torch, dtype: str, dev: str = "cpu", n: int = 2048, calls: int = 5) -> float:
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, dtype=dt, device=dev), torch.randn(n, n, dtype=dt, device=dev)
    for _ in range(2):
        a @ b
    sync()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


class Contender:
    """prepare() once (build, compile, warm up: untimed); run(steps) -> seconds per step.
    peak: the key of the matmul peak its MFU is measured against."""

    def __init__(self, name: str, prepare: Callable[[], Callable[[int], float]], peak: str,
                 missing: str | None = None):
        self.name, self._prepare, self.peak, self.missing = name, prepare, peak, missing
        self.run: Callable[[int], float] | None = None
        self.handle = None  # what prepare made: the run function, or a TorchWorker
        self.prepare_s = float("nan")

    def prepare(self) -> None:
        t0 = time.perf_counter()
        try:
            self.handle = self._prepare()
            self.run = getattr(self.handle, "run", self.handle)
        except Exception as e:  # noqa: BLE001 - reported as "not available (reason)"
            tb = e.__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
            msg = str(e).splitlines()[0] if str(e) else ""
            self.missing = f"{type(e).__name__}: {msg[:160]} [{where}]"
        self.prepare_s = time.perf_counter() - t0


def jax_runner(state, step, compiler_options: dict | None = None,
               warmup: int = 3) -> Callable[[int], float]:
    """Compile (with XLA `compiler_options`, if any) and warm up `step`; return run(steps)."""
    if compiler_options:
        step = step.lower(state, jnp.int32(0)).compile(compiler_options=compiler_options)
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
        counter[0] += steps
        return (time.perf_counter() - t0) / steps

    return run


def _torch_worker(conn, cfg: GPTConfig, threads: int, dev: str) -> None:
    """The child process of a `TorchWorker`: answers ('init', tokens), ('run', steps) -> seconds
    per step, ('peak', dtype) -> FLOP/s, ('stop',)."""
    try:
        import torch
        torch.set_num_threads(threads)
        if dev == "cuda" and not torch.cuda.is_available():
            dev = "cpu"
    except ImportError as e:
        conn.send(("error", f"ImportError: {e}"))
        return
    step = None
    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "stop":
                return
            if cmd == "init":
                _, step = torch_step(torch, cfg, args[0], dev=dev)
                for t in range(args[1]):  # warm-up
                    step(t).item()
                conn.send(("ok", dev))
            elif cmd == "run":
                t0 = time.perf_counter()
                for t in range(args[0]):
                    loss = step(t)
                loss.item()  # waits for the device (CUDA)
                conn.send(("ok", (time.perf_counter() - t0) / args[0]))
            elif cmd == "peak":
                conn.send(("ok", matmul_peak_torch(torch, args[0], dev)))
        except Exception as e:  # noqa: BLE001 - the parent reports it
            conn.send(("error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))


class TorchWorker:
    """PyTorch in a spawned child process. In one process, JAX's thread pool and PyTorch's OpenMP
    threads take the cores from each other: measured on 2 cores, a torch step right after JAX
    steps took 10-50x its time alone (1.5 s instead of 30 ms)."""

    def __init__(self, cfg: GPTConfig, tokens_np: np.ndarray, threads: int, dev: str,
                 warmup: int = 3):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_torch_worker, args=(child, cfg, threads, dev), daemon=True)
        self.proc.start()
        child.close()  # so that recv() raises EOFError if the child dies
        self.dev = self.call("init", tokens_np, warmup)

    def call(self, *msg):
        try:
            self.conn.send(msg)
            status, value = self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise RuntimeError(f"the PyTorch worker process died (exit code "
                               f"{self.proc.exitcode})") from None
        if status == "error":
            raise RuntimeError(value)
        return value

    def run(self, steps: int) -> float:
        return self.call("run", steps)

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send(("stop",))
            self.proc.join(10)


# name: (Options, XLA compiler options); the baseline with one change each, then the tuned step
# with one change each (--variants). All compute the same function but 'GELU tanh'.
YNN_OFF = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INVALID"}
YNN_REDUCE_ONLY = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
VARIANTS = {
    "+ linear keeps x.T": (Options(linear="xt"), None),
    "+ GELU via lax.erf + vjp": (Options(gelu="erf-vjp"), None),
    "+ LayerNorm vjp": (Options(layer_norm="vjp"), None),
    "+ attention einsum softmax": (Options(attention="softmax"), None),
    "+ attention implementation='xla'": (Options(attention="dpa-xla"), None),
    "+ layers as one lax.scan": (Options(scan_layers=True), None),
    "+ XLA dots by Eigen (no YNNPACK)": (Options(), YNN_OFF),
    "tuned, dot_product_attention": (TUNED._replace(attention="dpa"), None),
    "tuned, split 1": (TUNED._replace(split=1), None),
    "tuned, LayerNorm autodiff": (TUNED._replace(layer_norm="plain"), None),
    "tuned, q/k/v separate matmuls": (TUNED._replace(qkv="separate"), None),
    "tuned, embedding one_hot @ wte": (TUNED._replace(embedding="onehot"), None),
    "tuned, XLA dots by Eigen (no YNNPACK)": (TUNED, YNN_OFF),
    "tuned, YNNPACK reductions only": (TUNED, YNN_REDUCE_ONLY),
    "tuned, GELU tanh (other model)": (TUNED._replace(gelu="tanh"), None),
}


def build_contenders(args, cfg: GPTConfig, tokens) -> list[Contender]:
    def jax_contender(name, opt, compiler_options=None):
        return Contender(name, lambda: jax_runner(*handwritten_step(cfg, tokens, opt),
                                                  compiler_options), f"jax {opt.dtype}")

    cs = [jax_contender(BASELINE, Options()), jax_contender("hand-written, tuned", TUNED)]
    if args.dtype == "bfloat16":
        cs += [jax_contender(f"{BASELINE} bf16", Options(dtype="bfloat16")),
               jax_contender("hand-written, tuned bf16", TUNED._replace(dtype="bfloat16"))]
    if args.variants:
        cs += [jax_contender(f"hand-written {name}", opt, copts)
               for name, (opt, copts) in VARIANTS.items()]
    cs.append(Contender("dlcore (lm.make)", lambda: jax_runner(
        *dlcore_step([*DLCORE_EXPERIMENTS[args.config][1], *args.dlcore_set], cfg, tokens,
                     experiment=DLCORE_EXPERIMENTS[args.config][0])), "jax float32"))
    threads = args.torch_threads or cpu_threads()
    dev = "cuda" if jax.default_backend() == "gpu" else "cpu"
    for n in ([threads, 1] if threads > 1 and dev == "cpu" else [threads]):
        name = "pytorch eager" + (", 1 thread" if n == 1 and threads > 1 else "")
        if not torch_installed():
            cs.append(Contender(name, lambda: None, "torch float32", "torch is not installed"))
        else:
            tokens_np = np.asarray(tokens)
            worker = lambda n=n: TorchWorker(cfg, tokens_np, n, dev)
            cs.append(Contender(name, worker, "torch float32"))
    return cs


def torch_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("torch") is not None


# --- checks ---------------------------------------------------------------------------------------

def check_same_function(torch, cfg: GPTConfig, tokens, rtol: float = 1e-4) -> bool:
    """The JAX params copied into the PyTorch model: the same loss on one batch, and after each
    of three optimizer steps on the same batches; the tuned JAX step against the baseline."""
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
    # the tuned program against the baseline, on params moved off their init
    x, y = batches[0]
    ref = jax.jit(jax.value_and_grad(loss_fn), static_argnums=(3, 4))(params, x, y, cfg, Options())
    for name, opt in (("tuned", TUNED),):
        got = jax.jit(jax.value_and_grad(loss_fn), static_argnums=(3, 4))(params, x, y, cfg, opt)
        rel = abs(float(got[0]) - float(ref[0])) / abs(float(ref[0]))
        grad = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
                   for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(ref[1])))
        good = rel <= rtol and grad <= 1e-4
        ok &= good
        print(f"  jax {name} vs baseline: loss rel diff {rel:.1e}, gradients max rel diff "
              f"{grad:.1e} (per tensor, of its largest entry)  {'ok' if good else 'MISMATCH'}")
    return ok


def loss_check(cfg: GPTConfig, steps: int) -> dict | None:
    if not TEXT.is_file():
        print(f"  skipped: {TEXT} is absent")
        return None
    text = TEXT.read_text()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = np.array([lookup[c] for c in text], np.int32)
    train = jnp.asarray(ids[:int(0.9 * len(ids))])
    cfg = cfg._replace(vocab=len(chars))
    out = {}
    for name, opt in (("float32", Options()), ("bfloat16", Options(dtype="bfloat16")),
                      ("tuned float32", TUNED)):
        state, step = handwritten_step(cfg, train, opt)
        losses = []
        for t in range(steps):
            state, loss = step(state, jnp.int32(t))
            losses.append(loss)
        losses = np.asarray(jax.device_get(losses))
        out[name] = {"first": float(losses[0]), "final": float(losses[-10:].mean())}
        print(f"  {name:14s}: loss at step 0 {losses[0]:.4f}, mean of steps {steps - 9}-{steps} "
              f"{losses[-10:].mean():.4f}")
    return out


# --- main -----------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    p.add_argument("--steps", type=int, default=50, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16: also time the hand-written steps computing in bf16")
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
    tokens = jax.random.randint(jax.random.key(7), (STREAM,), 0, cfg.vocab, jnp.int32)

    if args.check:
        if not torch_installed():
            sys.exit("--check needs PyTorch, which is not installed")
        import torch
        torch.set_num_threads(args.torch_threads or cpu_threads())
        print(f"the hand-written JAX GPT and the PyTorch GPT ({args.config} config), same params "
              "and batches:")
        sys.exit(0 if check_same_function(torch, cfg, tokens) else 1)

    contenders = build_contenders(args, cfg, tokens)
    for c in contenders:
        if c.missing is None:
            log(f"preparing {c.name}")
            c.prepare()
        if c.missing:
            log(f"  {c.name}: not available ({c.missing})")
    live = [c for c in contenders if c.missing is None]
    peak_fns = {"jax float32": lambda: matmul_peak_jax("float32")}
    if args.dtype == "bfloat16" or backend == "gpu":
        peak_fns["jax bfloat16"] = lambda: matmul_peak_jax("bfloat16")
    workers = [c.handle for c in live if isinstance(c.handle, TorchWorker)]
    if workers:  # PyTorch's peaks in its own process, with all its threads (the first worker)
        peak_fns["torch float32"] = lambda: workers[0].call("peak", "float32")
        peak_fns["torch bfloat16"] = lambda: workers[0].call("peak", "bfloat16")
    times: dict[str, list[float]] = {c.name: [] for c in live}
    peak_runs: dict[str, list[float]] = {k: [] for k in peak_fns}
    for r in range(args.repeats):
        for k, f in peak_fns.items():
            peak_runs[k].append(f())
        for c in live:
            s = c.run(args.steps)
            times[c.name].append(s)
            log(f"  repeat {r + 1}/{args.repeats} {c.name}: {s * 1e3:.2f} ms/step")
    for w in workers:
        w.close()
    peaks = {k: statistics.median(v) for k, v in peak_runs.items()}

    tokens_per_step = cfg.batch * cfg.block
    fpt = flops_per_token(cfg)
    base = statistics.median(times[BASELINE]) if BASELINE in times else float("nan")
    rows = []
    for c in contenders:
        if c.missing:
            rows.append({"contender": c.name, "available": False, "reason": c.missing})
            continue
        s = statistics.median(times[c.name])
        achieved = fpt * tokens_per_step / s
        row = {"contender": c.name, "available": True, "ms_per_step": s * 1e3,
               "ms_per_step_repeats": [t * 1e3 for t in times[c.name]],
               "tokens_per_s": tokens_per_step / s, "ratio": s / base,
               "achieved_gflops": achieved / 1e9, "peak": c.peak,
               "mfu": achieved / peaks[c.peak], "prepare_s": c.prepare_s}
        if c.peak.startswith("torch"):
            row["mfu_vs_jax_float32_peak"] = achieved / peaks["jax float32"]
        rows.append(row)

    torch_version = None
    if torch_installed():
        from importlib.metadata import version
        torch_version = version("torch")
    threads = (f", torch {torch_version} ({args.torch_threads or cpu_threads()} threads, in a "
               "child process)" if torch_version else "")
    print(f"\nnanoGPT shakespeare_char '{args.config}' config: {cfg.layers} layers, {cfg.heads} "
          f"heads, width {cfg.width}, block {cfg.block}, batch {cfg.batch}; {args.steps} steps x "
          f"{args.repeats} repeats (medians), {backend} backend, {cpu_threads()} cores, "
          f"jax {jax.__version__}{threads}")
    print(f"N = {param_count(cfg):,} params (nanoGPT's get_num_params: without wpe; "
          f"{param_count(cfg, False):,} in all); flops/token = 6N + 12LHQT = {fpt:,}; "
          f"{tokens_per_step} tokens/step = {fpt * tokens_per_step / 1e9:.3f} GFLOP/step")
    print("matmul peaks (2048^3, median over repeats): " + ", ".join(
        f"{k} {v / 1e9:.0f} GFLOP/s ({min(peak_runs[k]) / 1e9:.0f}-{max(peak_runs[k]) / 1e9:.0f})"
        for k, v in peaks.items()))
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
        print(f"\nloss check: {args.loss_check} steps of the hand-written model on tiny "
              f"Shakespeare (characters; uniform = ln 65 = {math.log(65):.2f} nats)")
        losses = loss_check(cfg, args.loss_check)

    if args.json:
        out = {"config": args.config, "model": cfg._asdict(), "steps": args.steps,
               "repeats": args.repeats, "backend": backend, "jax": jax.__version__,
               "torch": torch_version,
               "torch_threads": args.torch_threads or cpu_threads(),
               "machine": platform.processor() or platform.machine(), "cores": cpu_threads(),
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
               "xla_flags": os.environ.get("XLA_FLAGS", ""), "tuned": TUNED._asdict(),
               "params": param_count(cfg), "params_all": param_count(cfg, False),
               "flops_per_token": fpt, "tokens_per_step": tokens_per_step,
               "peaks_flops": peaks, "peaks_flops_repeats": peak_runs, "contenders": rows,
               "loss_check": losses}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
