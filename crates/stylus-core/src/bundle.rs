//! Index bundles: one self-checking byte string holding a whole [`Index`], loadable with no
//! filesystem, plus splitting into shards (e.g. for 25 MiB KV values) and re-joining.
//!
//! Layout (integers little-endian):
//! ```text
//! b"STYLUSIX" | u32 version (3) | u32 header_len | header (JSON, header_len bytes)
//! | cards (header.cards_bytes: the binary [`CardStore`] encoding; a JSON array of Card in versions 1
//!   and 2) | lexical postings (header.lexical_bytes)
//! | example-prompt postings (header.examples_bytes, 0 when absent)
//! | dense section (only when header.dense is present: embedder table + card vectors, [`crate::dense`])
//! | fusion weights (JSON, header.fusion_bytes; 0 in version 1: defaults)
//! ```
//! Version 1 (no dense section) and version 2 bundles (JSON cards) still load.
//! The header ([`Header`]) names the embedder ("bm25-v1"), the counts, the section sizes and the
//! sha256 (hex) of everything after it. The postings are [`Bm25::write`]'s encoding, so loading does
//! not re-tokenize and an index built with descriptions keeps scoring the same when they are left
//! out. The same index always gives the same bytes.
//!
//! Shard layout: `b"STYLUSSH" | u32 index | u32 count | u64 bundle_len | [u8; 32] bundle sha256 |
//! data`; shards re-join in any order and the join checks completeness and the checksum.

use crate::dense::{Dense, DenseHeader};
use crate::embed::hybrid::Fusion;
use crate::lexical::{Bm25, EMBEDDER_ID};
use crate::store::CardStore;
use crate::{Card, Error, Index};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"STYLUSIX";
pub const VERSION: u32 = 3;
/// Last version whose cards section is JSON.
const LAST_JSON_CARDS: u32 = 2;
/// Oldest bundle version this build reads.
pub const MIN_VERSION: u32 = 1;
pub const SHARD_MAGIC: &[u8; 8] = b"STYLUSSH";
/// Bytes of a shard's own header.
pub const SHARD_HEADER: usize = 8 + 4 + 4 + 8 + 32;
/// Default largest shard (Cloudflare KV's value limit).
pub const DEFAULT_SHARD_BYTES: usize = 25 * 1024 * 1024;

/// The bundle header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub embedder: String,
    pub cards: u64,
    pub terms: u64,
    pub postings: u64,
    /// Whether card descriptions are included.
    pub descriptions: bool,
    pub cards_bytes: u64,
    pub lexical_bytes: u64,
    /// sha256 (lowercase hex) of everything after the header.
    pub sha256: String,
    /// Bytes of the example-prompt postings (0: none).
    #[serde(default)]
    pub examples_bytes: u64,
    /// The dense section: embedder id, dimension and table hash, sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense: Option<DenseHeader>,
    /// Bytes of the fusion weights section (covered by the checksum, unlike this header).
    #[serde(default)]
    pub fusion_bytes: u64,
}

/// Lowercase hex of bytes (sha256 digests in headers).
pub(crate) fn hex(bytes: &[u8]) -> String {
    hex_case(bytes, false)
}

/// Hex of bytes in either case (card sha256s are Civitai's upper-case hex).
pub(crate) fn hex_case(bytes: &[u8], upper: bool) -> String {
    let digits = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    let ascii: Vec<u8> = bytes.iter().flat_map(|b| [digits[(b >> 4) as usize], digits[(b & 15) as usize]]).collect();
    String::from_utf8(ascii).unwrap_or_default()
}

/// Serializes an index (descriptions only when asked).
pub fn write(index: &Index, descriptions: bool) -> Vec<u8> {
    let store = index.store();
    let mut payload = if descriptions { store.bytes().to_vec() } else { store.encode_without_free_text() };
    let cards_bytes = payload.len() as u64;
    index.lexical().write(&mut payload);
    let lexical_bytes = payload.len() as u64 - cards_bytes;
    if let Some(e) = index.examples() {
        e.write(&mut payload);
    }
    let examples_bytes = payload.len() as u64 - cards_bytes - lexical_bytes;
    let dense = index.dense().map(|d| d.write(&mut payload));
    let before = payload.len();
    payload.extend(serde_json::to_vec(&index.fusion()).unwrap_or_default());
    let fusion_bytes = (payload.len() - before) as u64;
    let lex = index.lexical();
    let header = Header {
        embedder: EMBEDDER_ID.into(),
        cards: store.len() as u64,
        terms: lex.num_terms() as u64,
        postings: lex.num_postings() as u64,
        descriptions: descriptions && store.iter().any(|c| c.description().is_some()),
        cards_bytes,
        lexical_bytes,
        sha256: hex(&Sha256::digest(&payload)),
        examples_bytes,
        dense,
        fusion_bytes,
    };
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut out = Vec::with_capacity(16 + header.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&payload);
    out
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The format version a bundle says it is (`None` when too short to say).
pub fn version(bytes: &[u8]) -> Option<u32> {
    u32_at(bytes, 8)
}

/// Reads and checks a bundle's header; returns it and where the payload starts.
pub fn header(bytes: &[u8]) -> Result<(Header, usize), Error> {
    let truncated = |expected: usize| Error::BundleTruncated { expected: expected as u64, found: bytes.len() as u64 };
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) && !bytes.is_empty() { truncated(16) } else { Error::BundleBadMagic });
    }
    if &bytes[..8] != MAGIC {
        return Err(Error::BundleBadMagic);
    }
    let version = u32_at(bytes, 8).ok_or_else(|| truncated(16))?;
    if !(MIN_VERSION..=VERSION).contains(&version) {
        return Err(Error::BundleVersion { found: version, supported: VERSION });
    }
    let hlen = u32_at(bytes, 12).ok_or_else(|| truncated(16))? as usize;
    let start = 16usize.checked_add(hlen).ok_or_else(|| truncated(usize::MAX))?;
    let raw = bytes.get(16..start).ok_or_else(|| truncated(start))?;
    let h: Header = serde_json::from_slice(raw).map_err(|e| Error::BundleCorrupt(format!("header: {e}")))?;
    if h.embedder != EMBEDDER_ID {
        return Err(Error::BundleEmbedder { found: h.embedder, expected: EMBEDDER_ID.into() });
    }
    Ok((h, start))
}

/// Loads a bundle, checking magic, version, embedder, length, sha256 and every section.
pub fn read(bytes: &[u8]) -> Result<Index, Error> {
    let (h, start) = header(bytes)?;
    let version = version(bytes).unwrap_or(VERSION);
    let dense_bytes = h.dense.as_ref().map_or(Some(0), |d| d.embedder_bytes.checked_add(d.vectors_bytes));
    let end = (start as u64)
        .checked_add(h.cards_bytes)
        .and_then(|x| x.checked_add(h.lexical_bytes))
        .and_then(|x| x.checked_add(h.examples_bytes))
        .zip(dense_bytes)
        .and_then(|(x, d)| x.checked_add(d))
        .and_then(|x| x.checked_add(h.fusion_bytes));
    let end = end.ok_or_else(|| Error::BundleCorrupt("section sizes overflow".into()))?;
    if (bytes.len() as u64) < end {
        return Err(Error::BundleTruncated { expected: end, found: bytes.len() as u64 });
    }
    if bytes.len() as u64 > end {
        return Err(Error::BundleCorrupt(format!("{} bytes after the last section", bytes.len() as u64 - end)));
    }
    let payload = &bytes[start..];
    if hex(&Sha256::digest(payload)) != h.sha256.to_ascii_lowercase() {
        return Err(Error::BundleChecksum);
    }
    let (cards_raw, rest) = payload.split_at(h.cards_bytes as usize);
    let (lex_raw, rest) = rest.split_at(h.lexical_bytes as usize);
    let (examples_raw, rest) = rest.split_at(h.examples_bytes as usize);
    let (dense_raw, fusion_raw) = rest.split_at(rest.len() - h.fusion_bytes as usize);
    let cards = if version <= LAST_JSON_CARDS {
        let cards: Vec<Card> = serde_json::from_slice(cards_raw).map_err(|e| Error::BundleCorrupt(format!("cards: {e}")))?;
        CardStore::build(&cards).map_err(|e| Error::BundleCorrupt(format!("cards: {e}")))?
    } else {
        // the one copy of the cards the index keeps (the caller's bundle is theirs to free)
        CardStore::read(cards_raw.to_vec()).map_err(|e| Error::BundleCorrupt(format!("cards: {e}")))?
    };
    let lex = Bm25::read_sized(lex_raw, h.postings).map_err(|e| Error::BundleCorrupt(format!("postings: {e}")))?;
    let found = (cards.len() as u64, lex.num_docs() as u64, lex.num_terms() as u64, lex.num_postings() as u64);
    if found != (h.cards, h.cards, h.terms, h.postings) {
        return Err(Error::BundleCorrupt(format!(
            "header says {} cards, {} terms, {} postings; sections hold (cards, documents, terms, postings) {found:?}",
            h.cards, h.terms, h.postings
        )));
    }
    let n = cards.len();
    let examples = (h.examples_bytes > 0).then(|| Bm25::read(examples_raw).map_err(|e| Error::BundleCorrupt(format!("example postings: {e}")))).transpose()?;
    let dense = h.dense.as_ref().map(|dh| Dense::read(dh, dense_raw, n)).transpose()?;
    let index = Index::from_parts(cards, lex).map_err(|e| match e {
        Error::BundleCorrupt(_) => e,
        e => Error::BundleCorrupt(e.to_string()),
    })?;
    let fusion =
        if fusion_raw.is_empty() { Fusion::default() } else { serde_json::from_slice(fusion_raw).map_err(|e| Error::BundleCorrupt(format!("fusion: {e}")))? };
    index.with_examples(examples)?.with_dense(dense)?.with_fusion(fusion)
}

/// Splits a bundle into shards of at most `max_bytes` each (shard header included).
pub fn split(bundle: &[u8], max_bytes: usize) -> Result<Vec<Vec<u8>>, Error> {
    if max_bytes <= SHARD_HEADER {
        return Err(Error::ShardInvalid(format!("shard size {max_bytes} must exceed the {SHARD_HEADER}-byte shard header")));
    }
    let chunks: Vec<&[u8]> = if bundle.is_empty() { vec![&[]] } else { bundle.chunks(max_bytes - SHARD_HEADER).collect() };
    let count = u32::try_from(chunks.len()).map_err(|_| Error::ShardInvalid("too many shards".into()))?;
    let sha = Sha256::digest(bundle);
    Ok(chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut s = Vec::with_capacity(SHARD_HEADER + c.len());
            s.extend_from_slice(SHARD_MAGIC);
            s.extend_from_slice(&(i as u32).to_le_bytes());
            s.extend_from_slice(&count.to_le_bytes());
            s.extend_from_slice(&(bundle.len() as u64).to_le_bytes());
            s.extend_from_slice(&sha);
            s.extend_from_slice(c);
            s
        })
        .collect())
}

/// The shard list written beside a bundle (`OUT.json`): what the worker, the browser and the CLI
/// fetch first, then every file of `shards`, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// File name of the whole bundle (also the stem of its shards).
    pub bundle: String,
    /// Size of the whole bundle in bytes.
    pub bytes: u64,
    /// The files to fetch: `[bundle]` when it fits one file, else `bundle.0`, `bundle.1`, ….
    pub shards: Vec<String>,
}

/// The bundle from the files a [`Manifest`] lists: one file is the bundle itself, several are shards.
pub fn assemble<S: AsRef<[u8]>>(parts: &[S]) -> Result<Vec<u8>, Error> {
    match parts {
        [one] if one.as_ref().starts_with(MAGIC) => Ok(one.as_ref().to_vec()),
        _ => join(parts),
    }
}

/// Re-joins shards made by [`split`], given in any order.
pub fn join<S: AsRef<[u8]>>(shards: &[S]) -> Result<Vec<u8>, Error> {
    let mut parts: Vec<(u32, &[u8])> = Vec::with_capacity(shards.len());
    let mut meta: Option<(u32, u64, &[u8])> = None;
    for s in shards {
        let s = s.as_ref();
        if s.len() < SHARD_HEADER || &s[..8] != SHARD_MAGIC {
            return Err(Error::ShardInvalid("not a bundle shard (bad magic or too short)".into()));
        }
        let (idx, count) = (u32_at(s, 8).unwrap_or(0), u32_at(s, 12).unwrap_or(0));
        let len = u64::from_le_bytes(s[16..24].try_into().unwrap_or([0; 8]));
        let m = (count, len, &s[24..56]);
        if meta.is_some_and(|x| x != m) {
            return Err(Error::ShardInvalid("shards come from different bundles".into()));
        }
        meta = Some(m);
        if idx >= count || parts.iter().any(|p| p.0 == idx) {
            return Err(Error::ShardInvalid(format!("shard index {idx} repeated or beyond count {count}")));
        }
        parts.push((idx, &s[SHARD_HEADER..]));
    }
    let Some((count, len, sha)) = meta else { return Err(Error::ShardInvalid("no shards".into())) };
    parts.sort_by_key(|p| p.0);
    if let Some(index) = (0..count).find(|i| parts.get(*i as usize).map(|p| p.0) != Some(*i)) {
        return Err(Error::ShardMissing { index, count });
    }
    let out: Vec<u8> = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
    if out.len() as u64 != len || Sha256::digest(&out).as_slice() != sha {
        return Err(Error::ShardInvalid("joined shards do not match the bundle checksum".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        let mut a = Card::new(1, "Watercolor Style");
        a.tags = vec!["style".into()];
        a.description = Some("soft washes of paint".into());
        let mut b = Card::new(2, "Fox ears");
        b.trigger_words = vec!["fox ears".into()];
        Index::build(vec![a, b]).unwrap()
    }

    #[test]
    fn roundtrip_is_byte_identical() {
        let ix = index();
        let b = ix.to_bundle();
        let back = read(&b).unwrap();
        assert_eq!(back.to_bundle(), b);
        assert!(back.cards().all(|c| c.description().is_none()));
        assert_eq!(back.search("soft paint", 5), ix.search("soft paint", 5), "postings keep description terms");
        let full = read(&ix.to_bundle_with_descriptions()).unwrap();
        assert!(full.cards().map(|c| c.to_card()).eq(ix.cards().map(|c| c.to_card())));
        assert!(header(&ix.to_bundle_with_descriptions()).unwrap().0.descriptions);
    }

    #[test]
    fn corrupt_bundles_give_typed_errors() {
        let b = index().to_bundle();
        let code = |x: &[u8]| read(x).unwrap_err().code();
        assert_eq!(code(b""), "bundle_bad_magic");
        assert_eq!(code(b"NOTSTYLUSIX....."), "bundle_bad_magic");
        assert_eq!(code(&b[..5]), "bundle_truncated");
        for cut in [12, 20, b.len() - 1] {
            assert_eq!(code(&b[..cut]), "bundle_truncated", "cut {cut}");
        }
        let mut v = b.clone();
        v[8] = 9;
        assert_eq!(code(&v), "bundle_version");
        let mut v = b.clone();
        let last = v.len() - 1;
        v[last] ^= 1;
        assert_eq!(code(&v), "bundle_checksum");
        let mut v = b.clone();
        v.push(0);
        assert_eq!(code(&v), "bundle_corrupt");
        let mut v = b.clone();
        let at = b.windows(7).position(|w| w == b"bm25-v1").unwrap();
        v[at + 6] = b'9';
        assert_eq!(code(&v), "bundle_embedder");
        let mut v = b.clone();
        v[17] = b'X';
        assert_eq!(code(&v), "bundle_corrupt");
        for i in (0..b.len()).step_by(7) {
            let mut v = b.clone();
            v[i] = v[i].wrapping_add(1);
            assert!(read(&v).is_err(), "flip at {i}");
        }
    }

    /// A bundle with `cards` as its cards section and the rest of `b` (header sizes and sha256 redone),
    /// written as `version`.
    fn with_cards(b: &[u8], cards: &[u8], version: u32) -> Vec<u8> {
        let (mut h, start) = header(b).unwrap();
        let rest = &b[start + h.cards_bytes as usize..];
        let rest = if version == 1 { &rest[..rest.len() - h.fusion_bytes as usize] } else { rest };
        let payload = [cards, rest].concat();
        (h.cards_bytes, h.sha256) = (cards.len() as u64, hex(&Sha256::digest(&payload)));
        h.fusion_bytes = if version == 1 { 0 } else { h.fusion_bytes };
        let hj = serde_json::to_vec(&h).unwrap();
        [&MAGIC[..], &version.to_le_bytes(), &(hj.len() as u32).to_le_bytes(), &hj, &payload].concat()
    }

    #[test]
    fn version_1_and_2_bundles_with_json_cards_still_load() {
        let ix = index();
        let b = ix.to_bundle();
        assert_eq!(version(&b), Some(3));
        let json = serde_json::to_vec(&ix.cards().map(|c| c.to_card().without_description()).collect::<Vec<_>>()).unwrap();
        for v in [1, 2] {
            let old = read(&with_cards(&b, &json, v)).unwrap();
            assert!(old.cards().zip(ix.cards()).all(|(a, b)| a.to_card() == b.to_card().without_description()), "version {v}");
            assert_eq!(old.search("soft paint", 5), ix.search("soft paint", 5));
            assert_eq!(old.to_bundle(), b, "version {v} rewritten as version 3");
        }
        assert_eq!(read(&with_cards(&b, b"[{\"id\":1}]", 2)).unwrap_err().code(), "bundle_corrupt");
    }

    #[test]
    fn truncated_and_flipped_card_sections_are_bundle_corrupt() {
        let b = index().to_bundle();
        let (h, start) = header(&b).unwrap();
        let cards = &b[start..start + h.cards_bytes as usize];
        for cut in 0..cards.len() {
            let e = read(&with_cards(&b, &cards[..cut], 3)).unwrap_err();
            assert!(e.code() == "bundle_corrupt" && e.to_string().contains("cards: "), "cut {cut}: {e}");
        }
        let e = read(&with_cards(&b, &[cards, &[0]].concat(), 3)).unwrap_err();
        assert_eq!(e.to_string(), "index bundle is corrupt: cards: 1 bytes after the last card");
        for i in 0..cards.len() {
            for bit in 0..8 {
                let mut v = cards.to_vec();
                v[i] ^= 1 << bit;
                // a flip that still decodes is a valid (different) index; anything else is refused, never a panic
                if let Err(e) = read(&with_cards(&b, &v, 3)) {
                    assert_eq!(e.code(), "bundle_corrupt", "byte {i} bit {bit}: {e}");
                }
            }
        }
        let mut two = index().cards().map(|c| c.to_card()).collect::<Vec<_>>();
        two[1].id = two[0].id;
        let e = read(&with_cards(&b, &CardStore::encode(&two), 3)).unwrap_err();
        assert_eq!(e.to_string(), "index bundle is corrupt: cards: card id 1 appears twice");
    }

    #[test]
    fn shards_split_and_join_in_any_order() {
        let b = index().to_bundle();
        let mut shards = split(&b, SHARD_HEADER + 100).unwrap();
        assert!(shards.len() > 2 && shards.iter().all(|s| s.len() <= SHARD_HEADER + 100));
        shards.reverse();
        assert_eq!(join(&shards).unwrap(), b);
        assert_eq!(split(&b, DEFAULT_SHARD_BYTES).unwrap().len(), 1);
        assert_eq!(join(&split(&[], 100).unwrap()).unwrap(), Vec::<u8>::new());
        let missing: Vec<_> = shards.iter().skip(1).cloned().collect();
        assert_eq!(join(&missing).unwrap_err().code(), "shard_missing");
        let mut dup = shards.clone();
        dup.push(shards[0].clone());
        assert_eq!(join(&dup).unwrap_err().code(), "shard_invalid");
        let mut bad = shards.clone();
        let last = bad[0].len() - 1;
        bad[0][last] ^= 1;
        assert_eq!(join(&bad).unwrap_err().code(), "shard_invalid");
        assert_eq!(split(&b, 10).unwrap_err().code(), "shard_invalid");
        assert_eq!(join::<Vec<u8>>(&[]).unwrap_err().code(), "shard_invalid");
        assert_eq!(join(&[b"junk".to_vec()]).unwrap_err().code(), "shard_invalid");
    }

    #[test]
    fn assemble_takes_a_whole_bundle_or_its_shards() {
        let b = {
            let mut v = MAGIC.to_vec();
            v.extend_from_slice(&[7u8; 100]);
            v
        };
        assert_eq!(assemble(std::slice::from_ref(&b)).unwrap(), b);
        assert_eq!(assemble(&split(&b, SHARD_HEADER + 30).unwrap()).unwrap(), b);
        assert!(assemble(&[vec![1u8, 2, 3]]).is_err());
        assert!(assemble::<Vec<u8>>(&[]).is_err());
    }
}
