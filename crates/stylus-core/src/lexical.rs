//! BM25 lexical index ("bm25-v1") over each card's name (counted twice), tags, trigger words and,
//! when present, cleaned description, with the tokenizer of [`crate::text`]. Okapi BM25 with k1 = 1.2, b = 0.75 and
//! Lucene's non-negative idf `ln(1 + (N - n + 0.5) / (n + 0.5))` (Robertson & Zaragoza 2009).
//!
//! Postings are flat, sorted arrays (term → doc, tf), so a query touches only the documents that
//! contain its terms. Scores use only IEEE `+ - * /` and an in-crate `ln`, so native and wasm32 give
//! bit-identical scores and rankings. [`Bm25::write`] / [`Bm25::read`] store the postings in bundles
//! (LEB128 varints, terms in byte order, doc ids delta-coded), so loading does not re-tokenize.

use crate::card::Card;
use crate::text::terms;

/// Identifies this scorer + tokenizer in bundle headers.
pub const EMBEDDER_ID: &str = "bm25-v1";
pub const K1: f32 = 1.2;
pub const B: f32 = 0.75;

/// The terms of a card's example prompts (its second BM25 field, [`crate::Index::examples`]).
pub fn example_terms(card: &Card) -> Vec<String> {
    card.example_prompts.iter().flat_map(|p| terms(p)).collect()
}

/// The terms a card is indexed under: name (twice: a light title boost, which raised COCO silver
/// recall@150 from 0.773 to 0.778 on the 2023-07 catalog), tags, trigger words, description (when
/// present).
pub fn card_terms(card: &Card) -> Vec<String> {
    let mut t = terms(&card.name);
    t.extend_from_within(..);
    for s in card.tags.iter().chain(&card.trigger_words).chain(&card.description) {
        t.extend(terms(s));
    }
    t
}

/// Natural logarithm from `+ - * /` only (same bits on every platform), for x > 0 and finite.
pub fn ln(x: f64) -> f64 {
    if !(x > 0.0 && x.is_finite()) {
        return f64::NAN;
    }
    let (mut x, mut e) = (x, 0i64);
    if x < f64::MIN_POSITIVE {
        x *= (1u64 << 54) as f64;
        e -= 54;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    // ln(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.172: 14 odd terms reach double precision.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let (mut sum, mut pow) = (0.0, s);
    for k in 0..14 {
        sum += pow / (2 * k + 1) as f64;
        pow *= s2;
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}

/// A BM25 index over documents numbered 0..n in insertion order.
#[derive(Debug, Clone, PartialEq)]
pub struct Bm25 {
    vocab: Vec<String>,
    offsets: Vec<u32>,
    docs: Vec<u32>,
    tfs: Vec<u32>,
    doc_len: Vec<u32>,
    idf: Vec<f32>,
    /// k1 · (1 - b + b · len / avgdl) per document.
    norm: Vec<f32>,
}

/// Query terms resolved against a [`Bm25`] vocabulary ([`Bm25::query`]): distinct known terms with
/// their term numbers, valid only for the index that made it.
#[derive(Debug, Clone, Default)]
pub struct Query<'q> {
    terms: Vec<(&'q str, usize)>,
}

impl<'q> Query<'q> {
    /// The `i`-th resolved term, as written in the query.
    pub fn term(&self, i: usize) -> &'q str {
        self.terms[i].0
    }

    /// Resolved terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

// Score accumulators, one per live [`Accumulated`], as long as the largest index searched and kept
// zeroed: only the touched entries are reset when one is dropped (no allocation or zeroing of N floats
// per query).
thread_local!(static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) });

/// A query's BM25 score for every document ([`Bm25::accumulate`]); documents sharing no term score 0.
pub struct Accumulated {
    acc: Vec<f32>,
    touched: Vec<u32>,
}

impl Accumulated {
    /// The score of `doc` (0 for a document outside the index).
    pub fn score(&self, doc: u32) -> f32 {
        self.acc.get(doc as usize).copied().unwrap_or(0.0)
    }

    /// The `k` best documents, best first; ties go to the lower document number. Documents sharing no
    /// term are never returned.
    pub fn top(&self, k: usize) -> Vec<(u32, f32)> {
        crate::embed::ann::top_k(self.touched.iter().map(|&d| (d, self.acc[d as usize])), k)
    }
}

impl Drop for Accumulated {
    fn drop(&mut self) {
        // scattered stores for a few documents, one sequential fill for many
        if self.touched.len() * 8 > self.acc.len() {
            self.acc.fill(0.0);
        } else {
            for &d in &self.touched {
                self.acc[d as usize] = 0.0;
            }
        }
        let acc = std::mem::take(&mut self.acc);
        // a thread being torn down has no pool left: the buffer is simply freed
        let _ = POOL.try_with(|p| p.borrow_mut().push(acc));
    }
}

impl Bm25 {
    /// Indexes documents given as term lists.
    pub fn build<I: IntoIterator<Item = Vec<String>>>(docs: I) -> Self {
        let mut map: std::collections::HashMap<String, Vec<(u32, u32)>> = Default::default();
        let mut doc_len = Vec::new();
        for (d, mut t) in docs.into_iter().enumerate() {
            doc_len.push(t.len() as u32);
            t.sort_unstable();
            let mut i = 0;
            while i < t.len() {
                let j = i + t[i..].iter().take_while(|x| **x == t[i]).count();
                let p = (d as u32, (j - i) as u32);
                match map.get_mut(&t[i]) {
                    Some(v) => v.push(p),
                    None => {
                        map.insert(std::mem::take(&mut t[i]), vec![p]);
                    }
                }
                i = j;
            }
        }
        let mut vocab: Vec<(String, Vec<(u32, u32)>)> = map.into_iter().collect();
        vocab.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut idx = Bm25 { doc_len, ..Self::empty() };
        for (term, posts) in vocab {
            idx.vocab.push(term);
            idx.docs.extend(posts.iter().map(|p| p.0));
            idx.tfs.extend(posts.iter().map(|p| p.1));
            idx.offsets.push(idx.docs.len() as u32);
        }
        idx.finish();
        idx
    }

    fn empty() -> Self {
        Bm25 { vocab: Vec::new(), offsets: vec![0], docs: Vec::new(), tfs: Vec::new(), doc_len: Vec::new(), idf: Vec::new(), norm: Vec::new() }
    }

    /// Derives idf and length norms from the postings.
    fn finish(&mut self) {
        let n = self.doc_len.len() as f64;
        let total: u64 = self.doc_len.iter().map(|l| *l as u64).sum();
        let avgdl = if n > 0.0 { (total as f64 / n).max(1.0) } else { 1.0 };
        self.idf = self.offsets.windows(2).map(|w| ln(1.0 + (n - (w[1] - w[0]) as f64 + 0.5) / ((w[1] - w[0]) as f64 + 0.5)) as f32).collect();
        self.norm = self.doc_len.iter().map(|l| (K1 as f64 * (1.0 - B as f64 + B as f64 * *l as f64 / avgdl)) as f32).collect();
    }

    pub fn num_docs(&self) -> usize {
        self.doc_len.len()
    }

    pub fn num_terms(&self) -> usize {
        self.vocab.len()
    }

    pub fn num_postings(&self) -> usize {
        self.docs.len()
    }

    fn term_id(&self, term: &str) -> Option<usize> {
        self.vocab.binary_search_by(|t| t.as_str().cmp(term)).ok()
    }

    fn postings(&self, t: usize) -> (&[u32], &[u32]) {
        let r = self.offsets[t] as usize..self.offsets[t + 1] as usize;
        (&self.docs[r.clone()], &self.tfs[r])
    }

    /// The inverse document frequency of a term (0 when absent).
    pub fn idf(&self, term: &str) -> f32 {
        self.term_id(term).map_or(0.0, |t| self.idf[t])
    }

    #[inline]
    fn term_score(&self, t: usize, doc: u32, tf: u32) -> f32 {
        let tf = tf as f32;
        self.idf[t] * tf * (K1 + 1.0) / (tf + self.norm[doc as usize])
    }

    /// Resolves query terms against the vocabulary once (distinct, in query order; terms the index
    /// does not know are left out: they match nothing). Score many documents with one [`Query`].
    pub fn query<'q>(&self, terms: &'q [String]) -> Query<'q> {
        let mut q = Query { terms: Vec::new() };
        for term in terms {
            if let Some(t) = self.term_id(term) {
                if !q.terms.iter().any(|&(_, u)| u == t) {
                    q.terms.push((term.as_str(), t));
                }
            }
        }
        q
    }

    /// The inverse document frequency of a query's `i`-th term.
    pub fn query_idf(&self, q: &Query<'_>, i: usize) -> f32 {
        self.idf[q.terms[i].1]
    }

    /// The `k` best documents for the query terms (each distinct term counted once), best first;
    /// ties go to the lower document number. Documents sharing no term are never returned.
    pub fn search(&self, query: &[String], k: usize) -> Vec<(u32, f32)> {
        self.search_query(&self.query(query), k)
    }

    /// [`Bm25::search`] for a resolved query.
    pub fn search_query(&self, q: &Query<'_>, k: usize) -> Vec<(u32, f32)> {
        self.accumulate(q).top(k)
    }

    /// The scores of every document for a resolved query, accumulated over the postings of its terms:
    /// [`Accumulated::top`] ranks them, [`Accumulated::score`] reads any document's in O(1) (the same
    /// value as [`Bm25::score_query`]).
    pub fn accumulate(&self, q: &Query<'_>) -> Accumulated {
        let mut acc = POOL.with_borrow_mut(Vec::pop).unwrap_or_default();
        if acc.len() < self.num_docs() {
            acc.resize(self.num_docs(), 0.0);
        }
        let mut touched = Vec::new();
        for &(_, t) in &q.terms {
            let (docs, tfs) = self.postings(t);
            for (&d, &tf) in docs.iter().zip(tfs) {
                if acc[d as usize] == 0.0 {
                    touched.push(d);
                }
                acc[d as usize] += self.term_score(t, d, tf);
            }
        }
        Accumulated { acc, touched }
    }

    /// BM25 of the query terms against one document, and the distinct query terms it contains.
    pub fn score<'q>(&self, query: &'q [String], doc: u32) -> (f32, Vec<&'q str>) {
        let q = self.query(query);
        let mut matched = Vec::new();
        let s = self.score_matches(&q, doc, &mut matched);
        (s, matched.into_iter().map(|i| q.terms[i].0).collect())
    }

    /// BM25 of a resolved query against one document.
    pub fn score_query(&self, q: &Query<'_>, doc: u32) -> f32 {
        q.terms.iter().filter_map(|&(_, t)| self.tf(t, doc).map(|tf| self.term_score(t, doc, tf))).sum()
    }

    /// [`Bm25::score_query`], and the positions in `q` of the terms the document contains (into
    /// `matched`, cleared first; [`Query::term`] names them).
    pub fn score_matches(&self, q: &Query<'_>, doc: u32, matched: &mut Vec<usize>) -> f32 {
        matched.clear();
        let mut score = 0.0;
        for (i, &(_, t)) in q.terms.iter().enumerate() {
            if let Some(tf) = self.tf(t, doc) {
                score += self.term_score(t, doc, tf);
                matched.push(i);
            }
        }
        score
    }

    /// The frequency of term `t` in `doc`, when it occurs there.
    fn tf(&self, t: usize, doc: u32) -> Option<u32> {
        let (docs, tfs) = self.postings(t);
        docs.binary_search(&doc).ok().map(|i| tfs[i])
    }

    /// Appends the index in its bundle encoding.
    pub fn write(&self, out: &mut Vec<u8>) {
        put(out, self.num_docs() as u64);
        for &l in &self.doc_len {
            put(out, l as u64);
        }
        put(out, self.num_terms() as u64);
        for (t, term) in self.vocab.iter().enumerate() {
            put(out, term.len() as u64);
            out.extend_from_slice(term.as_bytes());
            let (docs, tfs) = self.postings(t);
            put(out, docs.len() as u64);
            let mut prev = 0;
            for (&d, &tf) in docs.iter().zip(tfs) {
                put(out, (d - prev) as u64);
                put(out, tf as u64);
                prev = d;
            }
        }
    }

    /// Reads the bundle encoding, checking every bound; `Err` says what is wrong.
    pub fn read(bytes: &[u8]) -> Result<Self, String> {
        Self::read_sized(bytes, 0)
    }

    /// [`Bm25::read`] with the number of postings the caller expects (a bundle header's count): the
    /// arrays are reserved once at that size (capped by what `bytes` can hold, two bytes a posting)
    /// instead of growing by doubling, whose spare capacity would stay in a wasm isolate's memory.
    pub fn read_sized(bytes: &[u8], postings: u64) -> Result<Self, String> {
        let mut r = Reader { b: bytes, pos: 0 };
        let n = r.count(bytes.len())?;
        let mut idx = Bm25::empty();
        let cap = (postings as usize).min(bytes.len() / 2);
        idx.docs.reserve_exact(cap);
        idx.tfs.reserve_exact(cap);
        idx.doc_len = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
        let n_terms = r.count(bytes.len())?;
        // (a term takes at least three bytes: its length, one byte of text, its document count)
        idx.vocab.reserve_exact(n_terms.min(bytes.len() / 3));
        idx.offsets.reserve_exact(n_terms.min(bytes.len() / 3) + 1);
        for _ in 0..n_terms {
            let len = r.count(bytes.len())?;
            let raw = r.take(len)?;
            let term = std::str::from_utf8(raw).map_err(|_| "term is not UTF-8".to_string())?;
            if idx.vocab.last().is_some_and(|p| p.as_str() >= term) {
                return Err(format!("terms out of order at {term:?}"));
            }
            let df = r.count(n)?;
            let mut prev: Option<u32> = None;
            for _ in 0..df {
                let d = r.u32()?.checked_add(prev.unwrap_or(0)).filter(|d| (*d as usize) < n && prev.is_none_or(|p| *d > p));
                let d = d.ok_or_else(|| format!("bad posting for {term:?}"))?;
                idx.docs.push(d);
                idx.tfs.push(r.u32()?.max(1));
                prev = Some(d);
            }
            idx.vocab.push(term.to_string());
            idx.offsets.push(idx.docs.len() as u32);
        }
        if r.pos != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - r.pos));
        }
        idx.finish();
        Ok(idx)
    }
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or("lexical section truncated")?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| "value exceeds u32".into())
    }

    /// A count that cannot exceed `max` (guards allocations against corrupt input).
    fn count(&mut self, max: usize) -> Result<usize, String> {
        let v = self.varint()?;
        usize::try_from(v).ok().filter(|v| *v <= max).ok_or_else(|| format!("count {v} exceeds {max}"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self.b.get(self.pos..self.pos + n).ok_or("lexical section truncated")?;
        self.pos += n;
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
