#!/usr/bin/env python3
"""Builds kneuron's PyTorch reference fixtures for a tiny random-weight ESM-2 classifier.

Writes to Tests/ESMTests/Fixtures/tiny-esm/ (relative to the repository root):

  config.json            HF EsmConfig of EsmForSequenceClassification (save_pretrained)
  model.safetensors      F32 weights by their HF names (save_pretrained, safe_serialization)
  model-f16.safetensors  the same weights as F16 (for loader tests)
  model-bf16.safetensors the same weights as BF16 (for loader tests)
  parity.json            inputs, logits, hidden states and loss of one batch (see below)
  grads.safetensors      dLoss/dparam of every trained parameter, HF names, F32

parity.json keys:
  input_ids       (B,T) ints, `<cls> residues <eos>` right-padded with <pad>=1
  attention_mask  (B,T) ints, 1 for real tokens
  labels          (B) ints in 0..<num_labels
  logits          (B,C) floats
  hidden_states   (L+1,B,T,H) floats, exactly HF `output_hidden_states=True`:
                  [0] = embeddings after token dropout scaling and padding zeroing,
                  [i] (1 <= i < L) = output of block i-1,
                  [L] = output of the last block AFTER `emb_layer_norm_after`
                  (transformers 5.x overwrites hidden_states[-1] with last_hidden_state).
  final_block_output (B,T,H) the output of the last block BEFORE emb_layer_norm_after
  loss            mean cross-entropy of logits against labels (float)
  adamw           10 AdamW fine-tuning steps on the batch (lr 1e-2, weight decay 0.01 on
                  2-D weights except word embeddings, clip_grad_norm_ 1.0): learning_rate,
                  weight_decay, max_grad_norm, losses (before each step), final_logits
  notes           a short description of the above

The model: an explicit EsmConfig with every ESM-2 field set (rotary, token dropout,
no embedding LayerNorm, eps 1e-5, exact GELU, no dropout), torch.manual_seed(20240617),
every Linear/Embedding weight ~ N(0, 0.02) except the attention query/key weights
~ N(0, 0.2) (so attention is far from uniform), every Linear bias ~ 0.1*N(0,1), every
LayerNorm weight ~ 1 + 0.1*N(0,1) and bias ~ 0.1*N(0,1), so that parity tests exercise
biases and LayerNorm affine parameters. float32, eval mode, eager attention.
The `<pad>` embedding row is deliberately NOT zero: a correct model never reads it.

The batch (4 sequences of 5, 11, 17 and 24 tokens) contains the rare letters
X, B, U, Z, O and one `<mask>` (which token dropout zeroes and rescales for).

Regenerate (deterministic; the files are byte-identical across runs on one machine):

  /work/venv/bin/pip install -r scripts/reference/requirements.txt   # once
  /work/venv/bin/python scripts/reference/make_fixtures.py

Run from anywhere; the output directory is found relative to this file.
"""

import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import EsmConfig, EsmForSequenceClassification

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "ESMTests", "Fixtures", "tiny-esm")
SEED = 20240617

# ESM-2 alphabet (REFERENCE.md section 2), id order.
ALPHABET = ["<cls>", "<pad>", "<eos>", "<unk>",
            "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N",
            "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>"]
TOKEN = {t: i for i, t in enumerate(ALPHABET)}
assert TOKEN["L"] == 4 and TOKEN["O"] == 28 and TOKEN["<mask>"] == 32 and len(ALPHABET) == 33

EC_CLASSES = ["Oxidoreductases", "Transferases", "Hydrolases", "Lyases",
              "Isomerases", "Ligases", "Translocases"]

# Residue strings; "#" stands for one <mask> token. Lengths with <cls>/<eos>: 5, 11, 17, 24.
SEQUENCES = [
    "MKX",
    "MAGBLUVSE",
    "MTEZIKLOWCHRDP#",
    "MSTNPKPQRKTKRNTYRRAAGY",
]
LABELS = [0, 3, 6, 2]


def tokenize(residues):
    ids = [TOKEN["<cls>"]]
    for ch in residues:
        ids.append(TOKEN["<mask>"] if ch == "#" else TOKEN[ch])
    ids.append(TOKEN["<eos>"])
    return ids


def make_config(**shape):
    """The tiny fixture's explicit EsmConfig; `shape` overrides fields (e.g. hidden_size=320)."""
    fields = dict(
        vocab_size=33,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=1026,
        position_embedding_type="rotary",
        rope_theta=10000.0,
        token_dropout=True,
        emb_layer_norm_before=False,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.02,
        mask_token_id=TOKEN["<mask>"],
        pad_token_id=TOKEN["<pad>"],
        eos_token_id=TOKEN["<eos>"],
        cls_token_id=TOKEN["<cls>"],
        num_labels=len(EC_CLASSES),
        id2label={i: name for i, name in enumerate(EC_CLASSES)},
        label2id={name: i for i, name in enumerate(EC_CLASSES)},
        problem_type="single_label_classification",
        is_decoder=False,
        add_cross_attention=False,
        is_folding_model=False,
        use_cache=False,
        tie_word_embeddings=False,
    )
    fields.update(shape)
    return EsmConfig(**fields)


def reinitialise(model, qk_std=0.2, linear_std=0.02, embedding_std=0.02):
    """Non-trivial deterministic values for every parameter (see module docstring).

    Linear weights ~ N(0, qk_std) for the query/key projections and N(0, linear_std) for the
    others, biases 0.1 * N(0, 1); embeddings N(0, embedding_std); LayerNorm weight
    1 + 0.1 * N(0, 1), bias 0.1 * N(0, 1). Draw order: modules in `named_modules()` order.
    The defaults are this script's tiny fixture: query/key get std 0.2 so attention is far from
    uniform (with 0.02 the scores are ~0.02, softmax is flat and rotary/masking errors barely
    show). make_t6_reference.py and make_attribution_fixtures.py pass their own.
    """
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                std = qk_std if name.endswith((".self.query", ".self.key")) else linear_std
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn_like(module.bias))
            elif isinstance(module, torch.nn.Embedding):
                module.weight.normal_(0.0, embedding_std)
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1.0 + 0.1 * torch.randn_like(module.weight))
                module.bias.copy_(0.1 * torch.randn_like(module.bias))


def rounded(x, digits=9):
    """Nested lists of floats rounded to `digits` significant digits (float32 needs 9)."""
    arr = np.asarray(x, dtype=np.float64)
    flat = [float(f"{v:.{digits}g}") for v in arr.reshape(-1)]
    return np.array(flat).reshape(arr.shape).tolist()


def main():
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    config = make_config()
    model = EsmForSequenceClassification(config).to(torch.float32)
    model.set_attn_implementation("eager")
    reinitialise(model)
    model.eval()

    seqs = [tokenize(s) for s in SEQUENCES]
    T = max(len(s) for s in seqs)
    input_ids = [s + [TOKEN["<pad>"]] * (T - len(s)) for s in seqs]
    attention_mask = [[1] * len(s) + [0] * (T - len(s)) for s in seqs]
    flat = sum(input_ids, [])
    for letter in ["X", "B", "U", "Z", "O"]:
        assert TOKEN[letter] in flat, letter
    assert flat.count(TOKEN["<mask>"]) == 1

    ids = torch.tensor(input_ids)
    mask = torch.tensor(attention_mask)
    labels = torch.tensor(LABELS)

    model.zero_grad(set_to_none=True)
    captured = {}
    last_block = model.esm.encoder.layer[-1]
    handle = last_block.register_forward_hook(lambda m, i, o: captured.__setitem__(
        "final", (o[0] if isinstance(o, tuple) else o).detach().clone()))
    out = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    handle.remove()
    loss_check = torch.nn.functional.cross_entropy(out.logits, labels)
    assert torch.allclose(out.loss, loss_check), (out.loss, loss_check)
    out.loss.backward()

    hs = out.hidden_states
    L = config.num_hidden_layers
    assert len(hs) == L + 1
    # hidden_states[L] is after the final LayerNorm (see docstring); check it.
    post = model.esm.encoder.emb_layer_norm_after(captured["final"])
    assert torch.allclose(hs[L], post, atol=1e-6), "hidden_states[-1] is not post-LN"

    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)

    # Every weight in the saved state dict, as F16/BF16 copies with the same names.
    from safetensors import safe_open
    with safe_open(os.path.join(OUT, "model.safetensors"), framework="pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
        saved_meta = f.metadata()
    save_file({k: v.to(torch.float16).contiguous() for k, v in saved.items()},
              os.path.join(OUT, "model-f16.safetensors"), metadata=saved_meta)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in saved.items()},
              os.path.join(OUT, "model-bf16.safetensors"), metadata=saved_meta)

    grads = {name: p.grad.detach().to(torch.float32).contiguous()
             for name, p in model.named_parameters() if p.grad is not None}
    # The contact head is unused by the classifier; every other parameter has a gradient.
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert all(n.startswith("esm.contact_head.") for n in missing), missing
    save_file(grads, os.path.join(OUT, "grads.safetensors"),
              # One metadata key only: safetensors writes metadata in hash-map order, so
              # two keys would make the file bytes differ from run to run.
              metadata={"source": f"scripts/reference/make_fixtures.py (loss {out.loss.item():.9g})"})

    # AdamW trajectory: 10 full fine-tuning steps on the same batch, as kneuron's Trainer.step
    # does them (mean cross-entropy, clip_grad_norm_ 1.0, torch.optim.AdamW with decoupled
    # weight decay on 2-D weights except the word embeddings).
    import copy
    tuned = copy.deepcopy(model)
    tuned.train()  # dropout probabilities are all 0, so train mode changes nothing but is honest
    trainable = [(n, p) for n, p in tuned.named_parameters() if not n.startswith("esm.contact_head.")]
    decay = [p for n, p in trainable if p.dim() == 2 and n != "esm.embeddings.word_embeddings.weight"]
    no_decay = [p for n, p in trainable if not (p.dim() == 2 and n != "esm.embeddings.word_embeddings.weight")]
    adam_cfg = {"learning_rate": 1e-2, "weight_decay": 0.01, "max_grad_norm": 1.0}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": adam_cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=adam_cfg["learning_rate"], betas=(0.9, 0.999), eps=1e-8, foreach=False)
    adam_losses = []
    for _ in range(10):
        opt.zero_grad(set_to_none=True)
        o = tuned(input_ids=ids, attention_mask=mask, labels=labels)
        adam_losses.append(float(f"{o.loss.item():.9g}"))
        o.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], adam_cfg["max_grad_norm"])
        opt.step()
    with torch.no_grad():
        adam_final_logits = tuned(input_ids=ids, attention_mask=mask).logits
    adam_cfg.update({"losses": adam_losses, "final_logits": rounded(adam_final_logits)})

    parity = {
        "notes": ("Generated by scripts/reference/make_fixtures.py with torch " + torch.__version__
                  + ", transformers " + transformers.__version__
                  + ". hidden_states[0] = embeddings; hidden_states[i] = output of block i-1 for "
                  "1 <= i < L; hidden_states[L] = last block output AFTER emb_layer_norm_after; "
                  "final_block_output = last block output BEFORE emb_layer_norm_after. "
                  "loss = mean cross-entropy. Floats rounded to 9 significant digits."),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": LABELS,
        "logits": rounded(out.logits.detach()),
        "loss": float(f"{out.loss.item():.9g}"),
        "hidden_states": [rounded(h.detach()) for h in hs],
        "final_block_output": rounded(captured["final"]),
        "adamw": adam_cfg,
    }
    with open(os.path.join(OUT, "parity.json"), "w") as f:
        json.dump(parity, f, separators=(",", ":"))
        f.write("\n")

    names = sorted(saved.keys())
    ln = [n for n in names if "LayerNorm" in n or "layer_norm" in n]
    print("wrote", OUT)
    print("saved tensors:", len(names), "| LayerNorm-style names, e.g.:", ln[:3])
    print("loss", out.loss.item(), "logits[0]", out.logits[0].tolist())
    total = 0
    for fn in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, fn))
        total += size
        print(f"  {fn:26s} {size:8d} bytes")
    print(f"  total {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
