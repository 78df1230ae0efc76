//! `stylus generate`: text-to-image with an SD1.5 checkpoint (single `.safetensors` file, diffusers
//! folder or a `stylus convert` folder) on burn's CPU backend, written as PNG. The library
//! (`stylus_diffusion`) does the work; this reads the files, shows progress and writes the images.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use stylus_diffusion::pipeline::Progress;
use stylus_diffusion::{Checkpoint, GenerateRequest, Image, ModelFiles, Pipeline, Precision};
use stylus_lora::{LoraFile, ModuleTable};
use stylus_sd::{Component, SchedulerKind};

use super::convert::{is_converted, load_converted};
use super::inspect::{config, diffusers_weights, read};
use super::tokenize::EMBEDDED_TOKENIZER;

#[derive(clap::Args)]
pub struct Args {
    /// A single-file checkpoint (.safetensors), a diffusers folder or a converted folder (`stylus convert`).
    #[arg(long)]
    model: PathBuf,
    /// Architecture preset: `sd15` (default) or `tiny` (the test fixture).
    #[arg(long, default_value = "sd15")]
    config: String,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value = "")]
    negative: String,
    /// Denoising steps (the Stylus reference uses 35).
    #[arg(long, default_value_t = 35)]
    steps: usize,
    /// Classifier-free guidance scale (≤ 1 disables guidance).
    #[arg(long, default_value_t = 5.0)]
    cfg: f32,
    /// Seed of the platform-independent noise; image i of a batch uses seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 512)]
    width: usize,
    #[arg(long, default_value_t = 512)]
    height: usize,
    /// ddim, euler_a or dpmpp_2m_karras.
    #[arg(long, default_value = "dpmpp_2m_karras")]
    scheduler: String,
    /// Images per run (with --mask: the number of masks).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Text-encoder layers to skip (diffusers `clip_skip`).
    #[arg(long, default_value_t = 0)]
    clip_skip: usize,
    /// Output PNG; with --batch N > 1, OUT-0.png … OUT-(N-1).png.
    #[arg(long, default_value = "out.png")]
    out: PathBuf,
    /// `cpu` (burn flex) or `wgpu` (the default GPU adapter: Vulkan/Metal/DX12).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// `f32`, or `f16` (half the GPU memory, faster on GPUs; needs an adapter with f16 support).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// A tokenizer.json instead of the embedded SD1.5 CLIP tokenizer.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// A LoRA to apply, `FILE:WEIGHT` (weight defaults to 0.8); repeatable. kohya/A1111, LoCon,
    /// LyCORIS LoHa/LoKr and diffusers/PEFT files. Base weights stay untouched.
    #[arg(long = "lora", value_name = "FILE[:WEIGHT]")]
    loras: Vec<String>,
    /// A per-image mask over the --lora adapters, e.g. `1,0,1` (one factor per adapter, multiplied
    /// with its weight); repeatable, one per image: the batch becomes the number of masks and all
    /// images run in one pass with their own adapter mix (Stylus' `one_hot_loras` masks).
    #[arg(long = "mask", value_name = "F,F,…")]
    masks: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Compile the GPU kernels first (one text-encoder pass, UNet step and decode at this request's
    /// shapes, shown as `warming`), so the progress bar's first step is a real one. Costs that
    /// one step and decode again; with `--device cpu` it only costs.
    #[arg(long)]
    warm_up: bool,
}

/// `FILE[:WEIGHT]`: the weight is what follows the last `:` when it parses as a number.
fn parse_lora_arg(arg: &str) -> anyhow::Result<(PathBuf, f32)> {
    if let Some((file, w)) = arg.rsplit_once(':') {
        if let Ok(weight) = w.trim().parse::<f32>() {
            anyhow::ensure!(weight.is_finite(), "--lora {arg}: the weight must be a finite number");
            anyhow::ensure!(!file.is_empty(), "--lora {arg}: no file given");
            return Ok((PathBuf::from(file), weight));
        }
    }
    Ok((PathBuf::from(arg), 0.8))
}

/// One `--mask` per image → per-image weights (`mask factor × adapter weight`).
fn parse_masks(masks: &[String], weights: &[f32]) -> anyhow::Result<Vec<Vec<f32>>> {
    masks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let f: Vec<f32> = m
                .split(',')
                .map(|x| x.trim().parse::<f32>().map_err(|_| anyhow::anyhow!("--mask {m}: `{x}` is not a number")))
                .collect::<anyhow::Result<_>>()?;
            anyhow::ensure!(f.len() == weights.len(), "--mask #{} `{m}` has {} entries for {} --lora adapters", i + 1, f.len(), weights.len());
            anyhow::ensure!(f.iter().all(|v| v.is_finite()), "--mask {m}: factors must be finite");
            Ok(f.iter().zip(weights).map(|(a, w)| a * w).collect())
        })
        .collect()
}

/// Reads, parses and installs the `--lora` adapters (uniform or per-image `--mask`s).
fn apply_loras(pipe: &mut Pipeline, a: &Args) -> anyhow::Result<()> {
    if a.loras.is_empty() {
        anyhow::ensure!(a.masks.is_empty(), "--mask needs --lora adapters");
        return Ok(());
    }
    let table = ModuleTable::new(pipe.config())?;
    let mut files = Vec::new();
    let mut weights = Vec::new();
    for arg in &a.loras {
        let (path, w) = parse_lora_arg(arg)?;
        let bytes = read(&path)?;
        let lora = LoraFile::parse(&bytes, &table).with_context(|| format!("LoRA {}", path.display()))?;
        if !a.quiet {
            let s = lora.summary();
            eprintln!(
                "lora {} ({:?}): {} UNet + {} text-encoder modules, weight {w}{}",
                path.display(),
                s.format,
                s.unet_modules,
                s.text_encoder_modules,
                if s.unmatched.is_empty() { String::new() } else { format!("; {} keys unmatched, e.g. {}", s.unmatched.len(), s.unmatched[0].key) }
            );
        }
        files.push(lora);
        weights.push(w);
    }
    let refs: Vec<&LoraFile> = files.iter().collect();
    if a.masks.is_empty() {
        let set: Vec<(&LoraFile, f32)> = refs.iter().copied().zip(weights.iter().copied()).collect();
        pipe.set_adapters(&set)?;
    } else {
        pipe.set_adapters_per_image(&refs, &parse_masks(&a.masks, &weights)?)?;
    }
    Ok(())
}

/// The checkpoint files' bytes, kept alive while the pipeline loads.
enum Files {
    Single(Vec<u8>),
    Diffusers([Vec<u8>; 3]),
    /// A `stylus convert` folder: shards are read one by one while loading.
    Converted,
}

fn read_model(model: &Path) -> anyhow::Result<Files> {
    if model.is_dir() && is_converted(model) {
        Ok(Files::Converted)
    } else if model.is_dir() {
        let part = |c| diffusers_weights(model, c).and_then(|p| read(&p));
        Ok(Files::Diffusers([part(Component::Unet)?, part(Component::Vae)?, part(Component::TextEncoder)?]))
    } else {
        Ok(Files::Single(read(model)?))
    }
}

/// Output paths for `n` images.
fn out_paths(out: &Path, n: usize) -> Vec<PathBuf> {
    if n == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = out.extension().and_then(|s| s.to_str()).unwrap_or("png");
    (0..n).map(|i| out.with_file_name(format!("{stem}-{i}.{ext}"))).collect()
}

/// Writes an 8-bit RGB PNG.
pub fn write_png(path: &Path, img: &Image) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), img.width as u32, img.height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().with_context(|| format!("writing {}", path.display()))?;
    w.write_image_data(&img.rgb).with_context(|| format!("writing {}", path.display()))?;
    w.finish().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = config(&a.config)?;
    let scheduler: SchedulerKind = a.scheduler.parse()?;
    let tokenizer = match &a.tokenizer {
        Some(p) => read(p)?,
        None => EMBEDDED_TOKENIZER.to_vec(),
    };
    let files = read_model(&a.model)?;
    let precision = Precision::parse(&a.dtype).ok_or_else(|| anyhow::anyhow!("--dtype {}: f32 or f16", a.dtype))?;
    let mut device = stylus_diffusion::device_named(&a.device)?;
    stylus_diffusion::set_precision(&mut device, precision).with_context(|| format!("--dtype {} on --device {}", a.dtype, a.device))?;
    let load = |checkpoint| Pipeline::load(&cfg, &ModelFiles { checkpoint, tokenizer_json: &tokenizer }, &device).map_err(anyhow::Error::from);
    let mut pipe = match &files {
        Files::Single(b) => load(Checkpoint::SingleFile(b)),
        Files::Diffusers([u, v, t]) => load(Checkpoint::Diffusers { unet: u, vae: v, text_encoder: t }),
        Files::Converted => load_converted(&cfg, &a.config, &a.model, &tokenizer, &device),
    }
    .with_context(|| format!("loading {}", a.model.display()))?;
    drop(files);
    apply_loras(&mut pipe, &a)?;
    let batch = if a.masks.is_empty() { a.batch } else { a.masks.len() };
    if !pipe.ignored_keys().is_empty() && !a.quiet {
        eprintln!("note: {} keys outside the SD1.5 networks ignored, e.g. {:?}", pipe.ignored_keys().len(), &pipe.ignored_keys()[..1]);
    }
    let req = GenerateRequest {
        prompt: a.prompt,
        negative: a.negative,
        steps: a.steps,
        cfg_scale: a.cfg,
        seed: a.seed,
        width: a.width,
        height: a.height,
        scheduler,
        batch,
        clip_skip: a.clip_skip,
        latents: None,
        preview_every: 0,
    };
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::new(req.steps as u64) };
    bar.set_style(ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed_precise}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let mut on_progress = |p: Progress| {
        bar.set_message(p.stage.name());
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    };
    if a.warm_up {
        pipe.warm_up(&req, &mut on_progress)?;
    }
    let images = pipe.generate(&req, &mut on_progress)?;
    bar.finish_and_clear();
    for (img, path) in images.iter().zip(out_paths(&a.out, images.len())) {
        write_png(&path, img)?;
        println!("wrote {} ({}×{})", path.display(), img.width, img.height);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_outputs_are_numbered() {
        assert_eq!(out_paths(Path::new("a/x.png"), 1), vec![PathBuf::from("a/x.png")]);
        assert_eq!(out_paths(Path::new("a/x.png"), 2), vec![PathBuf::from("a/x-0.png"), PathBuf::from("a/x-1.png")]);
    }

    #[test]
    fn lora_arguments_parse() {
        assert_eq!(parse_lora_arg("a/b.safetensors:0.6").unwrap(), (PathBuf::from("a/b.safetensors"), 0.6));
        assert_eq!(parse_lora_arg("a/b.safetensors").unwrap(), (PathBuf::from("a/b.safetensors"), 0.8));
        assert_eq!(parse_lora_arg("C:/x.safetensors").unwrap(), (PathBuf::from("C:/x.safetensors"), 0.8));
        assert_eq!(parse_lora_arg("x:-1").unwrap(), (PathBuf::from("x"), -1.0));
        assert!(parse_lora_arg("x:NaN").is_err() && parse_lora_arg(":0.5").is_err());
        assert_eq!(parse_masks(&["1,0".into(), "0.5,1".into()], &[0.8, 0.6]).unwrap(), vec![vec![0.8, 0.0], vec![0.4, 0.6]]);
        assert!(parse_masks(&["1".into()], &[0.8, 0.6]).unwrap_err().to_string().contains("1 entries for 2"));
        assert!(parse_masks(&["1,x".into()], &[0.8, 0.6]).is_err());
    }
}
