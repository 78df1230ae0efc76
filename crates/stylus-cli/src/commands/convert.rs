//! `stylus convert`: an SD1.5 checkpoint (single `.safetensors` file or diffusers folder) → a
//! converted model folder (`manifest.json` + `shard-00000.bin` …, f16 / q8 / f32; format in
//! `stylus_sd::convert`) for the browser and `stylus generate --model DIR`. The source is
//! memory-mapped and every shard is written and dropped as soon as it is full, so memory stays at
//! about one shard. Also loads converted folders for `generate`.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use memmap2::Mmap;
use stylus_diffusion::{Checkpoint, Device, Loader, Pipeline};
use stylus_sd::checkpoint::{self, Resolved};
use stylus_sd::convert::{DtypePolicy, EncodedFile, Manifest, ShardInfo, Writer};
use stylus_sd::{Component, SdConfig};

use super::inspect::{config, diffusers_weights, read};

/// The manifest's file name in a converted folder.
pub const MANIFEST: &str = "manifest.json";

#[derive(clap::Args)]
pub struct Args {
    /// A single-file checkpoint (.safetensors) or a diffusers folder.
    #[arg(long)]
    model: PathBuf,
    /// Output folder (created; an earlier conversion in it is replaced).
    #[arg(long)]
    out: PathBuf,
    /// Weight encoding: f16, q8 (int8 per output row for large weights, the rest f16) or f32.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Architecture preset: `sd15` (default) or `tiny` (the test fixture).
    #[arg(long, default_value = "sd15")]
    config: String,
    /// Shard size limit in MiB.
    #[arg(long, default_value_t = 64)]
    shard_mb: u64,
    /// Shard size limit in bytes (a multiple of 16, ≥ 1024; overrides --shard-mb; for tests).
    #[arg(long, hide = true)]
    shard_bytes: Option<u64>,
    /// Leave the VAE encoder out (text-to-image only; image-to-image is then refused): 34 M fewer
    /// parameters to download in the browser.
    #[arg(long)]
    no_vae_encoder: bool,
    /// Also write a gzip copy of every shard (`shard-00000.bin.gz`, listed in the manifest with its
    /// size and sha256) for the browser to download instead: int8 weights compress by about a tenth.
    #[arg(long)]
    gzip: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Is `dir` a converted model folder?
pub(crate) fn is_converted(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

/// Loads a converted folder (`generate --model DIR`): the manifest, then each shard from disk,
/// verified by sha256.
pub(crate) fn load_converted(cfg: &SdConfig, config_name: &str, dir: &Path, tokenizer: &[u8], device: &Device) -> anyhow::Result<Pipeline> {
    let json = read(&dir.join(MANIFEST))?;
    let m = Manifest::from_json(&json).with_context(|| dir.join(MANIFEST).display().to_string())?;
    if &m.sd_config != cfg {
        bail!("{} was converted for --config {}, not {config_name}", dir.display(), m.config);
    }
    let fetch = |_, info: &ShardInfo| {
        let p = dir.join(&info.file);
        std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))
    };
    let ld = Loader::from_manifest(cfg, &json, fetch, device)?;
    Ok(Pipeline::from_loader(cfg, ld, tokenizer)?)
}

/// Maps a file read-only.
fn map(path: &Path) -> anyhow::Result<Mmap> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a read-only private map, alive only during this command. Like every memory-mapped
    // reader of safetensors files, we rely on the file not being truncated or rewritten meanwhile.
    unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))
}

/// Creates `dir`, or empties an earlier conversion in it; anything else there is refused.
fn prepare_out(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()));
    }
    anyhow::ensure!(dir.is_dir(), "{} exists and is not a folder", dir.display());
    let mut old = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let ours =
            name == MANIFEST || name == format!("{MANIFEST}.tmp") || (name.starts_with("shard-") && (name.ends_with(".bin") || name.ends_with(".bin.gz")));
        anyhow::ensure!(ours, "{} holds other files ({name}); choose an empty or new folder", dir.display());
        old.push(path);
    }
    old.sort_by_key(|p| !p.ends_with(MANIFEST)); // the manifest first: no half-deleted model looks valid
    for p in old {
        std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = config(&a.config)?;
    let policy: DtypePolicy = a.dtype.parse()?;
    let limit = match a.shard_bytes {
        Some(b) => b,
        None => a.shard_mb.checked_mul(1 << 20).context("--shard-mb is too large")?,
    };
    anyhow::ensure!(!(a.model.is_dir() && is_converted(&a.model)), "{} is already a converted model", a.model.display());

    // The source, memory-mapped; the same checks as `generate` (SD1.5 table, pickle refusal, unknown keys).
    let maps: Vec<Mmap> = if a.model.is_dir() {
        [Component::Unet, Component::Vae, Component::TextEncoder]
            .into_iter()
            .map(|c| diffusers_weights(&a.model, c).and_then(|p| map(&p)))
            .collect::<anyhow::Result<_>>()?
    } else {
        vec![map(&a.model)?]
    };
    let ckpt = match &maps[..] {
        [single] => Checkpoint::SingleFile(single),
        [u, v, t] => Checkpoint::Diffusers { unet: u, vae: v, text_encoder: t },
        _ => unreachable!("one file or three"),
    };
    Loader::from_checkpoint(&cfg, ckpt, &stylus_diffusion::cpu_device()).with_context(|| format!("checking {}", a.model.display()))?;
    let parsed = maps.iter().map(|m| checkpoint::parse(m)).collect::<Result<Vec<_>, _>>()?;
    let mut params: Vec<Resolved<'_>> = Vec::new();
    if let [st] = &parsed[..] {
        params = checkpoint::resolve_single_file(st, &cfg)?.params;
    } else {
        for (comp, st) in [Component::Unet, Component::Vae, Component::TextEncoder].into_iter().zip(&parsed) {
            params.extend(checkpoint::resolve_diffusers(comp, st, &cfg)?.params);
        }
    }

    prepare_out(&a.out)?;
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::new(params.len() as u64) };
    bar.set_style(ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} tensors {elapsed_precise}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let out = a.out.clone();
    let mut gz: Vec<EncodedFile> = Vec::new();
    let emit = |info: &ShardInfo, bytes: Vec<u8>| {
        let p = out.join(&info.file);
        std::fs::write(&p, &bytes).map_err(|e| format!("writing {}: {e}", p.display()))?;
        if a.gzip {
            gz.push(gzip_copy(&out, &info.file, &bytes)?);
        }
        Ok::<(), String>(())
    };
    let mut w = Writer::new(&a.config, &cfg, policy, limit, emit)?;
    if a.no_vae_encoder {
        w = w.without_vae_encoder();
    }
    for r in &params {
        w.add_resolved(r).with_context(|| format!("converting {}", r.key))?;
        bar.set_message(format!("{} shards", w.shards().len()));
        bar.inc(1);
    }
    let mut m = w.finish()?;
    bar.finish_and_clear();
    if a.gzip {
        anyhow::ensure!(gz.len() == m.shards.len(), "{} gzip copies for {} shards", gz.len(), m.shards.len());
        for (s, g) in m.shards.iter_mut().zip(gz) {
            s.gzip = Some(g);
        }
        m.validate()?;
    }
    let tmp = a.out.join(format!("{MANIFEST}.tmp"));
    std::fs::write(&tmp, m.to_json()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, a.out.join(MANIFEST)).with_context(|| format!("writing {}", a.out.join(MANIFEST).display()))?;
    let q8 = m.tensors.iter().filter(|t| t.q8.is_some()).count();
    let gz_bytes: u64 = m.shards.iter().filter_map(|s| s.gzip.as_ref()).map(|g| g.bytes).sum();
    println!(
        "converted {} tensors ({}{}{}) into {} shards, {} bytes ({:.1} MB{}) → {}",
        m.tensors.len(),
        a.dtype,
        if q8 > 0 { format!(": {q8} int8, the rest f16") } else { String::new() },
        if a.no_vae_encoder { ", no VAE encoder" } else { "" },
        m.shards.len(),
        m.total_bytes,
        m.total_bytes as f64 / 1e6,
        if a.gzip { format!("; gzip {:.1} MB", gz_bytes as f64 / 1e6) } else { String::new() },
        a.out.join(MANIFEST).display()
    );
    Ok(())
}

/// Writes `dir/file.gz` (best compression; no name or time in the header, so the same shard always
/// gives the same bytes) and describes it.
fn gzip_copy(dir: &Path, file: &str, bytes: &[u8]) -> Result<EncodedFile, String> {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::with_capacity(bytes.len()), flate2::Compression::best());
    enc.write_all(bytes).map_err(|e| format!("compressing {file}: {e}"))?;
    let z = enc.finish().map_err(|e| format!("compressing {file}: {e}"))?;
    let name = format!("{file}.gz");
    let p = dir.join(&name);
    std::fs::write(&p, &z).map_err(|e| format!("writing {}: {e}", p.display()))?;
    let sha256 = stylus_sd::convert::hex(&Sha256::digest(&z));
    Ok(EncodedFile { file: name, bytes: z.len() as u64, sha256 })
}
