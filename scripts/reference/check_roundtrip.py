#!/usr/bin/env python3
"""Proves that a checkpoint written by kneuron's Swift `Checkpoint.save` loads in transformers.

Steps:
  1. runs `swift test --filter CheckpointTests/testSaveThenLoadIsExact` with
     KNEURON_ROUNDTRIP_DIR set, so the Swift test loads the tiny-esm fixture and saves it
     there (skip this with `--dir DIR` to check a directory saved some other way);
  2. loads DIR with `EsmForSequenceClassification.from_pretrained` and checks: no missing
     (except the recomputed rotary inv_freq buffer and the unused contact head),
     unexpected or mismatched keys; every parameter bit-identical to the fixture model;
     config fields (labels, eps, rotary, token dropout); logits on the parity batch equal
     to parity.json.

Run from the repository root:
  /work/venv/bin/python scripts/reference/check_roundtrip.py
Exit status 0 and "ROUND TRIP OK" on success.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import EsmForSequenceClassification

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE = os.path.join(ROOT, "Tests", "ESMTests", "Fixtures", "tiny-esm")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="a directory already saved by Checkpoint.save (skips the swift run)")
    args = ap.parse_args()

    tmp = None
    out_dir = args.dir
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="kneuron-roundtrip-")
        out_dir = os.path.join(tmp.name, "saved")
        env = dict(os.environ, KNEURON_ROUNDTRIP_DIR=out_dir)
        cmd = ["swift", "test", "--filter", "CheckpointTests/testSaveThenLoadIsExact"]
        print("running:", " ".join(cmd), "with KNEURON_ROUNDTRIP_DIR=" + out_dir, flush=True)
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout[-4000:], r.stderr[-4000:])
            sys.exit("swift test failed")

    print("saved by Swift:", sorted(os.listdir(out_dir)))
    saved, info = EsmForSequenceClassification.from_pretrained(
        out_dir, output_loading_info=True, attn_implementation="eager")
    reference = EsmForSequenceClassification.from_pretrained(FIXTURE, attn_implementation="eager")
    saved.eval()
    reference.eval()
    print("loading info:", {k: v for k, v in info.items()})
    # Allowed to be missing: the rotary inv_freq buffer (transformers recomputes it from the
    # config, kneuron never stores it) and the contact head (not used for classification;
    # transformers initialises it). Everything else must load.
    def allowed(key):
        return key == "esm.rotary_embeddings.inv_freq" or key.startswith("esm.contact_head.")
    problems = []
    for kind, keys in info.items():
        bad = sorted(str(k) for k in keys if not (kind == "missing_keys" and allowed(k)))
        if bad:
            problems.append(f"{kind}: {bad}")

    ref_params = dict(reference.named_parameters())
    for name, p in saved.named_parameters():
        if name.startswith("esm.contact_head."):
            continue
        if not torch.equal(p, ref_params[name]):
            problems.append(f"parameter {name} differs (max {(p - ref_params[name]).abs().max().item()})")

    c = saved.config
    expect = {"num_labels": 7, "layer_norm_eps": 1e-5, "position_embedding_type": "rotary", "token_dropout": True,
              "emb_layer_norm_before": False, "hidden_act": "gelu", "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 64, "mask_token_id": 32, "pad_token_id": 1}
    for k, v in expect.items():
        if getattr(c, k) != v:
            problems.append(f"config {k} = {getattr(c, k)!r}, expected {v!r}")
    if c.id2label.get(6) != "Translocases" or c.label2id.get("Ligases") != 5:
        problems.append(f"labels wrong: {c.id2label} {c.label2id}")

    parity = json.load(open(os.path.join(FIXTURE, "parity.json")))
    with torch.no_grad():
        logits = saved(input_ids=torch.tensor(parity["input_ids"]),
                       attention_mask=torch.tensor(parity["attention_mask"])).logits
    diff = (logits - torch.tensor(parity["logits"])).abs().max().item()
    print(f"max |logits - parity.json| = {diff:.3g}")
    if diff > 1e-6:
        problems.append(f"logits differ by {diff}")

    if problems:
        print("ROUND TRIP FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("ROUND TRIP OK")


if __name__ == "__main__":
    main()
