//! `stylus inspect`: resolves a checkpoint against the SD1.5 parameter table and reports it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use stylus_sd::checkpoint::{self, Resolution};
use stylus_sd::{Component, SdConfig};

#[derive(clap::Args)]
pub struct Args {
    /// A single-file checkpoint (.safetensors) or a diffusers folder.
    model: PathBuf,
    /// Architecture preset: `sd15` (default) or `tiny` (the test fixture).
    #[arg(long, default_value = "sd15")]
    config: String,
}

/// The `--config` presets (shared with `generate`).
pub(crate) fn config(name: &str) -> anyhow::Result<SdConfig> {
    Ok(match name {
        "sd15" | "v1_5" => SdConfig::v1_5(),
        "tiny" => SdConfig::tiny(),
        other => bail!("unknown config `{other}` (expected sd15 or tiny)"),
    })
}

pub(crate) fn read(p: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// The weights file of one component of a diffusers folder (safetensors only).
pub(crate) fn diffusers_weights(model: &Path, comp: Component) -> anyhow::Result<PathBuf> {
    let dir = model.join(comp.dir());
    ["diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .with_context(|| format!("{} has no safetensors weights (pickled .bin files are refused)", dir.display()))
}

fn report(label: &str, res: &Resolution<'_>) {
    for (comp, (n, numel)) in checkpoint::summarize(res) {
        println!("{label}: {comp}: {n} tensors, {numel} parameters");
    }
    if !res.unexpected.is_empty() {
        println!("{label}: {} unexpected keys ignored, e.g. {:?}", res.unexpected.len(), &res.unexpected[..res.unexpected.len().min(5)]);
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = config(&a.config)?;
    if a.model.is_dir() {
        for comp in [Component::Unet, Component::Vae, Component::TextEncoder] {
            let file = diffusers_weights(&a.model, comp)?;
            let bytes = read(&file)?;
            let st = checkpoint::parse(&bytes).with_context(|| file.display().to_string())?;
            let res = checkpoint::resolve_diffusers(comp, &st, &cfg).with_context(|| file.display().to_string())?;
            report("diffusers", &res);
        }
    } else {
        let bytes = read(&a.model)?;
        let st = checkpoint::parse(&bytes)?;
        let res = checkpoint::resolve_single_file(&st, &cfg)?;
        report("single file", &res);
    }
    println!("OK: SD1.5 architecture ({})", a.config);
    Ok(())
}
