"""CLIP BPE tokenizer fixtures (tests/fixtures/tokenizer/ and the tiny pipeline's tokenizer folder).

Scope: build the SD1.5 CLIP tokenizer offline from OpenAI's `bpe_simple_vocab_16e6.txt.gz` (shipped inside the
open-clip-torch wheel), write `vocab.json` / `merges.txt` / SD1.5's `tokenizer_config.json` +
`special_tokens_map.json` (diffusers layout), a compact `tokenizer.json` for the Rust `tokenizers` crate, and
`token_ids.json` with the raw `tokenizers` ids and the 77-token ids the SD pipeline feeds the text encoder.
"""
import gzip
import json
import site
import tempfile
from pathlib import Path

from common import BOS, EOS, MAX_LEN, sha256_file, write_json

BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"

# SD1.5's tokenizer/tokenizer_config.json (pad = <|endoftext|> for SD1.x; SD2.x pads with "!")
SD15_TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": "<|startoftext|>",
    "do_lower_case": True,
    "eos_token": "<|endoftext|>",
    "errors": "replace",
    "model_max_length": MAX_LEN,
    "pad_token": "<|endoftext|>",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": "<|endoftext|>",
}

TEST_PROMPTS = [
    "a photo of an astronaut riding a horse on mars",
    "masterpiece, best quality, 1girl, solo, (detailed eyes:1.2), <lora:animeStyle_v2:0.8>",
    "((epic lighting)), [blurry], [[low quality]], (worst quality:0.6), <lora:add_detail:-0.5> <lyco:loha_x:1>",
    "A Cyberpunk CITY at Night, neon lights, 8k uhd, highly-detailed, f/1.8, 35mm; (hdr)!?... #wow @artist",
    "Café au lait in Zürich \u2014 naïve façade, ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３",
    "\u201csmart quotes\u201d and it\u2019s a dog's life, don't won't I'm we'll they're",
    "tom &amp; jerry &lt;3 &quot;cartoon&quot; &#39;quoted&#39;",
    "東京の夜景, 日本 🐱🚀 emoji, 한국어, Ελληνικά",
    "multiple    spaces\tand\ttabs\nand newline   ",
    "portrait of a man with a beard, by Greg Rutkowski and Alphonse Mucha, trending on artstation",
    ", ".join(["a very long prompt with many many words"] * 12),
    "",
    "UPPER lower MiXeD 1234567890 3.14 x2 v1.5 sd15",
]


def find_bpe_vocab():
    """The BPE file ships in open-clip-torch (open_clip/); its __init__ needs torchvision, so locate, don't import."""
    for sp in site.getsitepackages():
        p = Path(sp) / "open_clip" / BPE_NAME
        if p.exists():
            return p
    raise SystemExit(f"{BPE_NAME} not found: pip install --no-deps open-clip-torch==3.3.0")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_vocab_merges(dst):
    """vocab.json / merges.txt / configs exactly as the SD1.5 tokenizer folder has them."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(find_bpe_vocab()).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]  # as OpenAI's SimpleTokenizer: 48,894 merges
    units = list(bytes_to_unicode().values())
    vocab = units + [u + "</w>" for u in units] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and vocab.index("<|startoftext|>") == BOS
    (dst / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False),
                                    encoding="utf-8")
    (dst / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    write_json(dst / "tokenizer_config.json", SD15_TOKENIZER_CONFIG)
    write_json(dst / "special_tokens_map.json",
               {k: SD15_TOKENIZER_CONFIG[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")})


def _compact_tokenizer_json(src, dst):
    """Rewrite transformers' pretty-printed tokenizer.json compactly (same content; ~half the bytes)."""
    obj = json.loads(Path(src).read_text(encoding="utf-8"))
    Path(dst).write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def pipeline_ids77(raw_ids):
    """What the SD pipeline feeds CLIP: truncate to 76 + EOS, pad with EOS (=pad) to 77."""
    ids = raw_ids[: MAX_LEN - 1] + [EOS] if len(raw_ids) > MAX_LEN else list(raw_ids)
    return ids + [EOS] * (MAX_LEN - len(ids))


def make_tokenizer(out):
    """Writes out/tokenizer/{tokenizer.json, tokenizer_config.json, token_ids.json}; returns (CLIPTokenizer, summary)."""
    from tokenizers import Tokenizer
    from transformers import CLIPTokenizer

    tdir = Path(out) / "tokenizer"
    tdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_vocab_merges(tmp)
        tok = CLIPTokenizer.from_pretrained(tmp)
        save_dir = Path(tmp) / "saved"
        tok.save_pretrained(str(save_dir))  # transformers writes tokenizer.json (tokenizers' own format)
        _compact_tokenizer_json(save_dir / "tokenizer.json", tdir / "tokenizer.json")
    write_json(tdir / "tokenizer_config.json", SD15_TOKENIZER_CONFIG)

    raw = Tokenizer.from_file(str(tdir / "tokenizer.json"))
    rows, agree = [], 0
    for p in TEST_PROMPTS:
        ids = raw.encode(p).ids  # with special tokens (bos .. eos), no padding / truncation
        ids77 = tok(p, padding="max_length", max_length=MAX_LEN, truncation=True).input_ids
        same = pipeline_ids77(ids) == list(ids77)
        agree += same
        rows.append({"prompt": p, "ids": ids, "ids77": list(ids77), "n_tokens": len(ids),
                     "truncated": len(ids) > MAX_LEN, "tokens": raw.encode(p).tokens,
                     "ids77_equals_truncate_pad_of_ids": same})
    meta = {"bpe_file": f"open_clip/{BPE_NAME} (open-clip-torch wheel)", "bpe_sha256": sha256_file(find_bpe_vocab()),
            "vocab_size": raw.get_vocab_size(), "bos": BOS, "eos": EOS, "pad": EOS, "max_length": MAX_LEN,
            "ids_definition": "tokenizers.Tokenizer.from_file(tokenizer.json).encode(prompt).ids (bos..eos, no pad/trunc)",
            "ids77_definition": "transformers CLIPTokenizer(prompt, padding='max_length', max_length=77, truncation=True)",
            "truncated_prompts": [i for i, r in enumerate(rows) if r["truncated"]],
            "ids77_rule_agrees": f"{agree}/{len(rows)}", "cases": rows}
    write_json(tdir / "token_ids.json", meta)
    assert agree == len(rows), "tokenizer.json and CLIPTokenizer disagree"
    return tok, {"n_prompts": len(rows), "ids77_rule_agrees": agree, "truncated": meta["truncated_prompts"]}
