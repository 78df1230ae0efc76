//! Reading converted models: shards verified (length and sha256) as they arrive, tensors reassembled
//! from their pieces in manifest order, and decoded to f32. Holds one shard at a time plus the
//! tensor being assembled.

use std::fmt::Display;

use sha2::{Digest, Sha256};

use super::{hex, Encoding, Manifest, Q8Layout, ShardInfo, TensorInfo};
use crate::Error;

/// Checks a shard's length and sha256 against the manifest (call it on every download).
pub fn verify_shard(info: &ShardInfo, bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() as u64 != info.bytes {
        return Err(Error::ShardCorrupt { file: info.file.clone(), reason: format!("{} bytes, the manifest says {}", bytes.len(), info.bytes) });
    }
    let found = hex(&Sha256::digest(bytes));
    if !found.eq_ignore_ascii_case(&info.sha256) {
        return Err(Error::ShardCorrupt { file: info.file.clone(), reason: format!("sha256 {found}, the manifest says {}", info.sha256) });
    }
    Ok(())
}

/// Decodes a tensor's encoding (its pieces concatenated) to f32 values, row-major.
pub fn decode(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>, Error> {
    if bytes.len() as u64 != info.bytes {
        return Err(Error::Manifest(format!("tensor `{}`: {} bytes given, its encoding has {}", info.path, bytes.len(), info.bytes)));
    }
    Ok(match info.dtype {
        Encoding::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Encoding::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Encoding::Q8 => {
            let Some(Q8Layout { rows, cols }) = info.q8 else {
                return Err(Error::Manifest(format!("tensor `{}`: q8 without its row layout", info.path)));
            };
            let (scale_bytes, values) = bytes.split_at(4 * rows);
            let scales: Vec<f32> = scale_bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let cols = cols.max(1);
            values.iter().enumerate().map(|(i, &q)| q as i8 as f32 * scales[i / cols]).collect()
        }
    })
}

/// Yields `(tensor entry, its encoded bytes)` in manifest order, fetching each shard when a piece
/// first needs it (`fetch(index, info)` returns the shard's bytes) and verifying it before use.
/// After an error the iterator ends.
pub struct ShardReader<'m, G, B> {
    manifest: &'m Manifest,
    fetch: G,
    next: usize,
    current: Option<(usize, B)>,
    failed: bool,
}

impl<'m, G, B, E> ShardReader<'m, G, B>
where
    G: FnMut(usize, &ShardInfo) -> Result<B, E>,
    B: AsRef<[u8]>,
    E: Display,
{
    /// A reader over a validated manifest ([`Manifest::from_json`]).
    pub fn new(manifest: &'m Manifest, fetch: G) -> Self {
        ShardReader { manifest, fetch, next: 0, current: None, failed: false }
    }

    /// The verified bytes of shard `index` (fetched unless it is the current one).
    fn shard(&mut self, index: usize) -> Result<&[u8], Error> {
        if self.current.as_ref().is_none_or(|(i, _)| *i != index) {
            self.current = None;
            let info = self.manifest.shards.get(index).ok_or_else(|| Error::Manifest(format!("shard {index} does not exist")))?;
            let bytes = (self.fetch)(index, info).map_err(|e| Error::ShardIo { file: info.file.clone(), message: e.to_string() })?;
            verify_shard(info, bytes.as_ref())?;
            self.current = Some((index, bytes));
        }
        Ok(self.current.as_ref().map(|(_, b)| b.as_ref()).unwrap_or_default())
    }

    fn read(&mut self, t: &'m TensorInfo) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(usize::try_from(t.bytes).unwrap_or(0));
        for p in &t.pieces {
            let shard = self.shard(p.shard)?;
            let range = usize::try_from(p.offset).ok().zip(usize::try_from(p.offset + p.len).ok());
            let slice =
                range.and_then(|(a, b)| shard.get(a..b)).ok_or_else(|| Error::Manifest(format!("tensor `{}`: a piece lies outside its shard", t.path)))?;
            out.extend_from_slice(slice);
        }
        Ok(out)
    }
}

impl<'m, G, B, E> Iterator for ShardReader<'m, G, B>
where
    G: FnMut(usize, &ShardInfo) -> Result<B, E>,
    B: AsRef<[u8]>,
    E: Display,
{
    type Item = Result<(&'m TensorInfo, Vec<u8>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let t = self.manifest.tensors.get(self.next)?;
        self.next += 1;
        let r = self.read(t).map(|bytes| (t, bytes));
        self.failed = r.is_err();
        if self.next == self.manifest.tensors.len() {
            self.current = None; // the last shard is not needed any more
        }
        Some(r)
    }
}
