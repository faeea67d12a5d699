#!/usr/bin/env python3
"""Writes a WikiText-103-SIZE pretrained LM (random values) to time `import-fastai` on a file as
big as the real `lstm_fwd.pth`: fastai-v1 key layout (with the three `module.weight_hh_l0`
copies), legacy (pre-1.6) torch format, V = 60000, emb 400, hidden 1152, 3 layers, plus a
60000-token itos pickle and a 60000-token target vocab (half of it unknown words, padded with
xxfake like INSPIRE's). Nothing here is committed; it goes to OUTDIR (default /tmp/wt103-size).

    ../refenv/bin/python tools/reference/gen_big_lm.py [OUTDIR]
    /usr/bin/time -v build/inspire-classifier import-fastai --weights OUTDIR/lstm_fwd.pth \
        --itos OUTDIR/itos_wt103.pkl --target-vocab OUTDIR/target_itos.pkl --out /tmp/lm.safetensors
"""
import pickle
import sys
from collections import OrderedDict
from pathlib import Path

import torch

out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/wt103-size")
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
V, E, H = 60000, 400, 1152
sd = OrderedDict()
emb = (torch.rand(V, E) - 0.5) * 0.2
sd["0.encoder.weight"] = emb
sd["0.encoder_dp.emb.weight"] = emb
for l in range(3):
    i, h = (E if l == 0 else H), (E if l == 2 else H)
    p = f"0.rnns.{l}."
    sd[p + "weight_hh_l0_raw"] = torch.randn(4 * h, h) * 0.05
    sd[p + "module.weight_ih_l0"] = torch.randn(4 * h, i) * 0.05
    sd[p + "module.weight_hh_l0"] = sd[p + "weight_hh_l0_raw"].clone()
    sd[p + "module.bias_ih_l0"] = torch.randn(4 * h) * 0.05
    sd[p + "module.bias_hh_l0"] = torch.randn(4 * h) * 0.05
sd["1.decoder.weight"] = emb
sd["1.decoder.bias"] = torch.randn(V) * 0.1
torch.save(sd, out / "lstm_fwd.pth", _use_new_zipfile_serialization=False)
specials = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]
itos = specials + [f"w{i}" for i in range(V - len(specials))]
with open(out / "itos_wt103.pkl", "wb") as f:
    pickle.dump(itos, f, protocol=2)
target = specials + [f"w{i}" for i in range(0, 60000, 2)] + [f"new{i}" for i in range(29990)]
while len(target) % 8:
    target.append("xxfake")
with open(out / "target_itos.pkl", "wb") as f:
    pickle.dump(target, f, protocol=4)
print("wrote", out, "V_new =", len(target))
