//! The compact card store: every [`Card`] of an [`Index`](crate::Index) kept as its encoded record in one
//! byte buffer (the bundle's cards section, verbatim) plus offsets, decoded on demand — a cheap
//! borrowed [`CardView`] (no allocation; what the composer reads) or an owned [`Card`].
//!
//! Section layout (format [`FORMAT`]; `v` = LEB128 varint; records in `store/codec.rs`):
//! ```text
//! u8 format | v n_strings, n × (v len + UTF-8) | v n_templates, n × (v prefix sid, v suffix sid)
//! | v n_cards | n × v zigzag(id - previous id) | n × record
//! ```
//! The string table holds base models, tags, trigger words, file extensions and URL template parts,
//! most used first (one-byte ids for the common ones). A URL whose last number, cut out, leaves a
//! prefix and suffix that at least two URLs share is stored as that template plus the number, or as
//! nothing more when the number is the card's id (`https://civitai.com/models/{id}`,
//! `https://civitai.com/api/download/models/{version}`); any other string is stored as written, so
//! every field round-trips exactly. sha256 is 32 raw bytes when it is 64 hex digits of one case.
//! Loading checks every record (ids, lengths, UTF-8, table references); the same cards always give
//! the same bytes.

mod codec;

use crate::card::{self, Card, Category, Stats, DEFAULT_WEIGHT};
use crate::Error;
use codec::{put, Fields, Reader, Url};
use std::collections::HashMap;

/// Format byte of the cards section this build writes and reads.
pub const FORMAT: u8 = 1;

/// The encoded cards and the offsets that make each one a slice (module doc). The per-document
/// accessors take `doc < len()` and panic otherwise, like slice indexing ([`crate::Index::card`] checks).
#[derive(Clone)]
pub struct CardStore {
    /// The section's bytes, verbatim.
    bytes: Vec<u8>,
    /// (start, end) of each string-table entry in `bytes`.
    strs: Vec<(u32, u32)>,
    /// (prefix, suffix) string ids of each URL template.
    templates: Vec<(u32, u32)>,
    ids: Vec<u64>,
    /// Documents in id order; empty when the ids ascend with the document number.
    order: Vec<u32>,
    /// Start of each record in `bytes`, and the end of the last one.
    recs: Vec<u32>,
    free_text: bool,
}

impl std::fmt::Debug for CardStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardStore({} cards, {} bytes, {} strings, {} templates)", self.len(), self.bytes.len(), self.strs.len(), self.templates.len())
    }
}

impl CardStore {
    /// Encodes cards (in order) into a store. Fails on a repeated id.
    pub fn build(cards: &[Card]) -> Result<Self, Error> {
        let mut ids: Vec<u64> = cards.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateCard(w[0]));
        }
        Self::read(Self::encode(cards)).map_err(Error::CatalogTooLarge)
    }

    /// The section bytes of cards (in order; ids are not checked here).
    pub fn encode(cards: &[Card]) -> Vec<u8> {
        let (mut counts, mut tcounts) = (HashMap::<&str, u64>::new(), HashMap::<(&str, &str), u64>::new());
        for c in cards {
            let strs = c.tags.iter().chain(&c.trigger_words).map(String::as_str);
            for s in strs.chain([c.base_model.as_str(), codec::split_ext(&c.file_name).1]) {
                *counts.entry(s).or_default() += 1;
            }
            for (p, _, x) in [&c.download_url, &c.model_page].into_iter().filter_map(|u| codec::split_number(u)) {
                *tcounts.entry((p, x)).or_default() += 1;
            }
        }
        let mut templates: Vec<((&str, &str), u64)> = tcounts.into_iter().filter(|t| t.1 >= 2).collect();
        templates.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for ((p, x), _) in &templates {
            *counts.entry(p).or_default() += 1;
            *counts.entry(x).or_default() += 1;
        }
        let mut strings: Vec<(&str, u64)> = counts.into_iter().collect();
        strings.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let sid: HashMap<&str, u64> = strings.iter().enumerate().map(|(i, s)| (s.0, i as u64)).collect();
        let tid: HashMap<(&str, &str), u32> = templates.iter().enumerate().map(|(i, t)| (t.0, i as u32)).collect();

        let mut out = vec![FORMAT];
        put(&mut out, strings.len() as u64);
        for (s, _) in &strings {
            codec::put_str(&mut out, s);
        }
        put(&mut out, templates.len() as u64);
        for ((p, x), _) in &templates {
            put(&mut out, sid[p]);
            put(&mut out, sid[x]);
        }
        put(&mut out, cards.len() as u64);
        let mut prev = 0u64;
        for c in cards {
            put(&mut out, codec::zigzag(c.id.wrapping_sub(prev) as i64));
            prev = c.id;
        }
        let template = |p: &str, x: &str| tid.get(&(p, x)).copied();
        for c in cards {
            codec::record(&mut out, c, &|s| sid.get(s).copied().unwrap_or(0), &template);
        }
        out
    }

    /// Reads a section made by [`CardStore::encode`], checking every record; `Err` says what is wrong.
    pub fn read(bytes: Vec<u8>) -> Result<Self, String> {
        if u32::try_from(bytes.len()).is_err() {
            return Err(format!("{} bytes: a card store holds at most 4 GiB", bytes.len()));
        }
        let mut r = Reader::new(&bytes);
        match r.u8().map_err(at("format"))? {
            FORMAT => {}
            f => return Err(format!("card store format {f} is not supported (this build reads {FORMAT})")),
        }
        let n = r.count().map_err(at("string table"))?;
        let mut strs = Vec::with_capacity(n);
        for i in 0..n {
            let s = r.str().map_err(at(format_args!("string {i}")))?;
            strs.push(((r.pos - s.len()) as u32, r.pos as u32));
        }
        let n = r.count().map_err(at("templates"))?;
        let mut templates = Vec::with_capacity(n);
        for i in 0..n {
            let t = (r.u32().map_err(at(format_args!("template {i}")))?, r.u32().map_err(at(format_args!("template {i}")))?);
            if t.0 as usize >= strs.len() || t.1 as usize >= strs.len() {
                return Err(format!("template {i}: string ids {t:?} beyond the table of {}", strs.len()));
            }
            templates.push(t);
        }
        let n = r.count().map_err(at("ids"))?;
        let mut ids = Vec::with_capacity(n);
        let mut prev = 0u64;
        for i in 0..n {
            prev = prev.wrapping_add(codec::unzigzag(r.varint().map_err(at(format_args!("id of card {i}")))?) as u64);
            ids.push(prev);
        }
        let mut recs = Vec::with_capacity(n + 1);
        let mut free_text = false;
        for (i, id) in ids.iter().enumerate() {
            recs.push(r.pos as u32);
            let f = codec::parse(&mut r, strs.len(), templates.len(), true).map_err(at(format_args!("card {i} (id {id})")))?;
            free_text |= f.description.is_some() || f.examples.0 > 0;
        }
        recs.push(r.pos as u32);
        if r.pos != bytes.len() {
            return Err(format!("{} bytes after the last card", bytes.len() - r.pos));
        }
        let order = if ids.windows(2).all(|w| w[0] < w[1]) {
            Vec::new()
        } else {
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_unstable_by_key(|&d| ids[d as usize]);
            if let Some(w) = order.windows(2).find(|w| ids[w[0] as usize] == ids[w[1] as usize]) {
                return Err(format!("card id {} appears twice", ids[w[0] as usize]));
            }
            order
        };
        Ok(CardStore { bytes, strs, templates, ids, order, recs, free_text })
    }

    /// The section encoding (what [`CardStore::read`] reads).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The section encoding with descriptions and example prompts left out.
    pub fn encode_without_free_text(&self) -> Vec<u8> {
        if !self.free_text {
            return self.bytes.clone();
        }
        Self::encode(&self.iter().map(|c| c.to_card().without_description()).collect::<Vec<_>>())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether any card has a description or example prompts.
    pub fn has_free_text(&self) -> bool {
        self.free_text
    }

    /// Bytes held in memory: the encoding plus its offsets and ids.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + 8 * (self.strs.capacity() + self.templates.capacity() + self.ids.capacity())
            + 4 * (self.order.capacity() + self.recs.capacity())
    }

    /// The model id of document `doc` (panics when `doc >= len()`, like slice indexing).
    pub fn id(&self, doc: u32) -> u64 {
        self.ids[doc as usize]
    }

    /// The document of a model id.
    pub fn doc(&self, id: u64) -> Option<u32> {
        if self.order.is_empty() {
            self.ids.binary_search(&id).ok().map(|d| d as u32)
        } else {
            self.order.binary_search_by_key(&id, |&d| self.ids[d as usize]).ok().map(|i| self.order[i])
        }
    }

    fn rec(&self, doc: u32) -> &[u8] {
        let d = doc as usize;
        &self.bytes[self.recs[d] as usize..self.recs[d + 1] as usize]
    }

    /// The category of document `doc`, read from its first byte.
    pub fn category(&self, doc: u32) -> Category {
        Category::ALL[(self.rec(doc)[0] & 7) as usize]
    }

    pub fn nsfw(&self, doc: u32) -> bool {
        self.rec(doc)[0] & codec::NSFW != 0
    }

    /// Downloads of document `doc` (its record's first field).
    pub fn downloads(&self, doc: u32) -> u64 {
        Reader::new(&self.rec(doc)[1..]).varint().unwrap_or(0)
    }

    /// Recommended weight of document `doc` (its record's second field).
    pub fn weight(&self, doc: u32) -> f32 {
        let mut r = Reader::new(&self.rec(doc)[1..]);
        r.varint().and_then(|_| r.dec()).unwrap_or(DEFAULT_WEIGHT)
    }

    /// Document `doc` as a borrowed view (parses its record; no allocation).
    pub fn card(&self, doc: u32) -> CardView<'_> {
        let mut r = Reader::new(self.rec(doc));
        let f = codec::parse(&mut r, self.strs.len(), self.templates.len(), false).unwrap_or_else(|_| Fields::empty());
        CardView { store: self, id: self.id(doc), f }
    }

    /// The card with a model id, as a view.
    pub fn get(&self, id: u64) -> Option<CardView<'_>> {
        self.doc(id).map(|d| self.card(d))
    }

    /// Every card in document order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = CardView<'_>> + '_ {
        (0..self.len() as u32).map(|d| self.card(d))
    }

    fn string(&self, sid: u32) -> &str {
        let (a, b) = self.strs.get(sid as usize).copied().unwrap_or((0, 0));
        std::str::from_utf8(&self.bytes[a as usize..b as usize]).unwrap_or_default()
    }

    fn url(&self, u: Url<'_>, id: u64) -> String {
        match u {
            Url::Empty => String::new(),
            Url::Literal(s) => s.to_string(),
            Url::Template { t, number } => {
                let (p, x) = self.templates.get(t as usize).copied().unwrap_or((0, 0));
                let (p, x) = (self.string(p), self.string(x));
                let (mut digits, mut n, mut at) = ([0u8; 20], number.unwrap_or(id), 20);
                loop {
                    at -= 1;
                    digits[at] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                [p, std::str::from_utf8(&digits[at..]).unwrap_or_default(), x].concat()
            }
        }
    }
}

/// Prefixes an error with where it happened.
fn at<D: std::fmt::Display>(what: D) -> impl FnOnce(String) -> String {
    move |e| format!("{what}: {e}")
}

/// One card of a [`CardStore`], borrowed: strings are slices of the store, URLs, sha256 and the file
/// name are built when asked for.
#[derive(Debug, Clone, Copy)]
pub struct CardView<'a> {
    store: &'a CardStore,
    id: u64,
    f: Fields<'a>,
}

impl<'a> CardView<'a> {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> &'a str {
        self.f.name
    }

    pub fn category(&self) -> Category {
        Category::ALL[(self.f.head & 7) as usize]
    }

    pub fn weight(&self) -> f32 {
        self.f.weight
    }

    pub fn nsfw(&self) -> bool {
        self.f.head & codec::NSFW != 0
    }

    pub fn tags(&self) -> impl Iterator<Item = &'a str> + 'a {
        let s = self.store;
        codec::ids(self.f.tags.1).map(move |i| s.string(i))
    }

    pub fn trigger_words(&self) -> impl Iterator<Item = &'a str> + 'a {
        let s = self.store;
        codec::ids(self.f.trigger_words.1).map(move |i| s.string(i))
    }

    pub fn base_model(&self) -> &'a str {
        self.store.string(self.f.base_model)
    }

    /// The file name without its extension (what `<lora:NAME:w>` uses).
    pub fn file_stem(&self) -> &'a str {
        self.f.stem
    }

    pub fn file_name(&self) -> String {
        format!("{}{}", self.f.stem, self.store.string(self.f.ext))
    }

    pub fn download_url(&self) -> String {
        self.store.url(self.f.download_url, self.id)
    }

    pub fn model_page(&self) -> String {
        self.store.url(self.f.model_page, self.id)
    }

    /// As written in the catalog (Civitai's upper-case hex), "" when unknown.
    pub fn sha256(&self) -> String {
        match (self.f.head >> 4) & 3 {
            codec::SHA_UPPER => crate::bundle::hex_case(self.f.sha, true),
            codec::SHA_LOWER => crate::bundle::hex_case(self.f.sha, false),
            codec::SHA_TEXT => String::from_utf8_lossy(self.f.sha).into_owned(),
            _ => String::new(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.f.size_bytes
    }

    pub fn stats(&self) -> Stats {
        Stats { downloads: self.f.downloads, favorites: self.f.favorites, rating: self.f.rating, rating_count: self.f.rating_count }
    }

    pub fn n_example_prompts(&self) -> u32 {
        self.f.n_example_prompts
    }

    pub fn description(&self) -> Option<&'a str> {
        self.f.description
    }

    pub fn example_prompts(&self) -> impl Iterator<Item = &'a str> + 'a {
        codec::strs(self.f.examples.1)
    }

    /// [`Card::a1111_name`] of this card.
    pub fn a1111_name(&self) -> String {
        card::a1111_name(self.id, self.f.name, self.f.stem)
    }

    /// The whole card, decoded.
    pub fn to_card(&self) -> Card {
        Card {
            id: self.id,
            name: self.f.name.to_string(),
            category: self.category(),
            weight: self.f.weight,
            tags: self.tags().map(str::to_string).collect(),
            trigger_words: self.trigger_words().map(str::to_string).collect(),
            base_model: self.base_model().to_string(),
            nsfw: self.nsfw(),
            file_name: self.file_name(),
            download_url: self.download_url(),
            sha256: self.sha256(),
            size_bytes: self.f.size_bytes,
            model_page: self.model_page(),
            stats: self.stats(),
            n_example_prompts: self.f.n_example_prompts,
            description: self.f.description.map(str::to_string),
            example_prompts: self.example_prompts().map(str::to_string).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
