#!/usr/bin/env python3
"""Reference attributions (captum 0.9 / torch 2.13) for kneuron's attribution engine.

LOADS the committed large-weight tiny classifier Tests/AttributionTests/Fixtures/tiny-ig-model
(written by make_attribution_fixtures.py; 2 layers, H=32, 4 heads, I=64, C=7 classes, rotary,
token dropout, the HF `<cls>` EsmClassificationHead) with attn_implementation="eager", float32,
eval mode, no parameter gradients, and the token lists of tiny-ig-reference.json. It neither
regenerates nor modifies the model or the existing fixtures. Writes

  Tests/AttributionTests/Fixtures/engine-reference.safetensors   (tensors below)
  Tests/AttributionTests/Fixtures/engine-reference.json          (inputs and scalars)

Modules m (names used in the keys, in this order), inside model.esm.encoder.layer[l]:
  query            attention.self.query          Linear output (B,T,H), before the head_dim**-0.5
                                                 scaling and before rotary
  key              attention.self.key            Linear output (B,T,H), before rotary
  value            attention.self.value          Linear output (B,T,H)
  attention_output attention.output.dense        Linear output (B,T,H), before dropout/residual
  intermediate     intermediate                  EsmIntermediate output gelu(dense(x)) (B,T,I),
                                                 Dai et al.'s FFN neuron, AFTER GELU
  output           output.dense                  Linear output (B,T,H), before dropout/residual
OUT = the module's output width (H, or I for intermediate). Weights of m: the `.weight` of
query/key/value/attention_output/output (for intermediate: intermediate.dense.weight (I,H);
output.dense.weight is (H,I)), PyTorch (out, in) layout, shape (OUT_W, IN_W).

Sequences k in {0, 1}: runs[k].tokens of tiny-ig-reference.json (unpadded, attention_mask all
ones). Targets t in {0, 1}: t=0 -> runs[k].target, t=1 -> (runs[k].target + 3) % 7.
F = softmax(logits)[0, target]. IG: zero baseline, captum IntegratedGradients,
method="riemann_middle", n_steps=16, return_convergence_delta=True.

Tensors (all F32 unless stated; k = sequence, t = target index, l = layer, m = module):
  neuron_ig.{k}.{t}.{l}.{m}     (T, OUT) IG over module m's OUTPUT activation of layer l: one
                                IG run per (l, m); a forward hook REPLACES that module's output
                                by alpha * a (a captured once from the unmodified model) at
                                every position, everything else unchanged (the hook form of
                                make_attribution_fixtures.py's ffn_integrated_gradients;
                                the 16 steps are one batch of ids expanded).
  weight_ig_all.{k}.{t}.{l}.{m} (OUT_W, IN_W) ONE IG run per (k, t) over all six weight
                                matrices of all layers at once (12 inputs, baseline all of them
                                zero, biases and every other parameter unchanged;
                                torch.func.functional_call, one call per step).
  gxa_neuron.{k}.{t}.{l}.{m}    (T, OUT) gradient x activation a * dF/da at the unmodified
                                model (one forward + one backward: every hooked output is
                                a + z with a zero leaf z, dF/da = dF/dz, graph not cut).
  gxa_weight.{k}.{t}.{l}.{m}    (OUT_W, IN_W) W * dF/dW at the unmodified model.
  activation_neuron.{l}.{m}     (OUT,) F64: for the padded 4-sequence batch of
                                tiny-ig-reference.json (activation.input_ids / attention_mask,
                                one forward with that mask), sum over the sequences of the mean
                                over the sequence's real positions (t < len) of |a_t|, from
                                forward-hook values, in float64.

The JSON holds notes, steps, the module order, module -> HF path and weight-path tables, per
sequence the tokens, the two targets, the scalars {p_full, p_baseline, sum, convergence_delta}
of every neuron IG run (sequences[k].neuron_ig[t][l][m]) and of every all-weights IG run
(sequences[k].weight_ig_all[t]), F at the unmodified model (sequences[k].p[t]) and the
activation batch. `sum` is the float64 sum of the attribution tensor(s); captum's
convergence_delta = sum(attr) - (F(input) - F(baseline)).

Deterministic (byte-identical outputs across runs on one machine):

  /work/refvenv/bin/python scripts/reference/make_engine_fixtures.py
"""

import hashlib
import json
import os
import sys

import captum
import numpy as np
import safetensors
import torch
import transformers
from captum.attr import IntegratedGradients
from safetensors.torch import load_file, save_file
from torch.func import functional_call
from transformers import EsmForSequenceClassification

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_attribution_fixtures  # noqa: E402  (captum IG over weight matrices)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "Tests", "AttributionTests", "Fixtures")
MODEL = os.path.join(FIXTURES, "tiny-ig-model")
IG_JSON = os.path.join(FIXTURES, "tiny-ig-reference.json")
IG_ST = os.path.join(FIXTURES, "tiny-ig-reference.safetensors")
OUT_ST = os.path.join(FIXTURES, "engine-reference.safetensors")
OUT_JSON = os.path.join(FIXTURES, "engine-reference.json")
STEPS = 16
TARGET_SHIFT = 3

MODULES = ("query", "key", "value", "attention_output", "intermediate", "output")
MODULE_PATHS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "intermediate": "intermediate",
    "output": "output.dense",
}
WEIGHT_PATHS = {
    "query": "attention.self.query.weight",
    "key": "attention.self.key.weight",
    "value": "attention.self.value.weight",
    "attention_output": "attention.output.dense.weight",
    "intermediate": "intermediate.dense.weight",
    "output": "output.dense.weight",
}


def load_model():
    model = EsmForSequenceClassification.from_pretrained(MODEL, attn_implementation="eager")
    model.to(torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def submodule(model, layer, m):
    return model.esm.encoder.layer[layer].get_submodule(MODULE_PATHS[m])


def weight_name(layer, m):
    return f"esm.encoder.layer.{layer}.{WEIGHT_PATHS[m]}"


def capture_outputs(model, input_ids, attention_mask):
    """Forward-hook values of every (layer, module) output for one forward."""
    seen, handles = {}, []
    for l in range(model.config.num_hidden_layers):
        for m in MODULES:
            handles.append(submodule(model, l, m).register_forward_hook(
                lambda mod, i, o, key=(l, m): seen.__setitem__(key, o.detach().clone())))
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask)
    finally:
        for h in handles:
            h.remove()
    return seen


def neuron_integrated_gradients(model, ids, layer, m, target, act):
    """captum IG over module m's output (1,T,OUT) of `layer`, injected by a replacing hook."""
    module = submodule(model, layer, m)

    def forward(scaled):  # (S, T, OUT)
        S = scaled.shape[0]
        handle = module.register_forward_hook(lambda mod, i, o: scaled)
        try:
            logits = model(input_ids=ids.expand(S, -1),
                           attention_mask=torch.ones_like(ids).expand(S, -1)).logits
        finally:
            handle.remove()
        return torch.softmax(logits, dim=-1)[:, target]

    baseline = torch.zeros_like(act)
    attr, delta = IntegratedGradients(forward).attribute(
        act, baselines=baseline, n_steps=STEPS, method="riemann_middle",
        return_convergence_delta=True)
    with torch.no_grad():
        p_full = forward(act)[0].item()
        p_base = forward(baseline)[0].item()
    return attr[0].contiguous(), p_full, p_base, delta.item()


def weight_integrated_gradients(model, ids, target):
    """captum IG over all 6 weight matrices of all layers at once (zero baseline)."""
    L = model.config.num_hidden_layers
    keys = [(l, m) for l in range(L) for m in MODULES]
    attr, p_full, p_base, delta = make_attribution_fixtures.weights_integrated_gradients(
        model, ids, target, STEPS, [weight_name(l, m) for l, m in keys])
    return dict(zip(keys, attr)), p_full, p_base, delta


def gxa_neurons(model, ids, target):
    """a * dF/da for every (layer, module) output: one forward, one backward."""
    zs, handles = {}, []

    def hook(mod, i, o, key):
        z = torch.zeros_like(o, requires_grad=True)
        zs[key] = (o.detach().clone(), z)
        return o + z

    for l in range(model.config.num_hidden_layers):
        for m in MODULES:
            handles.append(submodule(model, l, m).register_forward_hook(
                lambda mod, i, o, key=(l, m): hook(mod, i, o, key)))
    try:
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    finally:
        for h in handles:
            h.remove()
    F = torch.softmax(logits, dim=-1)[0, target]
    keys = list(zs)
    grads = torch.autograd.grad(F, [zs[k][1] for k in keys])
    return {k: (zs[k][0] * g)[0].contiguous() for k, g in zip(keys, grads)}, F.item()


def gxa_weights(model, ids, target):
    """W * dF/dW for every weight matrix at the unmodified model (functional_call)."""
    L = model.config.num_hidden_layers
    keys = [(l, m) for l in range(L) for m in MODULES]
    params = dict(model.named_parameters())
    ws = {k: params[weight_name(*k)].detach().clone().requires_grad_(True) for k in keys}
    logits = functional_call(model, {weight_name(*k): ws[k] for k in keys}, args=(),
                             kwargs={"input_ids": ids, "attention_mask": torch.ones_like(ids)}).logits
    F = torch.softmax(logits, dim=-1)[0, target]
    grads = torch.autograd.grad(F, [ws[k] for k in keys])
    return {k: (ws[k].detach() * g).contiguous() for k, g in zip(keys, grads)}, F.item()


def activation_neurons(model, input_ids, attention_mask):
    """sum_s mean_{t < len_s} |a_st| (float64) of every (layer, module) output."""
    seen = capture_outputs(model, input_ids, attention_mask)
    lengths = attention_mask.sum(dim=1).tolist()
    out = {}
    for key, a in seen.items():
        acc = torch.zeros(a.shape[-1], dtype=torch.float64)
        for s, n in enumerate(lengths):
            acc += a[s, :n].to(torch.float64).abs().mean(dim=0)
        out[key] = acc
    return out


def scalars(attr_sum, p_full, p_base, delta):
    return {"p_full": p_full, "p_baseline": p_base, "sum": attr_sum, "convergence_delta": delta}


def main():
    torch.use_deterministic_algorithms(True)
    model = load_model()
    L, C = model.config.num_hidden_layers, model.config.num_labels
    with open(IG_JSON) as f:
        ig_meta = json.load(f)
    ig_ref = load_file(IG_ST)

    tensors, sequences = {}, []
    ffn_check_max = 0.0
    gaps = []
    for k, run in enumerate(ig_meta["runs"]):
        ids = torch.tensor([run["tokens"]])
        targets = [run["target"], (run["target"] + TARGET_SHIFT) % C]
        acts = capture_outputs(model, ids, torch.ones_like(ids))
        seq = {"tokens": run["tokens"], "targets": targets, "p": [],
               "neuron_ig": [], "weight_ig_all": []}
        for t, target in enumerate(targets):
            per_layer = []
            for l in range(L):
                per_module = {}
                for m in MODULES:
                    attr, p_full, p_base, delta = neuron_integrated_gradients(
                        model, ids, l, m, target, acts[(l, m)])
                    tensors[f"neuron_ig.{k}.{t}.{l}.{m}"] = attr
                    s = float(attr.double().sum())
                    per_module[m] = scalars(s, p_full, p_base, delta)
                    gap = abs(s - (p_full - p_base))
                    gaps.append(gap)
                    print(f"neuron_ig k={k} t={t} (target {target}) l={l} {m:16s} sum {s:+.6f} "
                          f"P {p_full:.6f}-{p_base:.6f}={p_full - p_base:+.6f} delta {delta:+.2e} "
                          f"gap {gap:.2e} max|attr| {attr.abs().max().item():.3e}")
                    if t == 0 and m == "intermediate":
                        ref = ig_ref[f"ffn_ig.{k}.{l}"]
                        diff = (attr - ref).abs().max().item()
                        ffn_check_max = max(ffn_check_max, diff)
                        print(f"  CHECK neuron_ig.{k}.0.{l}.intermediate vs ffn_ig.{k}.{l}: "
                              f"max|diff| {diff:.3e} shapes {tuple(attr.shape)}/{tuple(ref.shape)} "
                              f"{'OK' if diff <= 1e-6 else 'MISMATCH'}")
                per_layer.append(per_module)
            seq["neuron_ig"].append(per_layer)

            wattr, p_full, p_base, delta = weight_integrated_gradients(model, ids, target)
            for (l, m), a in wattr.items():
                tensors[f"weight_ig_all.{k}.{t}.{l}.{m}"] = a
            s = float(sum(a.double().sum() for a in wattr.values()))
            seq["weight_ig_all"].append(scalars(s, p_full, p_base, delta))
            wmax = max(a.abs().max().item() for a in wattr.values())
            print(f"weight_ig_all k={k} t={t} (target {target}) sum {s:+.6f} "
                  f"P {p_full:.6f}-{p_base:.6f}={p_full - p_base:+.6f} delta {delta:+.2e} "
                  f"gap {abs(s - (p_full - p_base)):.2e} max|attr| {wmax:.3e}")

            gn, p_n = gxa_neurons(model, ids, target)
            gw, p_w = gxa_weights(model, ids, target)
            assert abs(p_n - p_w) < 1e-6, (p_n, p_w)
            for (l, m), a in gn.items():
                tensors[f"gxa_neuron.{k}.{t}.{l}.{m}"] = a
            for (l, m), a in gw.items():
                tensors[f"gxa_weight.{k}.{t}.{l}.{m}"] = a
            seq["p"].append(p_n)
            print(f"gxa k={k} t={t} F {p_n:.6f} neuron max|gxa| "
                  f"{max(a.abs().max().item() for a in gn.values()):.3e} weight max|gxa| "
                  f"{max(a.abs().max().item() for a in gw.values()):.3e}")
        sequences.append(seq)

    act = ig_meta["activation"]
    input_ids = torch.tensor(act["input_ids"])
    attention_mask = torch.tensor(act["attention_mask"])
    for (l, m), v in activation_neurons(model, input_ids, attention_mask).items():
        tensors[f"activation_neuron.{l}.{m}"] = v

    print(f"CHECK ffn_ig equality (intermediate neuron_ig t=0 vs tiny-ig-reference ffn_ig): "
          f"max|diff| {ffn_check_max:.3e} {'OK' if ffn_check_max <= 1e-6 else 'MISMATCH'}")
    print(f"neuron_ig completeness gap |sum - (p_full - p_baseline)|: max {max(gaps):.3e} "
          f"mean {float(np.mean(gaps)):.3e} over {len(gaps)} runs")

    save_file({key: tensors[key].contiguous() for key in sorted(tensors)}, OUT_ST,
              metadata={"source": "scripts/reference/make_engine_fixtures.py"})
    meta = {
        "notes": ("Generated by scripts/reference/make_engine_fixtures.py with torch " + torch.__version__
                  + ", transformers " + transformers.__version__ + ", captum " + captum.__version__
                  + ", safetensors " + safetensors.__version__ + " from the model in tiny-ig-model/ "
                  "(eager attention, float32, eval) and the tokens of tiny-ig-reference.json. "
                  "F = softmax(logits)[0, target]; targets[t]: t=0 runs[k].target, t=1 (target+3)%7. "
                  "IG: zero baseline, captum IntegratedGradients riemann_middle. "
                  "neuron_ig.{k}.{t}.{l}.{m} (T,OUT): IG over module m's output of layer l (hook "
                  "replaces it by alpha*a); weight_ig_all.{k}.{t}.{l}.{m} (OUT,IN): one IG over all "
                  "12 weight matrices at once; gxa_neuron (T,OUT) a*dF/da; gxa_weight (OUT,IN) "
                  "W*dF/dW; activation_neuron.{l}.{m} (OUT,) F64 sum over the padded batch of the "
                  "mean |a| over real positions. sum = float64 sum of the attributions; "
                  "convergence_delta = captum's sum(attr) - (F(input) - F(baseline)); p[t] = F at "
                  "the unmodified model."),
        "steps": STEPS,
        "layers": L,
        "classes": C,
        "modules": list(MODULES),
        "module_paths": MODULE_PATHS,
        "weight_paths": WEIGHT_PATHS,
        "sequences": sequences,
        "activation": {"input_ids": act["input_ids"], "attention_mask": act["attention_mask"]},
    }
    with open(OUT_JSON, "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    for path in (OUT_ST, OUT_JSON):
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        print(f"  {os.path.relpath(path, ROOT):60s} {os.path.getsize(path):8d} bytes  sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
