//! One module's adapter: checks the tensors of a LoRA/LoCon, LoHa or LoKr module against the
//! target weight's shape and derives rank, alpha and scale (NOTES §5.3: r = `lora_down.shape[0]`
//! (PEFT `lora_A.shape[0]`), alpha missing ⇒ r, PEFT rsLoRA ⇒ alpha/√r; LoHa r = `hada_w1_b.shape[0]`;
//! LoKr r = the factorised side's rank, both sides full ⇒ scale 1 whatever alpha says —
//! kohya-ss `networks/lora.py`, LyCORIS `functional/{loha,lokr}.py`, A1111 `network_*.py`).

use std::collections::BTreeMap;

use crate::delta::{Factors, Side};
use crate::family::shape_mismatch;
use crate::keys::Part;
use crate::peft::PeftConfig;
use crate::table::{ModuleKey, ModuleTable};
use crate::tensor::{Core, Mat, Tensor};
use crate::{Error, MAX_RANK};

/// Which adapter algorithm a module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum AdapterKind {
    /// Low-rank `up @ down` on a linear or 1×1 conv module.
    Lora,
    /// Low-rank on a k×k conv (kohya LoCon; optionally with a Tucker `lora_mid`).
    LoCon,
    /// LyCORIS Hadamard product.
    LoHa,
    /// LyCORIS Kronecker product.
    LoKr,
}

/// Low-rank factors for run-time application: `ΔW·x = scale · up (down x)`.
/// `down` is `[r, in]` for a linear module and `[r, in, kh, kw]` for a conv module (a real conv with
/// the base conv's stride and padding); `up` is `[out, r]` (a 1×1 conv for conv modules).
#[derive(Debug, Clone, PartialEq)]
pub struct LowRank {
    pub up: Tensor,
    pub down: Tensor,
    /// alpha / r (or alpha / √r with rsLoRA); multiply by the adapter weight.
    pub scale: f32,
}

/// A validated adapter for one module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleAdapter {
    pub kind: AdapterKind,
    /// Shape of the target weight (and of ΔW).
    pub target_shape: Vec<usize>,
    /// Rank used for the scale; `None` for a LoKr with both sides full (scale 1).
    pub rank: Option<usize>,
    /// Alpha as stored (tensor or PEFT metadata); `None` when absent (alpha = r).
    pub alpha: Option<f32>,
    /// The factor applied to the raw product (alpha/r, alpha/√r or 1).
    pub scale: f64,
    /// Tucker-decomposed conv (LoCon `lora_mid`, LoHa `hada_t*`, LoKr `lokr_t2`).
    pub tucker: bool,
    /// The file's tensor keys this adapter was built from.
    pub keys: Vec<String>,
    pub(crate) factors: Factors,
}

impl ModuleAdapter {
    /// `weight · scale · ΔW_raw`, shaped like the target weight.
    pub fn delta(&self, weight: f32) -> Tensor {
        let f = (self.scale * f64::from(weight)) as f32;
        let data = self.factors.raw_delta().into_iter().map(|v| v * f).collect();
        Tensor { shape: self.target_shape.clone(), data }
    }

    /// Factors for a low-rank run-time path (plain LoRA / LoCon only).
    pub fn low_rank(&self) -> Option<LowRank> {
        let Factors::Lora(Side::Product(up, down)) = &self.factors else { return None };
        let mut down_shape = vec![down.rows];
        down_shape.extend(self.target_shape.get(1..).unwrap_or(&[]));
        Some(LowRank {
            up: Tensor { shape: vec![up.rows, up.cols], data: up.data.clone() },
            down: Tensor { shape: down_shape, data: down.data.clone() },
            scale: self.scale as f32,
        })
    }
}

/// The tensors of one module, by part, with their keys.
pub(crate) type Parts = BTreeMap<Part, (String, Tensor)>;

/// What the builder needs to know about the module.
pub(crate) struct Ctx<'a> {
    pub table: &'a ModuleTable,
    pub module: &'a ModuleKey,
    pub target: &'a [usize],
    /// PEFT config of the module's component (dotted spellings only).
    pub peft: Option<&'a PeftConfig>,
}

/// Target dims: out, in, kh, kw (1×1 for linear), conv?
#[derive(Clone, Copy)]
struct Dims {
    out: usize,
    inn: usize,
    kh: usize,
    kw: usize,
    conv: bool,
}

impl Dims {
    fn k(&self) -> usize {
        self.kh * self.kw
    }
    fn cols(&self) -> usize {
        self.inn * self.k()
    }
}

impl Ctx<'_> {
    fn incomplete(&self, detail: String) -> Error {
        Error::IncompleteModule { module: self.module.to_string(), detail }
    }
    fn mismatch(&self, in_width: Option<usize>, linear_on_conv: bool, detail: String) -> Error {
        shape_mismatch(self.table, self.module, in_width, linear_on_conv, detail)
    }
    fn need(&self, parts: &mut Parts, p: Part, name: &str) -> Result<(String, Tensor), Error> {
        parts.remove(&p).ok_or_else(|| self.incomplete(format!("`{name}` is missing")))
    }
    fn rank(&self, r: usize) -> Result<usize, Error> {
        if (1..=MAX_RANK).contains(&r) {
            Ok(r)
        } else {
            Err(Error::BadRank { module: self.module.to_string(), rank: r })
        }
    }
}

fn bad_shape(key: &str, t: &Tensor, expected: &str) -> String {
    format!("`{key}` has shape {:?}, expected {expected}", t.shape)
}

/// `[rows, cols]` matrix from a tensor whose shape was checked.
fn mat(t: Tensor, rows: usize, cols: usize) -> Mat {
    Mat { rows, cols, data: t.data }
}

/// Builds the adapter; `Ok(None)` when the module has only an alpha (nothing to apply).
pub(crate) fn build(ctx: &Ctx<'_>, mut parts: Parts) -> Result<Option<ModuleAdapter>, Error> {
    let dims = match *ctx.target {
        [out, inn] => Dims { out, inn, kh: 1, kw: 1, conv: false },
        [out, inn, kh, kw] => Dims { out, inn, kh, kw, conv: true },
        _ => return Err(ctx.mismatch(None, false, format!("unsupported target shape {:?}", ctx.target))),
    };
    let keys: Vec<String> = parts.values().map(|(k, _)| k.clone()).collect();
    let has = |ps: &[Part]| ps.iter().any(|p| parts.contains_key(p));
    let lora = has(&[Part::Down, Part::Up, Part::Mid]);
    let loha = has(&[Part::HadaW1A, Part::HadaW1B, Part::HadaW2A, Part::HadaW2B, Part::HadaT1, Part::HadaT2]);
    let lokr = has(&[Part::LokrW1, Part::LokrW1A, Part::LokrW1B, Part::LokrW2, Part::LokrW2A, Part::LokrW2B, Part::LokrT2]);
    if usize::from(lora) + usize::from(loha) + usize::from(lokr) > 1 {
        return Err(Error::ConflictingKeys { module: ctx.module.to_string(), keys });
    }
    let alpha = match parts.remove(&Part::Alpha) {
        Some((k, t)) => match t.data.as_slice() {
            [v] => Some(*v),
            _ => return Err(ctx.mismatch(None, false, bad_shape(&k, &t, "a scalar"))),
        },
        None => None,
    };
    let (kind, factors, rank, alpha, scale) = if lora {
        build_lora(ctx, dims, &mut parts, alpha)?
    } else if loha {
        build_loha(ctx, dims, &mut parts, alpha)?
    } else if lokr {
        build_lokr(ctx, dims, &mut parts, alpha)?
    } else {
        return Ok(None);
    };
    if !parts.is_empty() {
        return Err(Error::ConflictingKeys { module: ctx.module.to_string(), keys });
    }
    let tucker = matches!(&factors, Factors::Lora(Side::Tucker { .. }) | Factors::LoHa(Side::Tucker { .. }, _))
        || matches!(&factors, Factors::LoKr(_, Side::Tucker { .. }));
    Ok(Some(ModuleAdapter { kind, target_shape: ctx.target.to_vec(), rank, alpha, scale, tucker, keys, factors }))
}

type Built = (AdapterKind, Factors, Option<usize>, Option<f32>, f64);

fn build_lora(ctx: &Ctx<'_>, d: Dims, parts: &mut Parts, alpha: Option<f32>) -> Result<Built, Error> {
    let (dk, down) = ctx.need(parts, Part::Down, "lora_down / lora_A")?;
    let (uk, up) = ctx.need(parts, Part::Up, "lora_up / lora_B")?;
    let mid = parts.remove(&Part::Mid);
    let in_width = down.shape.get(1).copied();
    let linear_on_conv = d.conv && down.shape.len() == 2;
    let r = ctx.rank(down.shape.first().copied().unwrap_or(0))?;
    let kind = if d.k() > 1 { AdapterKind::LoCon } else { AdapterKind::Lora };
    let side = match mid {
        None => {
            let want = if d.conv { vec![r, d.inn, d.kh, d.kw] } else { vec![r, d.inn] };
            if down.shape != want {
                return Err(ctx.mismatch(in_width, linear_on_conv, bad_shape(&dk, &down, &format!("{want:?}"))));
            }
            let want_up = if d.conv { vec![d.out, r, 1, 1] } else { vec![d.out, r] };
            if up.shape != want_up {
                let lin = d.conv && up.shape.len() == 2;
                return Err(ctx.mismatch(None, lin, bad_shape(&uk, &up, &format!("{want_up:?}"))));
            }
            Side::Product(mat(up, d.out, r), mat(down, r, d.cols()))
        }
        Some((mk, mid)) => {
            // kohya LoCon Tucker: down [r, in, 1, 1], mid [r_u, r, kh, kw], up [out, r_u, 1, 1]
            let want = vec![r, d.inn, 1, 1];
            if !d.conv || down.shape != want {
                return Err(ctx.mismatch(in_width, linear_on_conv, bad_shape(&dk, &down, &format!("{want:?} with lora_mid"))));
            }
            let ru = ctx.rank(mid.shape.first().copied().unwrap_or(0))?;
            let want_mid = vec![ru, r, d.kh, d.kw];
            if mid.shape != want_mid {
                return Err(ctx.mismatch(None, false, bad_shape(&mk, &mid, &format!("{want_mid:?}"))));
            }
            let want_up = vec![d.out, ru, 1, 1];
            if up.shape != want_up {
                return Err(ctx.mismatch(None, false, bad_shape(&uk, &up, &format!("{want_up:?}"))));
            }
            let t = Core { r1: ru, r2: r, k: d.k(), data: mid.data };
            Side::Tucker { t, a: mat(up, d.out, ru).transposed(), b: mat(down, r, d.inn) }
        }
    };
    let (alpha, scale) = lora_scale(ctx, r, alpha)?;
    Ok((kind, Factors::Lora(side), Some(r), alpha, scale))
}

/// Alpha and scale of a LoRA module, with PEFT metadata for dotted files.
fn lora_scale(ctx: &Ctx<'_>, r: usize, alpha: Option<f32>) -> Result<(Option<f32>, f64), Error> {
    let mut alpha = alpha.map(f64::from);
    let mut rslora = false;
    if let Some(cfg) = ctx.peft {
        let (declared_r, declared_alpha) = cfg.resolve(&ctx.module.path);
        if let Some(dr) = declared_r {
            if dr != r as f64 {
                return Err(Error::BadMetadata(format!("`{}`: metadata says rank {dr}, tensors have rank {r}", ctx.module)));
            }
        }
        alpha = alpha.or(declared_alpha);
        rslora = cfg.rslora;
    }
    let a = alpha.unwrap_or(r as f64);
    let denom = if rslora { (r as f64).sqrt() } else { r as f64 };
    Ok((alpha.map(|v| v as f32), a / denom))
}

/// `a @ b` with a `[rows, r]` and b `[r, cols]` (b may be `[r, x, kh, kw]` with x·kh·kw = cols).
fn product(ctx: &Ctx<'_>, d: Dims, a: (String, Tensor), b: (String, Tensor), rows: usize, cols: usize) -> Result<(Side, usize), Error> {
    let ((ak, a), (bk, b)) = (a, b);
    let r = match a.shape.as_slice() {
        [ar, r] if *ar == rows => ctx.rank(*r)?,
        _ => return Err(ctx.mismatch(None, false, bad_shape(&ak, &a, &format!("[{rows}, r]")))),
    };
    let ok = match b.shape.as_slice() {
        [br, c] => *br == r && *c == cols,
        [br, x, kh, kw] => *br == r && d.conv && [*kh, *kw] == [d.kh, d.kw] && x.checked_mul(d.k()) == Some(cols),
        _ => false,
    };
    if !ok {
        let hint = if rows == d.out && cols == d.cols() { b.shape.get(1).copied() } else { None };
        return Err(ctx.mismatch(hint, false, bad_shape(&bk, &b, &format!("[{r}, {cols}]"))));
    }
    Ok((Side::Product(mat(a, rows, r), mat(b, r, cols)), r))
}

/// Tucker side: core `[r1, r2, kh, kw]`, a `[r1, p]`, b `[r2, q]` → `[p, q·kh·kw]`. Returns r2.
fn tucker(ctx: &Ctx<'_>, d: Dims, t: (String, Tensor), a: (String, Tensor), b: (String, Tensor), p: usize, q: usize) -> Result<(Side, usize), Error> {
    let ((tk, t), (ak, a), (bk, b)) = (t, a, b);
    let (r1, r2) = match t.shape.as_slice() {
        [r1, r2, kh, kw] if d.conv && [*kh, *kw] == [d.kh, d.kw] => (ctx.rank(*r1)?, ctx.rank(*r2)?),
        _ => return Err(ctx.mismatch(None, false, bad_shape(&tk, &t, &format!("[r, r, {}, {}] on a conv module", d.kh, d.kw)))),
    };
    if a.shape != [r1, p] {
        return Err(ctx.mismatch(None, false, bad_shape(&ak, &a, &format!("[{r1}, {p}]"))));
    }
    if b.shape != [r2, q] {
        return Err(ctx.mismatch(None, false, bad_shape(&bk, &b, &format!("[{r2}, {q}]"))));
    }
    let core = Core { r1, r2, k: d.k(), data: t.data };
    Ok((Side::Tucker { t: core, a: mat(a, r1, p), b: mat(b, r2, q) }, r2))
}

fn build_loha(ctx: &Ctx<'_>, d: Dims, parts: &mut Parts, alpha: Option<f32>) -> Result<Built, Error> {
    let w1a = ctx.need(parts, Part::HadaW1A, "hada_w1_a")?;
    let w1b = ctx.need(parts, Part::HadaW1B, "hada_w1_b")?;
    let w2a = ctx.need(parts, Part::HadaW2A, "hada_w2_a")?;
    let w2b = ctx.need(parts, Part::HadaW2B, "hada_w2_b")?;
    let (s1, s2, r) = match (parts.remove(&Part::HadaT1), parts.remove(&Part::HadaT2)) {
        (None, None) => {
            let (s1, r) = product(ctx, d, w1a, w1b, d.out, d.cols())?;
            let (s2, _) = product(ctx, d, w2a, w2b, d.out, d.cols())?;
            (s1, s2, r)
        }
        (Some(t1), Some(t2)) => {
            let (s1, r) = tucker(ctx, d, t1, w1a, w1b, d.out, d.inn)?;
            let (s2, _) = tucker(ctx, d, t2, w2a, w2b, d.out, d.inn)?;
            (s1, s2, r)
        }
        _ => return Err(ctx.incomplete("`hada_t1` and `hada_t2` must come together".into())),
    };
    let a = alpha.map_or(r as f64, f64::from);
    Ok((AdapterKind::LoHa, Factors::LoHa(s1, s2), Some(r), alpha, a / r as f64))
}

fn build_lokr(ctx: &Ctx<'_>, d: Dims, parts: &mut Parts, alpha: Option<f32>) -> Result<Built, Error> {
    let conflict = |ps: &[Part]| ps.iter().all(|p| parts.contains_key(p));
    if conflict(&[Part::LokrW1, Part::LokrW1A]) || conflict(&[Part::LokrW2, Part::LokrW2A]) || conflict(&[Part::LokrW2, Part::LokrT2]) {
        let keys = parts.values().map(|(k, _)| k.clone()).collect();
        return Err(Error::ConflictingKeys { module: ctx.module.to_string(), keys });
    }
    // w1: full [a1, b1] or w1_a [a1, r] @ w1_b [r, b1]
    let (w1, r1) = if let Some((k, t)) = parts.remove(&Part::LokrW1) {
        match t.shape.as_slice() {
            &[a1, b1] if a1 > 0 && b1 > 0 => (Side::Full(mat(t, a1, b1)), None),
            _ => return Err(ctx.mismatch(None, false, bad_shape(&k, &t, "a non-empty 2-D matrix"))),
        }
    } else {
        let a = ctx.need(parts, Part::LokrW1A, "lokr_w1 or lokr_w1_a")?;
        let b = ctx.need(parts, Part::LokrW1B, "lokr_w1_b")?;
        let rows = a.1.shape.first().copied().unwrap_or(0);
        let cols = b.1.shape.get(1).copied().filter(|_| b.1.shape.len() == 2).unwrap_or(0);
        let (s, r) = product(ctx, Dims { conv: false, ..d }, a, b, rows, cols)?;
        (s, Some(r))
    };
    let (a1, b1) = w1.dims();
    let k = d.k();
    let cols = d.cols();
    if a1 == 0 || b1 == 0 || !d.out.is_multiple_of(a1) || !cols.is_multiple_of(b1) || !(cols / b1).is_multiple_of(k) {
        let detail = format!("lokr_w1 is [{a1}, {b1}], which does not divide the weight {:?}", ctx.target);
        return Err(ctx.mismatch(None, false, detail));
    }
    let (c, x) = (d.out / a1, cols / b1);
    // w2: full [c, x] / [c, x/k, kh, kw], Tucker, or w2_a [c, r] @ w2_b [r, x]
    let (w2, r2) = if let Some((key, t)) = parts.remove(&Part::LokrW2) {
        let ok = match t.shape.as_slice() {
            [tc, tx] => *tc == c && *tx == x,
            [tc, td, kh, kw] => *tc == c && d.conv && [*kh, *kw] == [d.kh, d.kw] && td.checked_mul(k) == Some(x),
            _ => false,
        };
        if !ok {
            return Err(ctx.mismatch(None, false, bad_shape(&key, &t, &format!("[{c}, {x}]"))));
        }
        (Side::Full(mat(t, c, x)), None)
    } else {
        let a = ctx.need(parts, Part::LokrW2A, "lokr_w2 or lokr_w2_a")?;
        let b = ctx.need(parts, Part::LokrW2B, "lokr_w2_b")?;
        let (s, r) = match parts.remove(&Part::LokrT2) {
            Some(t) => tucker(ctx, d, t, a, b, c, x / k)?,
            None => product(ctx, d, a, b, c, x)?,
        };
        (s, Some(r))
    };
    // LyCORIS: r of the factorised side (w1 first); both full ⇒ scale 1 (stored alpha ignored).
    let rank = r1.or(r2);
    let scale = match rank {
        Some(r) => alpha.map_or(r as f64, f64::from) / r as f64,
        None => 1.0,
    };
    Ok((AdapterKind::LoKr, Factors::LoKr(w1, w2), rank, alpha, scale))
}
