#!/usr/bin/env python3
"""PyTorch side of bench/compare-torch.sh: the workloads of `kneuron bench` in torch.

ESM-2 t6_8M shape (6 layers, hidden 320, 20 heads, FFN 1280), random weights, float32,
7 labels, HF EsmForSequenceClassification with the default (sdpa) attention,
torch.set_num_threads(2):
  forward  logits of a batch of 8 x 256 tokens under torch.inference_mode()
  train    forward + mean cross-entropy + backward for all parameters, same batch
  ig       integrated gradients of P(class 0) w.r.t. every q/k/v weight of one sequence of
           256 tokens, 20 midpoint steps: for each alpha the q/k/v weights are set to alpha*W
           and one forward/backward is run (the per-step loop a PyTorch user would write;
           per-row weight scaling cannot be batched with nn.Linear)
Prints one JSON line per workload: median_ms, min_ms, peak_rss_mb (ru_maxrss).
"""
import argparse
import json
import resource
import statistics
import time

import torch
from transformers import EsmConfig, EsmForSequenceClassification


def model():
    torch.manual_seed(1)
    cfg = EsmConfig(vocab_size=33, hidden_size=320, num_hidden_layers=6, num_attention_heads=20,
                    intermediate_size=1280, max_position_embeddings=1026, position_embedding_type="rotary",
                    token_dropout=True, emb_layer_norm_before=False, layer_norm_eps=1e-5,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=7,
                    pad_token_id=1, mask_token_id=32, hidden_act="gelu")
    m = EsmForSequenceClassification(cfg).to(torch.float32)
    m.eval()
    return m


def tokens(batch, length):
    g = torch.Generator().manual_seed(7)
    body = torch.randint(4, 24, (batch, length - 2), generator=g)
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), body, torch.full((batch, 1), 2)], dim=1)


def workload(name, m):
    if name == "forward":
        ids = tokens(8, 256)
        def once():
            with torch.inference_mode():
                m(input_ids=ids).logits
        return once
    if name == "train":
        ids = tokens(8, 256)
        labels = torch.arange(8) % 7
        def once():
            m.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(input_ids=ids).logits, labels).backward()
        return once
    if name == "ig":
        ids = tokens(1, 256)
        linears = [l for layer in m.esm.encoder.layer
                   for l in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value)]
        originals = [l.weight.detach().clone() for l in linears]
        steps = 20
        def once():
            totals = [torch.zeros_like(w) for w in originals]
            for k in range(steps):
                alpha = (k + 0.5) / steps
                with torch.no_grad():
                    for l, w in zip(linears, originals):
                        l.weight.copy_(alpha * w)
                m.zero_grad(set_to_none=True)
                p = torch.softmax(m(input_ids=ids).logits, dim=-1)[0, 0]
                p.backward()
                for t, l in zip(totals, linears):
                    t += l.weight.grad
            with torch.no_grad():
                for l, w in zip(linears, originals):
                    l.weight.copy_(w)
            return [w * t / steps for w, t in zip(originals, totals)]
        return once
    raise SystemExit(f"unknown workload {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="all", choices=["all", "forward", "train", "ig"])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(2)
    m = model()
    for name in (["forward", "train", "ig"] if args.workload == "all" else [args.workload]):
        once = workload(name, m)
        once()
        times = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            once()
            times.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps({"workload": name, "median_ms": statistics.median(times), "min_ms": min(times),
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "repeats": len(times), "torch": torch.__version__, "threads": torch.get_num_threads()},
                         sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
