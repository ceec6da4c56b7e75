#!/usr/bin/env python3
"""Builds the PyTorch-pickle checkpoint fixtures of kneuron's restricted reader (issue 16).

Reads the tiny-esm fixture (Tests/ESMTests/Fixtures/tiny-esm, made by make_fixtures.py) and
writes, under Tests/ESMTests/Fixtures/:

  tiny-esm-bin/        config.json + pytorch_model.bin as transformers 4.x wrote it with
                       save_pretrained(safe_serialization=False): torch.save(model.state_dict())
                       (transformers 5.x writes only safetensors)
  tiny-esm-state/      config.json + pytorch_model.bin = torch.save(model.state_dict()),
                       one tensor saved as a non-contiguous view (classifier.out_proj.weight
                       as w.t().contiguous().t()) to exercise strided storages
  tiny-esm2.pt         a random EsmForMaskedLM (2 layers, hidden 32, 4 heads, FFN 128 = 4 x hidden
                       as fair-esm's ESM2 requires) in fair-esm's layout, as esm.pretrained
                       downloads it: {"model": state_dict with "encoder.sentence_encoder." names
                       and "encoder.lm_head.*", "cfg": {"model": argparse.Namespace(...)}},
                       checked by loading it with fair-esm itself (esm.pretrained.
                       load_model_and_alphabet_core, strict)
  tiny-esm2.json       input_ids of three sequences and transformers' last_hidden_state for them
                       (and fair-esm's max |difference| to it)
  hostile/             pickles that must be refused: GLOBAL os.system, REDUCE of a value that is
                       not callable, a truncated zip, a storage shorter than its tensor

Usage: python scripts/reference/make_torch_fixtures.py   (torch 2.13, transformers 5.24,
fair-esm 2.0.0; scripts/reference/requirements.txt)
"""
import argparse
import io
import json
import os
import pickle
import shutil
import sys
import zipfile

import torch
from transformers import EsmForSequenceClassification

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
fixtures = os.path.join(root, "Tests", "ESMTests", "Fixtures")
tiny = os.path.join(fixtures, "tiny-esm")

model = EsmForSequenceClassification.from_pretrained(tiny, attn_implementation="eager").eval()
config = model.config

# (a) transformers 4.x's .bin format: torch.save of the state_dict.
out = os.path.join(fixtures, "tiny-esm-bin")
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
shutil.copy(os.path.join(tiny, "config.json"), out)
torch.save(model.state_dict(), os.path.join(out, "pytorch_model.bin"))

# (b) torch.save(model.state_dict()) with one strided view.
out = os.path.join(fixtures, "tiny-esm-state")
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
shutil.copy(os.path.join(tiny, "config.json"), out)
state = model.state_dict()
w = state["classifier.out_proj.weight"]
state["classifier.out_proj.weight"] = w.t().contiguous().t()
assert not state["classifier.out_proj.weight"].is_contiguous()
torch.save(state, os.path.join(out, "pytorch_model.bin"))

# (c) fair-esm's ESM-2 layout (the inverse of transformers' models/esm/convert_esm.py).
from transformers import EsmConfig, EsmForMaskedLM
torch.manual_seed(20261202)
mconfig = EsmConfig(vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                    max_position_embeddings=1026, position_embedding_type="rotary", token_dropout=True,
                    emb_layer_norm_before=False, layer_norm_eps=1e-5, mask_token_id=32, pad_token_id=1,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, hidden_act="gelu")
masked = EsmForMaskedLM(mconfig).eval()
with torch.no_grad():
    for name, p in masked.named_parameters():
        if "LayerNorm" in name or "layer_norm" in name:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn_like(p))
        else:
            p.copy_(0.2 * torch.randn_like(p))
hf = masked.state_dict()
fair = {"encoder.sentence_encoder.embed_tokens.weight": hf["esm.embeddings.word_embeddings.weight"]}
names = {"attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
         "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
         "attention.LayerNorm": "self_attn_layer_norm", "LayerNorm": "final_layer_norm",
         "intermediate.dense": "fc1", "output.dense": "fc2"}
H = mconfig.hidden_size
for i in range(mconfig.num_hidden_layers):
    for h, f in names.items():
        for p in ("weight", "bias"):
            fair[f"encoder.sentence_encoder.layers.{i}.{f}.{p}"] = hf[f"esm.encoder.layer.{i}.{h}.{p}"]
    head_dim = H // mconfig.num_attention_heads
    fair[f"encoder.sentence_encoder.layers.{i}.self_attn.rot_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
for p in ("weight", "bias"):
    fair[f"encoder.sentence_encoder.emb_layer_norm_after.{p}"] = hf[f"esm.encoder.emb_layer_norm_after.{p}"]
fair["encoder.lm_head.dense.weight"] = hf["lm_head.dense.weight"]
fair["encoder.lm_head.dense.bias"] = hf["lm_head.dense.bias"]
fair["encoder.lm_head.layer_norm.weight"] = hf["lm_head.layer_norm.weight"]
fair["encoder.lm_head.layer_norm.bias"] = hf["lm_head.layer_norm.bias"]
fair["encoder.lm_head.weight"] = hf["lm_head.decoder.weight"]
fair["encoder.lm_head.bias"] = hf["lm_head.bias"]
cfg = argparse.Namespace(encoder_layers=mconfig.num_hidden_layers, encoder_embed_dim=H,
                         encoder_ffn_embed_dim=mconfig.intermediate_size,
                         encoder_attention_heads=mconfig.num_attention_heads, token_dropout=True,
                         arch="roberta_large", max_positions=1024, dropout=0.0)
pt = os.path.join(fixtures, "tiny-esm2.pt")
torch.save({"model": fair, "cfg": {"model": cfg, "task": argparse.Namespace(_name="masked_lm")}}, pt)

parity = json.load(open(os.path.join(tiny, "parity.json")))
rows = [(ids[: int(sum(m))]) for ids, m in zip(parity["input_ids"], parity["attention_mask"]) if 32 not in ids]
reference = {"input_ids": rows, "last_hidden_state": []}
with torch.no_grad():
    for ids in rows:
        reference["last_hidden_state"].append(masked.esm(torch.tensor([ids])).last_hidden_state[0].tolist())
try:
    import esm
    data = torch.load(pt, map_location="cpu", weights_only=False)
    fm, alphabet = esm.pretrained.load_model_and_alphabet_core("esm2_tiny", data, None)   # strict load_state_dict
    fm.eval()
    worst = 0.0
    with torch.no_grad():
        for ids, ref in zip(rows, reference["last_hidden_state"]):
            rep = fm(torch.tensor([ids]), repr_layers=[mconfig.num_hidden_layers])["representations"][mconfig.num_hidden_layers][0]
            worst = max(worst, float((rep - torch.tensor(ref)).abs().max()))
    reference["fair_esm_max_abs_diff"] = worst
    print(f"fair-esm {esm.__version__} loads tiny-esm2.pt; its representations vs transformers' last_hidden_state: max |diff| {worst:.3e}")
except ImportError:
    print("fair-esm not installed: the .pt layout was not checked with it", file=sys.stderr)
json.dump(reference, open(os.path.join(fixtures, "tiny-esm2.json"), "w"))

# Hostile files.
hostile = os.path.join(fixtures, "hostile")
shutil.rmtree(hostile, ignore_errors=True)
os.makedirs(hostile)


class System:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def zipped(name, pkl, extra=None):
    with zipfile.ZipFile(os.path.join(hostile, name), "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        for k, v in (extra or {}).items():
            z.writestr(f"archive/data/{k}", v)


zipped("global-os-system.bin", pickle.dumps({"x": System()}, protocol=2))
# REDUCE applied to a str: MARK-free protocol 2: PROTO 2, BINUNICODE 'abc', EMPTY_TUPLE, REDUCE, STOP.
zipped("reduce-not-callable.bin", b"\x80\x02X\x03\x00\x00\x00abc)R.")
good = open(os.path.join(fixtures, "tiny-esm-state", "pytorch_model.bin"), "rb").read()
open(os.path.join(hostile, "truncated.bin"), "wb").write(good[: len(good) // 2])
# A storage of 2 floats behind a tensor of 4: rebuild the state_dict pickle by hand.
buf = io.BytesIO()
torch.save({"w": torch.zeros(4)}, buf)
with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
    entries = {n: z.read(n) for n in z.namelist()}
with zipfile.ZipFile(os.path.join(hostile, "short-storage.bin"), "w", compression=zipfile.ZIP_STORED) as z:
    for n, v in entries.items():
        z.writestr(n, v[:8] if n.endswith("/data/0") else v)


# Hand-made pickles whose sizes would overflow or exhaust memory (the breaker's recipes).
def long1(n):
    b = pickle.encode_long(n)
    return b"\x8a" + bytes([len(b)]) + b


def tup(items):
    return b"(" + b"".join(items) + b"t"


def tensor_pickle(size, stride, offset, numel):
    p = b"\x80\x02}X\x01\x00\x00\x00w" + b"ctorch._utils\n_rebuild_tensor_v2\n("
    p += b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu" + long1(numel) + b"tQ"
    p += long1(offset) + tup([long1(x) for x in size]) + tup([long1(x) for x in stride])
    p += b"\x89ccollections\nOrderedDict\n)RtRs."
    return p


zipped("size-overflow.bin", tensor_pickle([2**62 + 2], [0], 0, 1), {"0": b"\0" * 4})
zipped("numel-overflow.bin", tensor_pickle([4], [1], 20, 2**62), {"0": b"\0" * 16})
zipped("broadcast.bin", tensor_pickle([2**16, 2**16], [0, 0], 0, 1), {"0": b"\0" * 4})
zipped("deep-tuples.bin", b"\x80\x02)" + b"\x85" * 50000 + b".")
zipped("deep-lists.bin", b"\x80\x02" + b"]" * 100000 + b"a" * 99999 + b".")
print("wrote", ", ".join(sorted(os.listdir(fixtures))), "and hostile/:", ", ".join(sorted(os.listdir(hostile))))
