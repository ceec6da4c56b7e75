#!/usr/bin/env python3
"""Reference knowledge edits and mean ablation (torch 2.13 / transformers forward hooks) for
kneuron's `NeuronEdit` (weight surgery).

LOADS the committed tiny classifier Tests/AttributionTests/Fixtures/tiny-ig-model (2 layers,
H=32, 4 heads, I=64, C=7; written by make_attribution_fixtures.py) with
attn_implementation="eager", float32, eval mode, and the token lists of tiny-ig-reference.json.
It does not modify them. Writes Tests/AttributionTests/Fixtures/edit-reference.json:

- means[l][m]: for the padded 4-sequence batch `activation` of tiny-ig-reference.json (one
  forward with its attention mask), the mean of module m's output of layer l over all real
  token positions of all sequences, pooled (sum over (s, t < len_s) / sum len_s), float64;
  module outputs as in make_engine_fixtures.py (intermediate = after GELU).
- edits[i]: {layer, module, units, factor | "mean", logits[k]} for the two unpadded sequences
  runs[k].tokens: the logits when a forward hook on that module multiplies output[..., units]
  by `factor` (Dai et al.'s suppress 0 / amplify 2), or replaces it by means[l][m][units] at every
  position ("mean": mean ablation); `base_logits[k]` without a hook.

  /work/refvenv/bin/python scripts/reference/make_edit_fixtures.py
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_engine_fixtures import FIXTURES, IG_JSON, MODULES, load_model, submodule  # noqa: E402

OUT_JSON = os.path.join(FIXTURES, "edit-reference.json")
UNITS = [0, 3, 5, 17]
CASES = [(0, "query", 2.0), (1, "key", 0.0), (1, "value", 2.0), (0, "attention_output", 0.5),
         (0, "intermediate", 2.0), (1, "intermediate", 0.0), (1, "output", 3.0),
         (0, "value", "mean"), (1, "intermediate", "mean"), (0, "output", "mean")]


def main():
    torch.manual_seed(0)
    model = load_model()
    ref = json.load(open(IG_JSON))
    act = ref["activation"]
    ids = torch.tensor(act["input_ids"], dtype=torch.long)
    mask = torch.tensor(act["attention_mask"], dtype=torch.long)
    sums, handles = {}, []
    for l in range(model.config.num_hidden_layers):
        for m in MODULES:
            def hook(mod, i, o, key=(l, m)):
                x = o.detach().double() * mask[..., None].double()
                sums[key] = x.sum(dim=(0, 1))
            handles.append(submodule(model, l, m).register_forward_hook(hook))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    tokens = float(mask.sum())
    means = [[(sums[(l, m)] / tokens).tolist() for m in MODULES] for l in range(model.config.num_hidden_layers)]

    def logits(tokens, layer=None, module=None, factor=None):
        handle = None
        if layer is not None:
            idx = torch.tensor(UNITS)

            def hook(mod, i, o):
                o = o.clone()
                if factor == "mean":
                    o[..., idx] = torch.tensor(means[layer][MODULES.index(module)], dtype=torch.float64)[idx].float()
                else:
                    o[..., idx] = o[..., idx] * factor
                return o
            handle = submodule(model, layer, module).register_forward_hook(hook)
        try:
            with torch.no_grad():
                return model(input_ids=torch.tensor([tokens], dtype=torch.long)).logits[0].double().tolist()
        finally:
            if handle is not None:
                handle.remove()

    runs = [r["tokens"] for r in ref["runs"]]
    out = {
        "notes": __doc__.strip().splitlines()[0],
        "torch": torch.__version__,
        "modules": list(MODULES),
        "units": UNITS,
        "means": means,
        "sequences": runs,
        "base_logits": [logits(t) for t in runs],
        "edits": [{"layer": l, "module": m, "factor": f, "logits": [logits(t, l, m, f) for t in runs]} for (l, m, f) in CASES],
    }
    with open(OUT_JSON, "w") as fh:
        json.dump(out, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print("wrote", OUT_JSON)


if __name__ == "__main__":
    main()
