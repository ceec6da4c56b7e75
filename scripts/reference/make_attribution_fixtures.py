#!/usr/bin/env python3
"""Reference attributions (captum 0.9 / torch 2.13) for kneuron's Attribution module.

Builds a tiny random-weight ESM-2 classifier with the architecture of make_fixtures.py (same
explicit EsmConfig) but LARGE weights (every Linear weight ~ N(0, 0.25^2), biases 0.1*N(0,1),
embeddings N(0, 0.5^2), LayerNorm affine 1 + 0.1*N / 0.1*N; torch.manual_seed(SEED)), so that
P(class) moves a lot between the zero baseline and the model and the attributions are far
from zero (with HF's 0.02 init the whole IG path changes P by ~1e-5). Writes

  Tests/AttributionTests/Fixtures/tiny-ig-model/            config.json + model.safetensors
  Tests/AttributionTests/Fixtures/tiny-ig-reference.safetensors   (F32/F64 tensors below)
  Tests/AttributionTests/Fixtures/tiny-ig-reference.json          (inputs and scalars)

1. Integrated gradients over the query/key/value weights (arXiv 2312.10770 section 3.3):
   captum `IntegratedGradients` whose inputs are the 3L weight matrices themselves, baseline
   all zero, method `riemann_middle`, `steps` points; the forward function puts the
   interpolated weights into the model with `torch.func.functional_call` (biases and every
   other parameter unchanged) and returns P(target) = softmax(logits)[target].
   Tensors `qkv_ig.{i}`: (L, 3, H, H) attributions of sequence i, modules query, key, value,
   rows = output units, columns = input features (PyTorch (out, in) layout).

2. Integrated gradients over the FFN intermediate activations of one layer (Dai et al. 2021,
   arXiv 2104.08696): a = gelu(intermediate.dense(LN_f(x))) of layer l (HF `EsmIntermediate`
   output), scaled by alpha from baseline 0 at every position; captum `IntegratedGradients`
   on a function of the scaled activation, injected with a forward hook that replaces the
   `intermediate` output (captum's `LayerIntegratedGradients` interpolates between the layer
   outputs of an input and of an input *baseline*, which cannot give a zero activation, so
   the hook form is the equivalent that matches Dai et al.'s definition).
   Tensors `ffn_ig.{i}.{l}`: (T, I) attributions of sequence i, layer l, every position incl.
   `<cls>`/`<eos>`.

3. Activation scores (arXiv 2312.10770 section 3.2): forward pre-hooks on every layer's
   `attention.self.{query,key,value}` capture their input x (B,T,H) for the padded parity
   batch; A_lj = sum_s mean_{t < len_s} |x_stj| in float64 (`activation_sums`, (L, H), F64)
   and score_ij = |W_ij| * A_lj / S (`activation_scores`, (L, 3, H, H), F32).

The JSON holds the token ids, targets, steps, P(full), P(baseline) and captum's convergence
delta of every IG run. Deterministic; run after make_fixtures.py:

  /work/venv/bin/python scripts/reference/make_attribution_fixtures.py

Inputs: the four sequences of make_fixtures.py (5..24 tokens, X B U Z O and one <mask>).
"""

import json
import os
import sys

import captum
import numpy as np
import torch
import transformers
from captum.attr import IntegratedGradients
from safetensors.torch import save_file
from torch.func import functional_call
from transformers import EsmForSequenceClassification

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402  (config, alphabet and sequences of the tiny fixture)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "AttributionTests", "Fixtures")
MODEL = os.path.join(OUT, "tiny-ig-model")
SEED = 20240618
STEPS = 16
MODULES = ("query", "key", "value")


def build_model():
    """The large-weight tiny classifier (module docstring), saved to MODEL and reloaded."""
    torch.manual_seed(SEED)
    model = EsmForSequenceClassification(make_fixtures.make_config()).to(torch.float32)
    make_fixtures.reinitialise(model, qk_std=0.25, linear_std=0.25, embedding_std=0.5)
    os.makedirs(MODEL, exist_ok=True)
    model.save_pretrained(MODEL, safe_serialization=True)
    model = EsmForSequenceClassification.from_pretrained(MODEL, attn_implementation="eager")
    model.to(torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def weights_integrated_gradients(model, ids, target, steps, names):
    """captum IG over the named weight matrices of `model` at once for one sequence ids (1,T):
    inputs = the weights, baseline all of them zero (every other parameter unchanged), path put
    into the model with functional_call. Returns (per-name attributions, P(full), P(baseline), delta)."""
    params = dict(model.named_parameters())
    mask = torch.ones_like(ids)

    def forward(*weights):  # each (S, out, in): one interpolated matrix per step
        probs = []
        for s in range(weights[0].shape[0]):
            logits = functional_call(model, {n: w[s] for n, w in zip(names, weights)},
                                     args=(), kwargs={"input_ids": ids, "attention_mask": mask}).logits
            probs.append(torch.softmax(logits, dim=-1)[0, target])
        return torch.stack(probs)

    inputs = tuple(params[n].detach().clone().unsqueeze(0) for n in names)
    baselines = tuple(torch.zeros_like(x) for x in inputs)
    attr, delta = IntegratedGradients(forward).attribute(
        inputs, baselines=baselines, n_steps=steps, method="riemann_middle",
        return_convergence_delta=True)
    with torch.no_grad():
        p_full = forward(*inputs)[0].item()
        p_base = forward(*baselines)[0].item()
    return [a[0].contiguous() for a in attr], p_full, p_base, delta.item()


def qkv_integrated_gradients(model, ids, target, steps):
    """captum IG over every q/k/v weight of `model` for one sequence ids (1,T)."""
    L = model.config.num_hidden_layers
    names = [f"esm.encoder.layer.{l}.attention.self.{m}.weight" for l in range(L) for m in MODULES]
    attr, p_full, p_base, delta = weights_integrated_gradients(model, ids, target, steps, names)
    H = model.config.hidden_size
    stacked = torch.stack(attr).reshape(L, 3, H, H).contiguous()
    return stacked, p_full, p_base, delta


def ffn_integrated_gradients(model, ids, layer, target, steps):
    """captum IG over layer `layer`'s intermediate activation (1,T,I) for one sequence."""
    module = model.esm.encoder.layer[layer].intermediate
    captured = {}
    h = module.register_forward_hook(lambda m, i, o: captured.__setitem__("act", o.detach().clone()))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    h.remove()
    act = captured["act"]  # (1, T, I)

    def forward(scaled):  # (S, T, I)
        S = scaled.shape[0]
        handle = module.register_forward_hook(lambda m, i, o: scaled)
        try:
            logits = model(input_ids=ids.expand(S, -1), attention_mask=torch.ones_like(ids).expand(S, -1)).logits
        finally:
            handle.remove()
        return torch.softmax(logits, dim=-1)[:, target]

    baseline = torch.zeros_like(act)
    attr, delta = IntegratedGradients(forward).attribute(
        act, baselines=baseline, n_steps=steps, method="riemann_middle", return_convergence_delta=True)
    with torch.no_grad():
        p_full = forward(act)[0].item()
        p_base = forward(baseline)[0].item()
    return attr[0].contiguous(), p_full, p_base, delta.item()


def activation_scores(model, input_ids, attention_mask):
    """Hook values of every q/k/v input for a padded batch -> (sums (L,H) f64, scores (L,3,H,H))."""
    L, H = model.config.num_hidden_layers, model.config.hidden_size
    seen = {}
    handles = []
    for l in range(L):
        for m in MODULES:
            mod = getattr(model.esm.encoder.layer[l].attention.self, m)
            handles.append(mod.register_forward_pre_hook(
                lambda mod_, args, key=(l, m): seen.__setitem__(key, args[0].detach().clone())))
    with torch.no_grad():
        model(input_ids=input_ids, attention_mask=attention_mask)
    for h in handles:
        h.remove()
    lengths = attention_mask.sum(dim=1)
    S = input_ids.shape[0]
    sums = torch.zeros(L, H, dtype=torch.float64)
    for l in range(L):
        x = seen[(l, "query")]
        for m in ("key", "value"):
            assert torch.equal(x, seen[(l, m)]), "query, key and value see the same input"
        for s in range(S):
            n = int(lengths[s])
            sums[l] += x[s, :n].to(torch.float64).abs().mean(dim=0)
    scores = torch.zeros(L, 3, H, H, dtype=torch.float64)
    for l in range(L):
        for k, m in enumerate(MODULES):
            w = getattr(model.esm.encoder.layer[l].attention.self, m).weight.detach().to(torch.float64)
            scores[l, k] = w.abs() * sums[l].unsqueeze(0) / S
    return sums, scores.to(torch.float32)


def main():
    torch.use_deterministic_algorithms(True)
    model = build_model()
    seqs = [make_fixtures.tokenize(s) for s in make_fixtures.SEQUENCES]
    T = max(len(s) for s in seqs)
    pad = make_fixtures.TOKEN["<pad>"]
    input_ids = torch.tensor([s + [pad] * (T - len(s)) for s in seqs])
    attention_mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs])
    lengths = attention_mask.sum(dim=1).tolist()
    parity = {"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist(),
              "labels": make_fixtures.LABELS}

    # Two IG sequences: the 11-token one and the 17-token one with a <mask> (token dropout).
    picks = [1, 2]
    targets = [parity["labels"][i] for i in picks]
    tensors, runs = {}, []
    for k, (row, target) in enumerate(zip(picks, targets)):
        ids = input_ids[row, :lengths[row]].unsqueeze(0)
        qkv, p_full, p_base, delta = qkv_integrated_gradients(model, ids, target, STEPS)
        tensors[f"qkv_ig.{k}"] = qkv
        run = {"tokens": ids[0].tolist(), "target": target,
               "qkv": {"p_full": p_full, "p_baseline": p_base, "convergence_delta": delta,
                       "sum": float(qkv.double().sum())},
               "ffn": []}
        for layer in range(model.config.num_hidden_layers):
            ffn, fp, fb, fd = ffn_integrated_gradients(model, ids, layer, target, STEPS)
            tensors[f"ffn_ig.{k}.{layer}"] = ffn
            run["ffn"].append({"layer": layer, "p_full": fp, "p_baseline": fb, "convergence_delta": fd,
                               "sum": float(ffn.double().sum())})
        runs.append(run)
        print(f"sequence {k}: P(target {target}) full {p_full:.6f} baseline {p_base:.6f}; "
              f"qkv IG sum {run['qkv']['sum']:.6f} delta {delta:.2e} max|attr| {qkv.abs().max():.3e}; "
              + "; ".join(f"ffn[{f['layer']}] sum {f['sum']:.6f} delta {f['convergence_delta']:.2e}"
                          for f in run["ffn"]))

    sums, scores = activation_scores(model, input_ids, attention_mask)
    tensors["activation_sums"] = sums
    tensors["activation_scores"] = scores

    os.makedirs(OUT, exist_ok=True)
    st_path = os.path.join(OUT, "tiny-ig-reference.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, st_path,
              metadata={"source": "scripts/reference/make_attribution_fixtures.py"})
    meta = {
        "notes": ("Generated by scripts/reference/make_attribution_fixtures.py with torch " + torch.__version__
                  + ", transformers " + transformers.__version__ + ", captum " + captum.__version__
                  + " from the model in tiny-ig-model/. IG: zero baseline, riemann_middle, target = "
                  "P(target class). qkv_ig.{i}: (L,3,H,H); ffn_ig.{i}.{layer}: (T,I); activation_sums: "
                  "(L,H) sum over sequences of mean |q/k/v input| over real tokens; activation_scores: "
                  "(L,3,H,H) |W| * sums / S for the padded parity batch."),
        "steps": STEPS,
        "runs": runs,
        "activation": {"input_ids": parity["input_ids"], "attention_mask": parity["attention_mask"],
                       "sequences": len(parity["input_ids"])},
    }
    with open(os.path.join(OUT, "tiny-ig-reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    for root, _, files in os.walk(OUT):
        for fn in sorted(files):
            path = os.path.join(root, fn)
            print(f"  {os.path.relpath(path, OUT):40s} {os.path.getsize(path):8d} bytes")


if __name__ == "__main__":
    sys.exit(main())
