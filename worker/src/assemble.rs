//! Streaming re-assembly of an index bundle from the files its manifest lists (runtime-free, tested
//! natively against `bundle::split`): each file's body is pushed chunk by chunk straight into one
//! buffer of the manifest's size, so loading holds the bundle once instead of its shards plus a
//! joined copy (at 75K adapters the isolate's wasm memory high-water mark fell from 145 to 129 MiB).
//!
//! A whole bundle in one file is taken as it is. Shards (`bundle` module doc: `STYLUSSH`, index,
//! count, bundle length, bundle sha256, data) must come in manifest order, agree on count, length and
//! checksum, and fill the buffer exactly. The bundle's own header and content sha256 are then checked
//! by `Index::from_bundle`; the shards' whole-bundle sha256 is compared between shards but not
//! recomputed (that would hash 50 MB a second time on the request's CPU budget).

use stylus_core::bundle::{MAGIC, SHARD_HEADER, SHARD_MAGIC};

/// Builds a bundle from the manifest's files, pushed in order.
pub struct Assembler {
    buf: Vec<u8>,
    expected: u64,
    files: usize,
    /// Files begun so far.
    file: usize,
    /// The current file's first bytes while its kind (bundle or shard) is being read.
    head: Vec<u8>,
    /// Whether the current file's header is done (its data goes to `buf`).
    in_data: bool,
    /// The bundle sha256 the first shard named.
    sha: Option<[u8; 32]>,
}

impl Assembler {
    /// For a manifest naming `files` files and a bundle of `bytes` bytes (memory is reserved once).
    pub fn new(files: usize, bytes: u64) -> Result<Self, String> {
        let cap = usize::try_from(bytes).map_err(|_| format!("a {bytes}-byte bundle does not fit in memory"))?;
        if files == 0 {
            return Err("the manifest lists no files".into());
        }
        Ok(Assembler { buf: Vec::with_capacity(cap), expected: bytes, files, file: 0, head: Vec::new(), in_data: false, sha: None })
    }

    /// Starts the next file.
    pub fn begin_file(&mut self) -> Result<(), String> {
        if self.file == self.files {
            return Err("more files than the manifest lists".into());
        }
        self.file += 1;
        self.head.clear();
        self.in_data = false;
        Ok(())
    }

    /// Appends a chunk of the current file's body.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        if !self.in_data {
            let want = if self.files == 1 { MAGIC.len() } else { SHARD_HEADER };
            let take = (want - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.head.len() < want {
                return Ok(());
            }
            self.check_head()?;
            self.in_data = true;
        }
        if self.buf.len() as u64 + chunk.len() as u64 > self.expected {
            return Err(format!("the files hold more than the manifest's {} bytes (stale manifest?)", self.expected));
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    fn check_head(&mut self) -> Result<(), String> {
        let h = &self.head;
        if self.files == 1 {
            if h[..] != MAGIC[..] {
                return Err("the manifest's one file is not an index bundle".into());
            }
            self.buf.extend_from_slice(h);
            return Ok(());
        }
        let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&h[16..24]);
        let mut sha = [0u8; 32];
        sha.copy_from_slice(&h[24..56]);
        let (index, count, len) = (u32_at(8), u32_at(12), u64::from_le_bytes(len));
        let n = self.file - 1;
        if h[..8] != SHARD_MAGIC[..] {
            return Err(format!("file {n} of the manifest is not a bundle shard"));
        }
        if index as usize != n || count as usize != self.files {
            return Err(format!("file {n} of the manifest is shard {index} of {count}; expected shard {n} of {}", self.files));
        }
        if len != self.expected || self.sha.is_some_and(|s| s != sha) {
            return Err(format!("shard {n} belongs to another bundle (a stale manifest or an unfinished upload)"));
        }
        self.sha = Some(sha);
        Ok(())
    }

    /// Ends the current file.
    pub fn end_file(&mut self) -> Result<(), String> {
        if !self.in_data {
            return Err(format!("file {} of the manifest is too short to be part of a bundle", self.file - 1));
        }
        Ok(())
    }

    /// The bundle, once every file was pushed and it has the manifest's size.
    pub fn finish(self) -> Result<Vec<u8>, String> {
        if self.file != self.files {
            return Err(format!("{} of the manifest's {} files were read", self.file, self.files));
        }
        if self.buf.len() as u64 != self.expected {
            return Err(format!("the manifest says {} bytes but its files hold {} (stale manifest or unfinished upload)", self.expected, self.buf.len()));
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stylus_core::bundle::split;

    fn bundle(n: usize) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend((0..n).map(|i| (i * 7 % 251) as u8));
        b
    }

    /// Pushes `files` in `chunk`-byte pieces.
    fn assemble(files: &[Vec<u8>], bytes: u64, chunk: usize) -> Result<Vec<u8>, String> {
        let mut a = Assembler::new(files.len(), bytes)?;
        for f in files {
            a.begin_file()?;
            for c in f.chunks(chunk) {
                a.push(c)?;
            }
            a.end_file()?;
        }
        a.finish()
    }

    #[test]
    fn shards_and_whole_bundles_in_any_chunking() {
        let b = bundle(10_000);
        let shards = split(&b, SHARD_HEADER + 1_500).unwrap();
        assert!(shards.len() > 5);
        for chunk in [1, 3, 55, 56, 57, 1000, 1 << 20] {
            assert_eq!(assemble(&shards, b.len() as u64, chunk).unwrap(), b, "chunk {chunk}");
            assert_eq!(assemble(std::slice::from_ref(&b), b.len() as u64, chunk).unwrap(), b, "whole, chunk {chunk}");
        }
    }

    #[test]
    fn wrong_files_are_refused_with_a_reason() {
        let b = bundle(5_000);
        let len = b.len() as u64;
        let shards = split(&b, SHARD_HEADER + 1_000).unwrap();
        let err = |files: &[Vec<u8>], bytes: u64| assemble(files, bytes, 333).unwrap_err();
        let mut swapped = shards.clone();
        swapped.swap(0, 1);
        assert!(err(&swapped, len).contains("expected shard 0"));
        assert!(err(&shards[..shards.len() - 1], len).contains("is shard"), "count mismatch");
        assert!(err(&shards, len + 1).contains("another bundle"));
        let other = split(&bundle(5_001)[..b.len()].iter().map(|x| x ^ 1).collect::<Vec<_>>(), SHARD_HEADER + 1_000).unwrap();
        let mut mixed = shards.clone();
        mixed[1] = other[1].clone();
        assert!(err(&mixed, len).contains("another bundle"));
        assert!(err(&[b"not a bundle".to_vec()], 12).contains("not an index bundle"));
        assert!(err(std::slice::from_ref(&b), len - 1).contains("more than the manifest"));
        assert!(err(std::slice::from_ref(&b), len + 1).contains("manifest says"));
        assert!(err(&[b"STYL".to_vec()], 4).contains("too short"));
        let mut a = Assembler::new(1, len).unwrap();
        a.begin_file().unwrap();
        assert!(a.begin_file().unwrap_err().contains("more files"));
        assert!(Assembler::new(2, len).unwrap().finish().unwrap_err().contains("0 of the manifest's 2"));
        assert!(Assembler::new(0, len).is_err());
    }
}
