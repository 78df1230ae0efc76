//! The one remap table: every SD1.5 parameter with its diffusers path, its original (ldm)
//! single-file key and its shape, generated from a config.
//!
//! Sources: diffusers `UNet2DConditionModel` / `AutoencoderKL` module trees and the ldm key layout
//! of the original CompVis checkpoints (the inverse of diffusers'
//! `convert_original_stable_diffusion_to_diffusers`). Model structs use the diffusers names, so a
//! diffusers folder loads by identity and a single file through `ldm`. Rules:
//!
//! | diffusers (model)                               | ldm single file (`model.diffusion_model.` …) |
//! |-------------------------------------------------|----------------------------------------------|
//! | `conv_in`, `time_embedding.linear_{1,2}`         | `input_blocks.0.0`, `time_embed.{0,2}`        |
//! | `down_blocks.i.resnets.j` / `.attentions.j`      | `input_blocks.{3i+j+1}.0` / `.1`              |
//! | `down_blocks.i.downsamplers.0.conv`              | `input_blocks.{3i+3}.0.op`                    |
//! | `mid_block.resnets.j` / `.attentions.0`          | `middle_block.{2j}` / `middle_block.1`        |
//! | `up_blocks.i.resnets.j` / `.attentions.j`        | `output_blocks.{3i+j}.0` / `.1`               |
//! | `up_blocks.i.upsamplers.0.conv`                  | `output_blocks.{3i+2}.{1 or 2}.conv`          |
//! | `conv_norm_out`, `conv_out`                      | `out.0`, `out.2`                              |
//! | resnet `norm1 conv1 time_emb_proj norm2 conv2 conv_shortcut` | `in_layers.0 in_layers.2 emb_layers.1 out_layers.0 out_layers.3 skip_connection` |
//! | VAE `encoder.down_blocks.i.resnets.j`, `.downsamplers.0.conv` | `encoder.down.i.block.j`, `encoder.down.i.downsample.conv` |
//! | VAE `decoder.up_blocks.i.resnets.j`, `.upsamplers.0.conv` | `decoder.up.{3-i}.block.j`, `decoder.up.{3-i}.upsample.conv` |
//! | VAE `mid_block.resnets.{0,1}`, `mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}` | `mid.block_{1,2}`, `mid.attn_1.{norm,q,k,v,proj_out}` (1×1 conv shapes) |
//! | VAE resnet `conv_shortcut`                       | `nin_shortcut`                                |
//! | text `text_model.*`                              | `cond_stage_model.transformer.text_model.*`   |

use serde::{Deserialize, Serialize};

use crate::config::{ClipConfig, SdConfig, UNetConfig, VaeConfig};

/// Which network of the pipeline a parameter belongs to (the diffusers folder's sub-directory;
/// serialized as that name: `unet`, `vae`, `text_encoder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Unet,
    Vae,
    TextEncoder,
}

impl Component {
    /// Directory name in a diffusers folder.
    pub fn dir(self) -> &'static str {
        match self {
            Component::Unet => "unet",
            Component::Vae => "vae",
            Component::TextEncoder => "text_encoder",
        }
    }
    /// Key prefix of this component in an original single-file checkpoint.
    pub fn ldm_prefix(self) -> &'static str {
        match self {
            Component::Unet => "model.diffusion_model.",
            Component::Vae => "first_stage_model.",
            Component::TextEncoder => "cond_stage_model.transformer.",
        }
    }
}

/// One parameter tensor of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub component: Component,
    /// Path in the model and in diffusers files (text encoder: with the `text_model.` prefix).
    pub path: String,
    /// Full key in an original single-file checkpoint.
    pub ldm_key: String,
    /// Shape in the model (diffusers convention).
    pub shape: Vec<usize>,
    /// Shape in the single file when it differs (VAE attention stored as 1×1 convs).
    pub ldm_shape: Option<Vec<usize>>,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Collects parameters; `module` adds `.weight`/`.bias` pairs.
struct Builder {
    component: Component,
    out: Vec<ParamSpec>,
}

impl Builder {
    fn param(&mut self, path: String, ldm: String, shape: Vec<usize>, ldm_shape: Option<Vec<usize>>) {
        let ldm_key = format!("{}{}", self.component.ldm_prefix(), ldm);
        self.out.push(ParamSpec { component: self.component, path, ldm_key, shape, ldm_shape });
    }
    /// weight (given shape) + bias [shape[0]] when `bias`.
    fn module(&mut self, path: &str, ldm: &str, shape: &[usize], bias: bool) {
        self.param(format!("{path}.weight"), format!("{ldm}.weight"), shape.to_vec(), None);
        if bias {
            self.param(format!("{path}.bias"), format!("{ldm}.bias"), vec![shape[0]], None);
        }
    }
    fn norm(&mut self, path: &str, ldm: &str, c: usize) {
        self.module(path, ldm, &[c], true);
    }
    fn conv(&mut self, path: &str, ldm: &str, o: usize, i: usize, k: usize) {
        self.module(path, ldm, &[o, i, k, k], true);
    }
}

/// Every parameter of the SD1.5 pipeline for `cfg`, in a fixed order.
pub fn sd_params(cfg: &SdConfig) -> Vec<ParamSpec> {
    let mut v = unet_params(&cfg.unet);
    v.extend(vae_params(&cfg.vae));
    v.extend(clip_params(&cfg.text));
    v
}

fn unet_resnet(b: &mut Builder, p: &str, l: &str, cin: usize, cout: usize, temb: usize) {
    b.norm(&format!("{p}.norm1"), &format!("{l}.in_layers.0"), cin);
    b.conv(&format!("{p}.conv1"), &format!("{l}.in_layers.2"), cout, cin, 3);
    b.module(&format!("{p}.time_emb_proj"), &format!("{l}.emb_layers.1"), &[cout, temb], true);
    b.norm(&format!("{p}.norm2"), &format!("{l}.out_layers.0"), cout);
    b.conv(&format!("{p}.conv2"), &format!("{l}.out_layers.3"), cout, cout, 3);
    if cin != cout {
        b.conv(&format!("{p}.conv_shortcut"), &format!("{l}.skip_connection"), cout, cin, 1);
    }
}

/// Transformer2DModel with one BasicTransformerBlock; names are identical on both sides.
fn unet_transformer(b: &mut Builder, p: &str, l: &str, c: usize, ctx: usize) {
    let both = |s: &str| (format!("{p}.{s}"), format!("{l}.{s}"));
    let (pp, ll) = both("norm");
    b.norm(&pp, &ll, c);
    let (pp, ll) = both("proj_in");
    b.conv(&pp, &ll, c, c, 1);
    let t = "transformer_blocks.0";
    for (attn, kv) in [("attn1", c), ("attn2", ctx)] {
        for (name, din) in [("to_q", c), ("to_k", kv), ("to_v", kv)] {
            let (pp, ll) = both(&format!("{t}.{attn}.{name}"));
            b.module(&pp, &ll, &[c, din], false);
        }
        let (pp, ll) = both(&format!("{t}.{attn}.to_out.0"));
        b.module(&pp, &ll, &[c, c], true);
    }
    for n in ["norm1", "norm2", "norm3"] {
        let (pp, ll) = both(&format!("{t}.{n}"));
        b.norm(&pp, &ll, c);
    }
    let (pp, ll) = both(&format!("{t}.ff.net.0.proj"));
    b.module(&pp, &ll, &[8 * c, c], true); // GEGLU: 2 × 4C
    let (pp, ll) = both(&format!("{t}.ff.net.2"));
    b.module(&pp, &ll, &[c, 4 * c], true);
    let (pp, ll) = both("proj_out");
    b.conv(&pp, &ll, c, c, 1);
}

fn unet_params(cfg: &UNetConfig) -> Vec<ParamSpec> {
    let mut b = Builder { component: Component::Unet, out: Vec::new() };
    let ch = &cfg.block_out_channels;
    let n = ch.len();
    let lpb = cfg.layers_per_block;
    let temb = 4 * ch[0];
    let ctx = cfg.cross_attention_dim;
    let has_attn = |level: usize| level + 1 < n; // CrossAttn blocks everywhere but the deepest level
    b.conv("conv_in", "input_blocks.0.0", ch[0], cfg.in_channels, 3);
    b.module("time_embedding.linear_1", "time_embed.0", &[temb, ch[0]], true);
    b.module("time_embedding.linear_2", "time_embed.2", &[temb, temb], true);

    let mut cin = ch[0];
    for (i, &cout) in ch.iter().enumerate() {
        for j in 0..lpb {
            let idx = (lpb + 1) * i + j + 1;
            let rin = if j == 0 { cin } else { cout };
            unet_resnet(&mut b, &format!("down_blocks.{i}.resnets.{j}"), &format!("input_blocks.{idx}.0"), rin, cout, temb);
            if has_attn(i) {
                unet_transformer(&mut b, &format!("down_blocks.{i}.attentions.{j}"), &format!("input_blocks.{idx}.1"), cout, ctx);
            }
        }
        if i + 1 < n {
            let idx = (lpb + 1) * (i + 1);
            b.conv(&format!("down_blocks.{i}.downsamplers.0.conv"), &format!("input_blocks.{idx}.0.op"), cout, cout, 3);
        }
        cin = cout;
    }

    let cm = ch[n - 1];
    unet_resnet(&mut b, "mid_block.resnets.0", "middle_block.0", cm, cm, temb);
    unet_transformer(&mut b, "mid_block.attentions.0", "middle_block.1", cm, ctx);
    unet_resnet(&mut b, "mid_block.resnets.1", "middle_block.2", cm, cm, temb);

    let rev: Vec<usize> = ch.iter().rev().copied().collect();
    let mut prev = rev[0];
    for (i, &cout) in rev.iter().enumerate() {
        let skip_in = rev[(i + 1).min(n - 1)];
        let attn = i > 0; // UpBlock2D first, then CrossAttnUpBlock2D
        for j in 0..=lpb {
            let idx = (lpb + 1) * i + j;
            let res_skip = if j == lpb { skip_in } else { cout };
            let rin = if j == 0 { prev } else { cout };
            unet_resnet(&mut b, &format!("up_blocks.{i}.resnets.{j}"), &format!("output_blocks.{idx}.0"), rin + res_skip, cout, temb);
            if attn {
                unet_transformer(&mut b, &format!("up_blocks.{i}.attentions.{j}"), &format!("output_blocks.{idx}.1"), cout, ctx);
            }
        }
        if i + 1 < n {
            let idx = (lpb + 1) * i + lpb;
            let sub = if attn { 2 } else { 1 };
            b.conv(&format!("up_blocks.{i}.upsamplers.0.conv"), &format!("output_blocks.{idx}.{sub}.conv"), cout, cout, 3);
        }
        prev = cout;
    }
    b.norm("conv_norm_out", "out.0", ch[0]);
    b.conv("conv_out", "out.2", cfg.out_channels, ch[0], 3);
    b.out
}

fn vae_resnet(b: &mut Builder, p: &str, l: &str, cin: usize, cout: usize) {
    b.norm(&format!("{p}.norm1"), &format!("{l}.norm1"), cin);
    b.conv(&format!("{p}.conv1"), &format!("{l}.conv1"), cout, cin, 3);
    b.norm(&format!("{p}.norm2"), &format!("{l}.norm2"), cout);
    b.conv(&format!("{p}.conv2"), &format!("{l}.conv2"), cout, cout, 3);
    if cin != cout {
        b.conv(&format!("{p}.conv_shortcut"), &format!("{l}.nin_shortcut"), cout, cin, 1);
    }
}

fn vae_mid(b: &mut Builder, side: &str, c: usize) {
    vae_resnet(b, &format!("{side}.mid_block.resnets.0"), &format!("{side}.mid.block_1"), c, c);
    let a = format!("{side}.mid_block.attentions.0");
    let l = format!("{side}.mid.attn_1");
    b.norm(&format!("{a}.group_norm"), &format!("{l}.norm"), c);
    for (d, o) in [("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")] {
        b.param(format!("{a}.{d}.weight"), format!("{l}.{o}.weight"), vec![c, c], Some(vec![c, c, 1, 1]));
        b.param(format!("{a}.{d}.bias"), format!("{l}.{o}.bias"), vec![c], None);
    }
    vae_resnet(b, &format!("{side}.mid_block.resnets.1"), &format!("{side}.mid.block_2"), c, c);
}

fn vae_params(cfg: &VaeConfig) -> Vec<ParamSpec> {
    let mut b = Builder { component: Component::Vae, out: Vec::new() };
    let ch = &cfg.block_out_channels;
    let n = ch.len();
    let lpb = cfg.layers_per_block;
    let lat = cfg.latent_channels;
    // encoder
    b.conv("encoder.conv_in", "encoder.conv_in", ch[0], cfg.in_channels, 3);
    let mut cin = ch[0];
    for (i, &cout) in ch.iter().enumerate() {
        for j in 0..lpb {
            let rin = if j == 0 { cin } else { cout };
            vae_resnet(&mut b, &format!("encoder.down_blocks.{i}.resnets.{j}"), &format!("encoder.down.{i}.block.{j}"), rin, cout);
        }
        if i + 1 < n {
            b.conv(&format!("encoder.down_blocks.{i}.downsamplers.0.conv"), &format!("encoder.down.{i}.downsample.conv"), cout, cout, 3);
        }
        cin = cout;
    }
    vae_mid(&mut b, "encoder", ch[n - 1]);
    b.norm("encoder.conv_norm_out", "encoder.norm_out", ch[n - 1]);
    b.conv("encoder.conv_out", "encoder.conv_out", 2 * lat, ch[n - 1], 3);
    b.conv("quant_conv", "quant_conv", 2 * lat, 2 * lat, 1);
    // decoder
    b.conv("post_quant_conv", "post_quant_conv", lat, lat, 1);
    b.conv("decoder.conv_in", "decoder.conv_in", ch[n - 1], lat, 3);
    vae_mid(&mut b, "decoder", ch[n - 1]);
    let rev: Vec<usize> = ch.iter().rev().copied().collect();
    let mut prev = rev[0];
    for (i, &cout) in rev.iter().enumerate() {
        let li = n - 1 - i; // ldm numbers decoder levels in reverse
        for j in 0..=lpb {
            let rin = if j == 0 { prev } else { cout };
            vae_resnet(&mut b, &format!("decoder.up_blocks.{i}.resnets.{j}"), &format!("decoder.up.{li}.block.{j}"), rin, cout);
        }
        if i + 1 < n {
            b.conv(&format!("decoder.up_blocks.{i}.upsamplers.0.conv"), &format!("decoder.up.{li}.upsample.conv"), cout, cout, 3);
        }
        prev = cout;
    }
    b.norm("decoder.conv_norm_out", "decoder.norm_out", ch[0]);
    b.conv("decoder.conv_out", "decoder.conv_out", cfg.in_channels, ch[0], 3);
    b.out
}

fn clip_params(cfg: &ClipConfig) -> Vec<ParamSpec> {
    let mut b = Builder { component: Component::TextEncoder, out: Vec::new() };
    let h = cfg.hidden_size;
    let same = |b: &mut Builder, p: &str, shape: &[usize], bias: bool| {
        let p = format!("text_model.{p}");
        b.module(&p, &p, shape, bias)
    };
    same(&mut b, "embeddings.token_embedding", &[cfg.vocab_size, h], false);
    same(&mut b, "embeddings.position_embedding", &[cfg.max_position_embeddings, h], false);
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layers.{l}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            same(&mut b, &format!("{p}.self_attn.{proj}"), &[h, h], true);
        }
        same(&mut b, &format!("{p}.layer_norm1"), &[h], true);
        same(&mut b, &format!("{p}.mlp.fc1"), &[cfg.intermediate_size, h], true);
        same(&mut b, &format!("{p}.mlp.fc2"), &[h, cfg.intermediate_size], true);
        same(&mut b, &format!("{p}.layer_norm2"), &[h], true);
    }
    same(&mut b, "final_layer_norm", &[h], true);
    b.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn count(c: Component, cfg: &SdConfig) -> usize {
        sd_params(cfg).iter().filter(|p| p.component == c).map(ParamSpec::numel).sum()
    }

    /// Parameter counts of the real SD1.5 networks (diffusers / torch `numel`, see NOTES §4).
    #[test]
    fn v1_5_parameter_counts_match_the_real_model() {
        let cfg = SdConfig::v1_5();
        assert_eq!(count(Component::Unet, &cfg), 859_520_964);
        assert_eq!(count(Component::Vae, &cfg), 83_653_863);
        assert_eq!(count(Component::TextEncoder, &cfg), 123_060_480);
    }

    #[test]
    fn v1_5_key_counts_and_uniqueness() {
        let params = sd_params(&SdConfig::v1_5());
        let paths: HashSet<_> = params.iter().map(|p| (p.component, p.path.as_str())).collect();
        let ldm: HashSet<_> = params.iter().map(|p| p.ldm_key.as_str()).collect();
        assert_eq!(paths.len(), params.len());
        assert_eq!(ldm.len(), params.len());
        // 686 UNet + 248 VAE + 196 CLIP tensors in SD1.5 checkpoints (without buffers).
        let n = |c| params.iter().filter(|p| p.component == c).count();
        assert_eq!((n(Component::Unet), n(Component::Vae), n(Component::TextEncoder)), (686, 248, 196));
    }

    #[test]
    fn spot_check_known_sd15_keys() {
        let params = sd_params(&SdConfig::v1_5());
        let find = |path: &str| params.iter().find(|p| p.path == path).unwrap();
        let p = find("up_blocks.1.upsamplers.0.conv.weight");
        assert_eq!(p.ldm_key, "model.diffusion_model.output_blocks.5.2.conv.weight");
        let p = find("up_blocks.0.upsamplers.0.conv.weight");
        assert_eq!(p.ldm_key, "model.diffusion_model.output_blocks.2.1.conv.weight");
        let p = find("down_blocks.1.resnets.0.conv_shortcut.weight");
        assert_eq!(p.ldm_key, "model.diffusion_model.input_blocks.4.0.skip_connection.weight");
        assert_eq!(p.shape, vec![640, 320, 1, 1]);
        let p = find("up_blocks.3.resnets.2.conv1.weight");
        assert_eq!(p.ldm_key, "model.diffusion_model.output_blocks.11.0.in_layers.2.weight");
        assert_eq!(p.shape, vec![320, 640, 3, 3]);
        let p = find("decoder.up_blocks.0.resnets.0.conv1.weight");
        assert_eq!(p.ldm_key, "first_stage_model.decoder.up.3.block.0.conv1.weight");
        let p = find("encoder.mid_block.attentions.0.to_out.0.weight");
        assert_eq!(p.ldm_key, "first_stage_model.encoder.mid.attn_1.proj_out.weight");
        assert_eq!(p.ldm_shape, Some(vec![512, 512, 1, 1]));
        let p = find("text_model.encoder.layers.11.mlp.fc2.weight");
        assert_eq!(p.ldm_key, "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight");
    }
}
