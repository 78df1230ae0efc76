//! The byte-level codec of the card store ([`super`]): LEB128 varints, zigzag id deltas, "decimal"
//! floats, the number templates of URLs, and one card record's encoder and checked parser.
//!
//! Record layout (one card; `v` = varint, `dec` = [`put_dec`], `sid` = string-table index as a varint):
//! ```text
//! u8 head (bits 0-2 category, 3 nsfw, 4-5 sha256 form, 6 description present, 7 example prompts present)
//! v downloads | dec weight | v favorites | v rating_count | dec rating | v size_bytes | v n_example_prompts
//! sha256: form 0 none | 1 upper-case hex, 2 lower-case hex: 32 raw bytes | 3 other: v len + UTF-8
//! name: v len + UTF-8 | file_name: v len + UTF-8 stem, sid extension ("" or from the last '.')
//! sid base_model | v n + n × sid tags | v n + n × sid trigger words
//! download_url, model_page: v form (0 "", 1 literal: v len + UTF-8, 2 + 2t: template t with the card
//!   id as its number, 3 + 2t: template t, then v number)
//! description (when flagged): v len + UTF-8 | example prompts (when flagged): v n (≥ 1) + n × (v len + UTF-8)
//! ```

use crate::card::{Card, Category, DEFAULT_WEIGHT};

/// Appends `v` as LEB128.
pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-prefixed string.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Largest hundredths value stored in the short form of [`put_dec`].
const MAX_CENTI: f64 = 1e7;

/// A float as `v 1 + x·100` when that gives back the same bits (weights, ratings: 0.8, 4.92), else
/// `v 0` and the four f32 bytes (any other value, NaN and -0 included).
pub(crate) fn put_dec(out: &mut Vec<u8>, x: f32) {
    let c = (x as f64 * 100.0).round();
    if (0.0..=MAX_CENTI).contains(&c) && dec_of(c as u64).to_bits() == x.to_bits() {
        put(out, c as u64 + 1);
    } else {
        out.push(0);
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn dec_of(centi: u64) -> f32 {
    (centi as f64 / 100.0) as f32
}

/// `(prefix, number, suffix)` of a string whose last run of ASCII digits is a canonical u64 (no
/// leading zero): `https://civitai.com/models/58390` → `("https://civitai.com/models/", 58390, "")`.
pub(crate) fn split_number(s: &str) -> Option<(&str, u64, &str)> {
    let b = s.as_bytes();
    let end = b.iter().rposition(u8::is_ascii_digit)? + 1;
    let start = b[..end].iter().rposition(|c| !c.is_ascii_digit()).map_or(0, |p| p + 1);
    let digits = &s[start..end];
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    Some((&s[..start], digits.parse().ok()?, &s[end..]))
}

/// `file_name` as (stem, extension): split before its last '.', the extension "" when there is none.
pub(crate) fn split_ext(s: &str) -> (&str, &str) {
    s.rfind('.').map_or((s, ""), |i| s.split_at(i))
}

/// A URL field as encoded: empty, literal, or a template of the store with a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Url<'a> {
    Empty,
    Literal(&'a str),
    /// `number` None: the card's id.
    Template {
        t: u32,
        number: Option<u64>,
    },
}

/// Appends a URL field; `template` gives the store's template index for a `(prefix, suffix)` pair.
pub(crate) fn put_url(out: &mut Vec<u8>, s: &str, id: u64, template: &dyn Fn(&str, &str) -> Option<u32>) {
    if s.is_empty() {
        return put(out, 0);
    }
    if let Some((t, n)) = split_number(s).and_then(|(p, n, x)| Some((template(p, x)?, n))) {
        if n == id {
            return put(out, 2 + 2 * t as u64);
        }
        put(out, 3 + 2 * t as u64);
        return put(out, n);
    }
    put(out, 1);
    put_str(out, s);
}

/// A checked cursor over bytes; every read says what was wrong instead of panicking.
pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        if let Some(&byte) = self.b.get(self.pos).filter(|b| **b < 0x80) {
            self.pos += 1;
            return Ok(byte as u64);
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or("truncated")?;
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err("varint overflows 64 bits".into());
            }
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                // one encoding per value, so a store read back writes the same bytes
                return if byte == 0 && shift > 0 { Err("overlong varint".into()) } else { Ok(v) };
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| "value exceeds u32".to_string())
    }

    /// A count of items of at least one byte each (bounded by the bytes left).
    pub(crate) fn count(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        usize::try_from(n).ok().filter(|n| *n <= self.b.len() - self.pos).ok_or_else(|| format!("count {n} exceeds the bytes left"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.b.len()).ok_or("truncated")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, String> {
        let n = self.varint()?;
        let raw = self.take(usize::try_from(n).map_err(|_| "string too long")?)?;
        std::str::from_utf8(raw).map_err(|_| "string is not UTF-8".to_string())
    }

    pub(crate) fn dec(&mut self) -> Result<f32, String> {
        match self.varint()? {
            0 => Ok(f32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "truncated")?)),
            v if v - 1 <= MAX_CENTI as u64 => Ok(dec_of(v - 1)),
            v => Err(format!("decimal {v} out of range")),
        }
    }

    /// `n` string ids, each below `strings`; returns their raw bytes.
    fn sids(&mut self, strings: usize, check: bool) -> Result<(u32, &'a [u8]), String> {
        let n = self.u32()?;
        let start = self.pos;
        for _ in 0..n {
            let s = self.varint()?;
            if check && s >= strings as u64 {
                return Err(format!("string id {s} beyond the table of {strings}"));
            }
        }
        Ok((n, &self.b[start..self.pos]))
    }

    fn url(&mut self, templates: usize, check: bool) -> Result<Url<'a>, String> {
        Ok(match self.varint()? {
            0 => Url::Empty,
            1 => Url::Literal(self.str()?),
            f => {
                let t = (f - 2) / 2;
                if check && t >= templates as u64 {
                    return Err(format!("URL template {t} beyond the table of {templates}"));
                }
                let number = if f % 2 == 1 { Some(self.varint()?) } else { None };
                Url::Template { t: t as u32, number }
            }
        })
    }
}

/// The sha256 forms of the record head (bits 4-5).
pub(crate) const SHA_NONE: u8 = 0;
pub(crate) const SHA_UPPER: u8 = 1;
pub(crate) const SHA_LOWER: u8 = 2;
pub(crate) const SHA_TEXT: u8 = 3;
pub(crate) const NSFW: u8 = 1 << 3;
pub(crate) const DESCRIPTION: u8 = 1 << 6;
pub(crate) const EXAMPLES: u8 = 1 << 7;

/// The form of a sha256 string and its 32 bytes when it is 64 hex digits of one case.
pub(crate) fn sha_form(s: &str) -> (u8, Option<[u8; 32]>) {
    if s.is_empty() {
        return (SHA_NONE, None);
    }
    let b = s.as_bytes();
    let upper = b.iter().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c));
    let lower = b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    if b.len() != 64 || !(upper || lower) {
        return (SHA_TEXT, None);
    }
    let nib = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    let mut raw = [0u8; 32];
    for (i, r) in raw.iter_mut().enumerate() {
        *r = nib(b[2 * i]) << 4 | nib(b[2 * i + 1]);
    }
    // all digits is both cases: upper, as Civitai publishes
    (if upper { SHA_UPPER } else { SHA_LOWER }, Some(raw))
}

/// One record's fields as positions in the store's bytes (strings borrowed, lists still encoded).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub head: u8,
    pub downloads: u64,
    pub weight: f32,
    pub favorites: u64,
    pub rating_count: u64,
    pub rating: f32,
    pub size_bytes: u64,
    pub n_example_prompts: u32,
    /// 32 raw bytes (upper / lower form) or the literal's UTF-8.
    pub sha: &'a [u8],
    pub name: &'a str,
    pub stem: &'a str,
    pub ext: u32,
    pub base_model: u32,
    pub tags: (u32, &'a [u8]),
    pub trigger_words: (u32, &'a [u8]),
    pub download_url: Url<'a>,
    pub model_page: Url<'a>,
    pub description: Option<&'a str>,
    pub examples: (u32, &'a [u8]),
}

/// Parses the record at the reader; with `check`, also that every string and template id exists.
pub(crate) fn parse<'a>(r: &mut Reader<'a>, strings: usize, templates: usize, check: bool) -> Result<Fields<'a>, String> {
    let head = r.u8()?;
    let (downloads, weight, favorites, rating_count, rating) = (r.varint()?, r.dec()?, r.varint()?, r.varint()?, r.dec()?);
    let (size_bytes, n_example_prompts) = (r.varint()?, r.u32()?);
    let sha = match (head >> 4) & 3 {
        SHA_NONE => &[][..],
        SHA_UPPER | SHA_LOWER => r.take(32)?,
        _ => r.str()?.as_bytes(),
    };
    let (name, stem) = (r.str()?, r.str()?);
    let sid = |r: &mut Reader<'a>| -> Result<u32, String> {
        let s = r.u32()?;
        if check && s as usize >= strings {
            return Err(format!("string id {s} beyond the table of {strings}"));
        }
        Ok(s)
    };
    let (ext, base_model) = (sid(r)?, sid(r)?);
    let (tags, trigger_words) = (r.sids(strings, check)?, r.sids(strings, check)?);
    let (download_url, model_page) = (r.url(templates, check)?, r.url(templates, check)?);
    let description = if head & DESCRIPTION != 0 { Some(r.str()?) } else { None };
    let examples = if head & EXAMPLES != 0 {
        let n = r.u32()?;
        let start = r.pos;
        if n == 0 {
            return Err("example prompts flagged but none stored".into());
        }
        for _ in 0..n {
            r.str()?;
        }
        (n, &r.b[start..r.pos])
    } else {
        (0, &[][..])
    };
    Ok(Fields {
        head,
        downloads,
        weight,
        favorites,
        rating_count,
        rating,
        size_bytes,
        n_example_prompts,
        sha,
        name,
        stem,
        ext,
        base_model,
        tags,
        trigger_words,
        download_url,
        model_page,
        description,
        examples,
    })
}

/// Appends one card's record (layout in the module doc).
pub(crate) fn record(out: &mut Vec<u8>, c: &Card, sid: &dyn Fn(&str) -> u64, template: &dyn Fn(&str, &str) -> Option<u32>) {
    let (form, raw) = sha_form(&c.sha256);
    let mut head = c.category as u8 | form << 4;
    head |= if c.nsfw { NSFW } else { 0 };
    head |= if c.description.is_some() { DESCRIPTION } else { 0 };
    head |= if c.example_prompts.is_empty() { 0 } else { EXAMPLES };
    out.push(head);
    put(out, c.stats.downloads);
    put_dec(out, c.weight);
    put(out, c.stats.favorites);
    put(out, c.stats.rating_count);
    put_dec(out, c.stats.rating);
    put(out, c.size_bytes);
    put(out, c.n_example_prompts as u64);
    match raw {
        Some(raw) => out.extend_from_slice(&raw),
        None if form == SHA_TEXT => put_str(out, &c.sha256),
        None => {}
    }
    put_str(out, &c.name);
    let (stem, ext) = split_ext(&c.file_name);
    put_str(out, stem);
    put(out, sid(ext));
    put(out, sid(&c.base_model));
    for list in [&c.tags, &c.trigger_words] {
        put(out, list.len() as u64);
        for s in list {
            put(out, sid(s));
        }
    }
    put_url(out, &c.download_url, c.id, template);
    put_url(out, &c.model_page, c.id, template);
    if let Some(d) = &c.description {
        put_str(out, d);
    }
    if !c.example_prompts.is_empty() {
        put(out, c.example_prompts.len() as u64);
        for p in &c.example_prompts {
            put_str(out, p);
        }
    }
}

impl Fields<'static> {
    /// No fields (what a view shows of a record that does not parse, which a checked store never has).
    pub(crate) fn empty() -> Self {
        Fields {
            head: Category::Other as u8,
            downloads: 0,
            weight: DEFAULT_WEIGHT,
            favorites: 0,
            rating_count: 0,
            rating: 0.0,
            size_bytes: 0,
            n_example_prompts: 0,
            sha: &[],
            name: "",
            stem: "",
            ext: u32::MAX,
            base_model: u32::MAX,
            tags: (0, &[]),
            trigger_words: (0, &[]),
            download_url: Url::Empty,
            model_page: Url::Empty,
            description: None,
            examples: (0, &[]),
        }
    }
}

/// The varints of an encoded id list.
pub(crate) fn ids(raw: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let mut r = Reader::new(raw);
    std::iter::from_fn(move || r.u32().ok())
}

/// The strings of an encoded example-prompt list.
pub(crate) fn strs(raw: &[u8]) -> impl Iterator<Item = &str> + '_ {
    let mut r = Reader::new(raw);
    std::iter::from_fn(move || r.str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decimals_and_numbers() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put(&mut b, v);
            let mut r = Reader::new(&b);
            assert_eq!((r.varint().unwrap(), r.pos), (v, b.len()));
        }
        assert!(Reader::new(&[0x80, 0x00]).varint().is_err(), "overlong");
        assert!(Reader::new(&[0xff; 10]).varint().is_err());
        assert!(Reader::new(&[0x80]).varint().is_err());
        for d in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(d)), d);
        }
        for x in [0.8f32, 4.92, 1.0, 0.0, -0.0, 1.5, 0.1, 1e-9, -3.25, f32::NAN, f32::INFINITY, 1e30, 123456.79] {
            let mut b = Vec::new();
            put_dec(&mut b, x);
            assert_eq!(Reader::new(&b).dec().unwrap().to_bits(), x.to_bits(), "{x}");
        }
        let mut b = Vec::new();
        put_dec(&mut b, 0.8);
        assert_eq!(b.len(), 1);
        assert_eq!(split_number("https://civitai.com/models/58390"), Some(("https://civitai.com/models/", 58390, "")));
        assert_eq!(split_number("https://x/12/a7.safetensors"), Some(("https://x/12/a", 7, ".safetensors")));
        assert_eq!(split_number("https://x/007"), None);
        assert_eq!(split_number("https://x/0"), Some(("https://x/", 0, "")));
        assert_eq!(split_number("https://x/99999999999999999999"), None);
        assert_eq!(split_number("no digits"), None);
        assert_eq!(split_ext("a.b.safetensors"), ("a.b", ".safetensors"));
        assert_eq!(split_ext("noext"), ("noext", ""));
        assert_eq!(sha_form("AB".repeat(32).as_str()).0, SHA_UPPER);
        assert_eq!(sha_form("ab".repeat(32).as_str()).0, SHA_LOWER);
        assert_eq!(sha_form("12".repeat(32).as_str()).0, SHA_UPPER);
        assert_eq!(sha_form("aB".repeat(32).as_str()).0, SHA_TEXT);
        assert_eq!(sha_form("AB").0, SHA_TEXT);
    }
}
