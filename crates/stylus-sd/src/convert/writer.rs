//! The streaming writer of converted models: tensors go in one at a time, finished shards come out
//! through the caller's callback (which writes and drops them), so memory is one shard buffer plus
//! a few 64 KiB scratch buffers (one q8 row); the manifest is returned at the end.

use std::collections::HashSet;
use std::fmt::Display;
use std::ops::Range;

use safetensors::Dtype;
use sha2::{Digest, Sha256};

use super::{
    encoded_len, encoding_for, hex, is_vae_encoder, q8_layout, DtypePolicy, Encoding, Manifest, Piece, Q8Layout, ShardInfo, TensorInfo, ALIGN, FORMAT,
    MIN_SHARD_BYTES, Q8_MIN_ELEMENTS, VERSION,
};
use crate::checkpoint::Resolved;
use crate::config::SdConfig;
use crate::layout::Component;
use crate::Error;

/// The values of one tensor to convert.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Little-endian bytes as a safetensors file holds them (F32, F16 or BF16).
    Bytes { dtype: Dtype, data: &'a [u8] },
    /// Host f32 values.
    F32(&'a [f32]),
}

impl Source<'_> {
    /// Number of elements, or `None` for an unsupported dtype.
    fn len(&self) -> Option<usize> {
        match *self {
            Source::Bytes { dtype: Dtype::F32, data } => Some(data.len() / 4),
            Source::Bytes { dtype: Dtype::F16 | Dtype::BF16, data } => Some(data.len() / 2),
            Source::Bytes { .. } => None,
            Source::F32(v) => Some(v.len()),
        }
    }

    /// Elements `range` as f32 (exact for every supported dtype) into `out`, replacing its contents.
    /// The range is in bounds (`add` checks the length first).
    fn read(&self, range: Range<usize>, out: &mut Vec<f32>) {
        out.clear();
        let (a, b) = (range.start, range.end);
        match *self {
            Source::Bytes { dtype: Dtype::F32, data } => out.extend(data[4 * a..4 * b].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            Source::Bytes { dtype: Dtype::F16, data } => {
                out.extend(data[2 * a..2 * b].chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()))
            }
            Source::Bytes { dtype: Dtype::BF16, data } => {
                out.extend(data[2 * a..2 * b].chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()))
            }
            Source::Bytes { .. } => {}
            Source::F32(v) => out.extend_from_slice(&v[range]),
        }
    }
}

/// Elements converted per step.
const ELEMS: usize = 16 << 10;

/// Writes converted shards; see the module docs of `convert` for the format.
pub struct Writer<F> {
    config: String,
    sd_config: SdConfig,
    policy: DtypePolicy,
    limit: u64,
    shards: Vec<ShardInfo>,
    tensors: Vec<TensorInfo>,
    /// The shard being filled.
    buf: Vec<u8>,
    seen: HashSet<(Component, String)>,
    q8_min_elements: usize,
    /// False: the VAE encoder is left out (`without_vae_encoder`).
    vae_encoder: bool,
    emit: F,
}

/// `shard-00000.bin`, …
pub fn shard_file_name(index: usize) -> String {
    format!("shard-{index:05}.bin")
}

impl<F, E> Writer<F>
where
    F: FnMut(&ShardInfo, Vec<u8>) -> Result<(), E>,
    E: Display,
{
    /// A writer for a model of config `cfg` (preset name `config_name`), with shards of at most
    /// `shard_limit` bytes (a multiple of 16, at least 1 KiB). `emit` receives each finished shard.
    pub fn new(config_name: &str, cfg: &SdConfig, policy: DtypePolicy, shard_limit: u64, emit: F) -> Result<Self, Error> {
        if shard_limit < MIN_SHARD_BYTES || !shard_limit.is_multiple_of(ALIGN) {
            return Err(Error::Convert(format!("the shard limit must be a multiple of {ALIGN} bytes and at least {MIN_SHARD_BYTES}, got {shard_limit}")));
        }
        let cap = usize::try_from(shard_limit).map_err(|_| Error::Convert(format!("shard limit {shard_limit} does not fit this platform")))?;
        Ok(Writer {
            config: config_name.to_string(),
            sd_config: cfg.clone(),
            policy,
            limit: shard_limit,
            shards: Vec::new(),
            tensors: Vec::new(),
            buf: Vec::with_capacity(cap.min(DEFAULT_CAPACITY)),
            seen: HashSet::new(),
            q8_min_elements: Q8_MIN_ELEMENTS,
            vae_encoder: true,
            emit,
        })
    }

    /// Sets the q8 size threshold (weights with fewer elements stay f16; default
    /// [`Q8_MIN_ELEMENTS`]); the tiny test model quantizes all its matrices with a small one.
    pub fn q8_min_elements(mut self, n: usize) -> Self {
        self.q8_min_elements = n;
        self
    }

    /// A text-to-image conversion: VAE encoder tensors ([`is_vae_encoder`]) are skipped by
    /// [`Writer::add`] (which returns `None` for them) and the manifest says so.
    pub fn without_vae_encoder(mut self) -> Self {
        self.vae_encoder = false;
        self
    }

    /// Shards emitted so far.
    pub fn shards(&self) -> &[ShardInfo] {
        &self.shards
    }

    /// Adds a tensor resolved from a checkpoint (`checkpoint::resolve_single_file` / `resolve_diffusers`);
    /// `None` when the conversion leaves it out (see [`Writer::without_vae_encoder`]).
    pub fn add_resolved(&mut self, r: &Resolved<'_>) -> Result<Option<&TensorInfo>, Error> {
        let src = Source::Bytes { dtype: r.view.dtype(), data: r.view.data() };
        self.add(r.spec.component, &r.spec.path, &r.spec.shape, src)
    }

    /// Encodes one tensor into the shards (emitting every shard it fills) and returns its entry;
    /// `None` when the conversion leaves it out (see [`Writer::without_vae_encoder`]).
    pub fn add(&mut self, component: Component, path: &str, shape: &[usize], src: Source<'_>) -> Result<Option<&TensorInfo>, Error> {
        if !self.vae_encoder && is_vae_encoder(component, path) {
            return Ok(None);
        }
        let numel: usize = shape.iter().product();
        match src.len() {
            None => {
                let dtype = if let Source::Bytes { dtype, .. } = src { format!("{dtype:?}") } else { String::new() };
                return Err(Error::UnsupportedDtype { key: path.to_string(), dtype });
            }
            Some(n) if n != numel => return Err(Error::Convert(format!("tensor `{path}`: {n} values for shape {shape:?}"))),
            Some(_) => {}
        }
        if let Source::Bytes { dtype, data } = src {
            let width = if dtype == Dtype::F32 { 4 } else { 2 };
            if data.len() != width * numel {
                return Err(Error::Convert(format!("tensor `{path}`: {} bytes of {dtype:?} for shape {shape:?}", data.len())));
            }
        }
        if !self.seen.insert((component, path.to_string())) {
            return Err(Error::Convert(format!("tensor `{path}` of {} added twice", component.dir())));
        }
        let dtype = encoding_for(self.policy, path, shape, self.q8_min_elements);
        let bytes = encoded_len(dtype, shape);
        self.start_tensor(bytes)?;
        let mut pieces = vec![Piece { shard: self.shards.len(), offset: self.buf.len() as u64, len: 0 }];
        let (mut vals, mut bytes_out) = (Vec::with_capacity(ELEMS), Vec::with_capacity(4 * ELEMS));
        match dtype {
            Encoding::F32 => {
                for a in (0..numel).step_by(ELEMS) {
                    src.read(a..numel.min(a + ELEMS), &mut vals);
                    bytes_out.clear();
                    bytes_out.extend(vals.iter().flat_map(|x| x.to_le_bytes()));
                    self.put(&mut pieces, &bytes_out)?;
                }
            }
            Encoding::F16 => match src {
                Source::Bytes { dtype: Dtype::F16, data } => self.put(&mut pieces, data)?,
                _ => {
                    // Overflow check first, so a refused tensor leaves no partial bytes behind.
                    for a in (0..numel).step_by(ELEMS) {
                        src.read(a..numel.min(a + ELEMS), &mut vals);
                        if let Some(&value) = vals.iter().find(|x| x.is_finite() && half::f16::from_f32(**x).is_infinite()) {
                            return Err(Error::F16Overflow { key: path.to_string(), value });
                        }
                    }
                    for a in (0..numel).step_by(ELEMS) {
                        src.read(a..numel.min(a + ELEMS), &mut vals);
                        bytes_out.clear();
                        bytes_out.extend(vals.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()));
                        self.put(&mut pieces, &bytes_out)?;
                    }
                }
            },
            Encoding::Q8 => {
                let Q8Layout { rows, cols } = q8_layout(shape);
                let scales = q8_scales(path, &src, rows, cols)?;
                let scale_bytes: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
                self.put(&mut pieces, &scale_bytes)?;
                for (r, &scale) in scales.iter().enumerate() {
                    src.read(r * cols..(r + 1) * cols, &mut vals);
                    bytes_out.clear();
                    bytes_out.extend(vals.iter().map(|&x| quantize(x, scale) as u8));
                    self.put(&mut pieces, &bytes_out)?;
                }
            }
        }
        pieces.retain(|p| p.len > 0);
        let q8 = (dtype == Encoding::Q8).then(|| q8_layout(shape));
        self.tensors.push(TensorInfo { component, path: path.to_string(), shape: shape.to_vec(), dtype, bytes, pieces, q8 });
        Ok(self.tensors.last())
    }

    /// Emits the last shard and returns the manifest.
    pub fn finish(mut self) -> Result<Manifest, Error> {
        self.flush()?;
        let total_bytes = self.shards.iter().map(|s| s.bytes).sum();
        let m = Manifest {
            format: FORMAT.to_string(),
            version: VERSION,
            config: self.config,
            sd_config: self.sd_config,
            dtype: self.policy,
            shard_limit: self.limit,
            q8_min_elements: self.q8_min_elements,
            total_bytes,
            shards: self.shards,
            vae_encoder: self.vae_encoder,
            tensors: self.tensors,
        };
        m.validate()?;
        Ok(m)
    }

    /// Aligns the buffer for a tensor of `bytes`, or starts a new shard when it does not fit the
    /// current one and would fit a fresh one (only larger tensors are split).
    fn start_tensor(&mut self, bytes: u64) -> Result<(), Error> {
        let used = self.buf.len() as u64;
        let aligned = used.next_multiple_of(ALIGN);
        if used > 0 && (aligned >= self.limit || (bytes <= self.limit && aligned + bytes > self.limit)) {
            self.flush()
        } else {
            self.buf.resize(aligned as usize, 0);
            Ok(())
        }
    }

    /// Appends encoded bytes, continuing in a new shard (and a new piece) when the current is full.
    fn put(&mut self, pieces: &mut Vec<Piece>, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            let room = (self.limit - self.buf.len() as u64) as usize;
            if room == 0 {
                self.flush()?;
                pieces.push(Piece { shard: self.shards.len(), offset: 0, len: 0 });
                continue;
            }
            let n = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            if let Some(p) = pieces.last_mut() {
                p.len += n as u64;
            }
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Hands the current shard to `emit` (nothing when it is empty).
    fn flush(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let cap = self.buf.capacity();
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(cap));
        let info = ShardInfo { file: shard_file_name(self.shards.len()), bytes: data.len() as u64, sha256: hex(&Sha256::digest(&data)), gzip: None };
        (self.emit)(&info, data).map_err(|e| Error::ShardIo { file: info.file.clone(), message: e.to_string() })?;
        self.shards.push(info);
        Ok(())
    }
}

/// Initial capacity of the shard buffer (it grows to the limit as needed).
const DEFAULT_CAPACITY: usize = 64 << 20;

/// Per-row scales `max|w_r| / 127`; non-finite values are refused.
fn q8_scales(path: &str, src: &Source<'_>, rows: usize, cols: usize) -> Result<Vec<f32>, Error> {
    let mut row = Vec::with_capacity(cols);
    (0..rows)
        .map(|r| {
            src.read(r * cols..(r + 1) * cols, &mut row);
            if let Some(x) = row.iter().find(|x| !x.is_finite()) {
                return Err(Error::Convert(format!("tensor `{path}` row {r} holds {x}; q8 stores finite values only (convert with f16 or f32)")));
            }
            Ok(row.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0)
        })
        .collect()
}

/// `round(x / scale)` in [-127, 127] (0 for an all-zero row).
pub(crate) fn quantize(x: f32, scale: f32) -> i8 {
    if scale == 0.0 {
        0
    } else {
        (x / scale).round().clamp(-127.0, 127.0) as i8
    }
}
