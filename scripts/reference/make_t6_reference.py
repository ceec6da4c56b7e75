#!/usr/bin/env python3
"""t6_8M-shaped parity reference (too big to commit; `.ci/run` generates it in CI).

Usage: make_t6_reference.py OUTDIR

Builds a random-weight ESM-2 classifier with the shape of esm2_t6_8M_UR50D (REFERENCE.md
section 2: 6 layers, hidden 320, 20 heads, FFN 1280, 33 tokens, max 1026 positions), every
other EsmConfig field as make_fixtures.make_config (rotary, token dropout, eps 1e-5, exact
GELU, no dropout), 7 labels. Weights (torch.manual_seed(SEED)): Linear weights ~ N(0, 0.02^2)
except attention query/key ~ N(0, 0.05^2) (attention scores of order 1, far from uniform),
Linear biases 0.1*N(0,1), embeddings N(0, 0.02^2), LayerNorm weight 1 + 0.1*N, bias 0.1*N.
float32, eval mode, eager attention. Writes

  OUTDIR/model/                config.json + model.safetensors (save_pretrained, ~31 MB)
  OUTDIR/reference.json        input_ids (B,T) right-padded with <pad>=1, attention_mask (B,T)
  OUTDIR/reference.safetensors F32: logits (B,C); hidden_states.{i} (B,T,H) for i in 0...L
                               exactly HF output_hidden_states (hidden_states.{L} is AFTER
                               emb_layer_norm_after); final_block_output (B,T,H) = last block
                               output BEFORE emb_layer_norm_after

The batch: 5 sequences of 5, 40, 129, 200 and 258 tokens (with <cls>/<eos>), random residues
(seeded) plus the rare letters X B U Z O and two <mask> tokens.
Takes ~10 s on 2 cores; deterministic.
"""

import json
import os
import random
import sys
import time

import torch
import transformers
from safetensors.torch import save_file
from transformers import EsmForSequenceClassification

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402  (explicit config, alphabet, tokenizer)

SEED = 20240619
T6_SHAPE = dict(hidden_size=320, num_hidden_layers=6, num_attention_heads=20, intermediate_size=1280)
RESIDUES = "LAGVSERTIDPKQNFYMHWC"


def sequences():
    rng = random.Random(SEED)
    out = []
    for n in [3, 38, 127, 198, 256]:
        out.append("".join(rng.choice(RESIDUES) for _ in range(n)))
    # Rare letters and <mask> ("#") at fixed places.
    out[1] = out[1][:5] + "XBUZO" + out[1][10:]
    out[3] = out[3][:50] + "#" + out[3][51:150] + "#" + out[3][151:]
    return out


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = os.path.abspath(argv[1])
    start = time.time()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    model = EsmForSequenceClassification(make_fixtures.make_config(**T6_SHAPE)).to(torch.float32)
    model.set_attn_implementation("eager")
    make_fixtures.reinitialise(model, qk_std=0.05, linear_std=0.02, embedding_std=0.02)
    model.eval()

    seqs = [make_fixtures.tokenize(s) for s in sequences()]
    T = max(len(s) for s in seqs)
    pad = make_fixtures.TOKEN["<pad>"]
    input_ids = [s + [pad] * (T - len(s)) for s in seqs]
    attention_mask = [[1] * len(s) + [0] * (T - len(s)) for s in seqs]

    captured = {}
    handle = model.esm.encoder.layer[-1].register_forward_hook(lambda m, i, o: captured.__setitem__(
        "final", (o[0] if isinstance(o, tuple) else o).detach().clone()))
    with torch.no_grad():
        out = model(input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(attention_mask),
                    output_hidden_states=True)
    handle.remove()
    L = model.config.num_hidden_layers
    assert len(out.hidden_states) == L + 1

    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(os.path.join(out_dir, "model"), safe_serialization=True)
    tensors = {"logits": out.logits.contiguous(), "final_block_output": captured["final"].contiguous()}
    for i, h in enumerate(out.hidden_states):
        tensors[f"hidden_states.{i}"] = h.contiguous()
    save_file(tensors, os.path.join(out_dir, "reference.safetensors"),
              metadata={"source": "scripts/reference/make_t6_reference.py"})
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump({"notes": f"make_t6_reference.py, torch {torch.__version__}, transformers {transformers.__version__}",
                   "input_ids": input_ids, "attention_mask": attention_mask}, f)
        f.write("\n")
    print(f"wrote {out_dir} in {time.time() - start:.1f} s: lengths {[len(s) for s in seqs]}, "
          f"logits[0] {[round(v, 5) for v in out.logits[0].tolist()]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
