//! `stylus lora inspect FILE`: reports a LoRA file (format, ranks, alphas, modules, dtype, size,
//! base-model guess with the evidence, kohya `ss_*` metadata and top caption tags, unmatched keys)
//! through `stylus_lora::inspect`; formats and rules per NOTES §5.3. Exits 1 when the file does not
//! fit the chosen SD1.5 model (the report is printed first).

use std::path::PathBuf;

use anyhow::{bail, Context};
use stylus_lora::{inspect, verify_sha256, Inspection, ModuleTable};
use stylus_sd::SdConfig;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Report a LoRA file and check it against the SD1.5 module table.
    Inspect(InspectArgs),
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A LoRA `.safetensors` file (kohya/A1111, LoCon, LyCORIS LoHa/LoKr, diffusers/PEFT).
    file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Architecture preset: `sd15` (default) or `tiny` (the test fixture).
    #[arg(long, default_value = "sd15")]
    config: String,
    /// Also verify the file's sha256 (hex, any case, as catalogs publish it).
    #[arg(long)]
    sha256: Option<String>,
}

pub fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Inspect(a) => inspect_cmd(a),
    }
}

fn inspect_cmd(a: InspectArgs) -> anyhow::Result<()> {
    let cfg = match a.config.as_str() {
        "sd15" | "v1_5" => SdConfig::v1_5(),
        "tiny" => SdConfig::tiny(),
        other => bail!("unknown config `{other}` (expected sd15 or tiny)"),
    };
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    if let Some(hex) = &a.sha256 {
        verify_sha256(&bytes, hex).with_context(|| a.file.display().to_string())?;
    }
    let table = ModuleTable::new(&cfg)?;
    let report = inspect(&bytes, &table).with_context(|| a.file.display().to_string())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&a, &report);
    }
    match &report.error {
        Some(e) => bail!("{}: {e}", a.file.display()),
        None => Ok(()),
    }
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn print_text(a: &InspectArgs, r: &Inspection) {
    println!("file: {} ({} bytes, {} tensors, dtype {})", a.file.display(), r.bytes, r.tensors, r.dtypes.join("/"));
    println!("format: {}", r.format.map_or("unknown".to_string(), |f| f.to_string()));
    println!("base model: {} ({})", r.base.family, r.base.reason);
    if let Some(s) = &r.summary {
        if s.formats.len() > 1 {
            println!("formats: {}", join(&s.formats));
        }
        println!(
            "modules: {} UNet + {} text encoder ({} conv, {} of them k×k; {} Tucker)",
            s.unet_modules, s.text_encoder_modules, s.conv_modules, s.conv3x3_modules, s.tucker_modules
        );
        println!("rank: {}", join(&s.ranks));
        println!("alpha: {}", join(&s.alphas));
        println!("unmatched keys: {}", s.unmatched.len());
        for u in s.unmatched.iter().take(20) {
            println!("  {} ({})", u.key, u.reason);
        }
        if s.unmatched.len() > 20 {
            println!("  … {} more", s.unmatched.len() - 20);
        }
    }
    if let Some(k) = &r.kohya {
        let fields = [
            ("ss_output_name", &k.output_name),
            ("ss_sd_model_name", &k.sd_model_name),
            ("ss_base_model_version", &k.base_model_version),
            ("ss_network_module", &k.network_module),
            ("ss_network_dim", &k.network_dim),
            ("ss_network_alpha", &k.network_alpha),
            ("ss_network_args", &k.network_args),
            ("ss_num_train_images", &k.num_train_images),
        ];
        for (name, v) in fields {
            if let Some(v) = v {
                println!("{name}: {v}");
            }
        }
        if !k.top_tags.is_empty() {
            let tags: Vec<String> = k.top_tags.iter().map(|(t, n)| format!("{t} ({n})")).collect();
            println!("top tags ({} distinct): {}", k.distinct_tags, tags.join(", "));
        }
    }
    if a.sha256.is_some() {
        println!("sha256: OK");
    }
}
