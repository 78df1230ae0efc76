"""Shared by the benchmark drivers (benches/*.py, benches/gpu/torch_ref.py): SD1.5 reference shapes for the
PyTorch side, running a Rust bench binary and reading its `BENCH_JSON` line, and rewriting one marked section
of BENCHMARKS.md."""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# diffusers UNet2DConditionModel arguments of SD1.5 (the full-size architecture, random weights).
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def attention_linears():
    """(out, in) of SD1.5's 128 attention linears: 16 transformer blocks x attn1/attn2 x q,k,v,out."""
    blocks = [320] * 2 + [640] * 2 + [1280] * 2 + [1280] + [1280] * 3 + [640] * 3 + [320] * 3
    shapes = []
    for c in blocks:
        shapes += [(c, c)] * 4                          # attn1 q, k, v, out
        shapes += [(c, c), (c, 768), (c, 768), (c, c)]  # attn2 q, k, v, out
    assert len(shapes) == 128
    return shapes


def cargo_bench(name, args):
    """Runs crates/stylus-diffusion/benches/NAME.rs with the workspace's feature set (the build tests and CI
    already made, so no second copy of burn is compiled); returns its BENCH_JSON object, or
    {"error": last stderr line}."""
    cmd = f". scripts/env.sh && cargo bench --profile dev -q --workspace --bench {name} -- {args}"
    p = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True)
    sys.stderr.write(p.stderr[-2000:])
    line = next((l for l in p.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if p.returncode != 0 or line is None:
        return {"error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]}
    return json.loads(line[len("BENCH_JSON "):])


def read_section(name):
    """The text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in BENCHMARKS.md ("" when absent)."""
    m = re.search(re.escape(f"<!-- {name}:begin -->") + "(.*?)" + re.escape(f"<!-- {name}:end -->"), (ROOT / "BENCHMARKS.md").read_text(), re.S)
    return m.group(1) if m else ""


def write_section(name, text):
    """Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in BENCHMARKS.md (appends
    the section when the markers are absent)."""
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc:
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)
