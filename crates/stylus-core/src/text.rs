//! Deterministic text handling shared by the refiner, the BM25 index and the topic splitter: word
//! spans, the term normalizer (lowercase, stopwords, a light plural stemmer) and line cleaning.
//!
//! A *word* is a maximal run of alphanumeric characters (Unicode); every Han / kana character is a
//! word of its own (those scripts have no spaces). A *term* is a word lowercased, with pure numbers,
//! single ASCII letters and the stopwords below dropped, and a plural `-s` / `-es` / `-ies` removed
//! from ASCII words of four letters or more (`lights` → `light`, `foxes` → `fox`, `ladies` → `lady`).

/// Small English stopword list: function words that never name a concept.
pub const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "been", "being", "below", "both", "but", "by", "can", "could", "did", "do", "does", "doing",
    "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he",
    "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
    "just", "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only",
    "onto", "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should", "so", "some",
    "such", "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "this",
    "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
];

/// Whether `w` (lowercase) is a stopword.
pub fn is_stopword(w: &str) -> bool {
    STOPWORDS.binary_search(&w).is_ok()
}

/// Han ideographs and kana: scripts written without spaces, split one character per word.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// A word of the input and its byte span `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word<'a> {
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
}

/// The words of `s`, in order, with byte spans into `s`.
pub fn words(s: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        if c.is_alphanumeric() && !is_cjk(c) {
            start.get_or_insert(i);
            continue;
        }
        if let Some(st) = start.take() {
            out.push(Word { text: &s[st..i], start: st, end: i });
        }
        if is_cjk(c) {
            let end = i + c.len_utf8();
            out.push(Word { text: &s[i..end], start: i, end });
        }
    }
    if let Some(st) = start {
        out.push(Word { text: &s[st..], start: st, end: s.len() });
    }
    out
}

/// Removes a plural ending from an ASCII word of four letters or more.
fn stem(w: &mut String) {
    if w.len() < 4 || !w.is_ascii() {
        return;
    }
    if w.ends_with("ies") && w.len() > 4 {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if ["sses", "shes", "ches", "xes", "zes"].iter().any(|e| w.ends_with(e)) {
        w.truncate(w.len() - 2);
    } else if w.ends_with('s') && !["ss", "us", "is"].iter().any(|e| w.ends_with(e)) {
        w.truncate(w.len() - 1);
    }
}

/// The term of one word, or `None` when it carries no meaning (stopword, number, single letter).
pub fn term(word: &str) -> Option<String> {
    let mut w = word.to_lowercase();
    if w.is_empty() || w.chars().all(|c| c.is_numeric()) || (w.len() == 1 && w.is_ascii()) || is_stopword(&w) {
        return None;
    }
    stem(&mut w);
    Some(w)
}

/// The terms of a text, in order (duplicates kept).
pub fn terms(s: &str) -> Vec<String> {
    words(s).iter().filter_map(|w| term(w.text)).collect()
}

/// One line of display text: control characters become spaces, whitespace runs collapse, ends trimmed.
pub fn clean_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// `s` cut to at most `max` characters (on a character boundary).
pub fn truncate_chars(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

/// Removes A1111 extra-network tags (`<lora:…>`, `<lyco:…>`, `<locon:…>`, `<hypernet:…>`, any case),
/// so text from users or cards can never switch adapters on by itself.
pub fn strip_network_tags(s: &str) -> String {
    const KINDS: [&str; 4] = ["<lora:", "<lyco:", "<locon:", "<hypernet:"];
    let lower = s.to_ascii_lowercase(); // same byte offsets as `s`
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(i) = KINDS.iter().filter_map(|k| lower[pos..].find(k)).min().map(|i| pos + i) {
        out.push_str(&s[pos..i]);
        pos = lower[i..].find('>').map_or(s.len(), |j| i + j + 1);
    }
    out.push_str(&s[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_sorted() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn words_and_spans() {
        let s = "A fox, 墨心 Café-2!";
        let w: Vec<_> = words(s).iter().map(|w| (w.text, &s[w.start..w.end])).collect();
        assert!(w.iter().all(|(a, b)| a == b));
        let t: Vec<_> = w.iter().map(|x| x.0).collect();
        assert_eq!(t, ["A", "fox", "墨", "心", "Café", "2"]);
    }

    #[test]
    fn terms_normalize() {
        assert_eq!(terms("The Neon LIGHTS of 2 foxes and ladies, glasses, 3d, v2"), ["neon", "light", "fox", "lady", "glass", "3d", "v2"]);
        assert_eq!(terms("octopus bus series"), ["octopus", "bus", "sery"]);
        assert_eq!(terms("Ünïcode ÉTÉ русский 漢字"), ["ünïcode", "été", "русский", "漢", "字"]);
        assert!(terms("\u{0}\u{7}\t!!").is_empty());
    }

    #[test]
    fn clean_and_truncate() {
        assert_eq!(clean_line("  a\u{0}b \n\t c  "), "a b c");
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hé", 5), "hé");
    }

    #[test]
    fn network_tags_are_stripped() {
        assert_eq!(strip_network_tags("a fox <lora:evil:9> in <LyCo:x:1>a <hypernet:h:1>wood <locon:y"), "a fox  in a wood ");
        assert_eq!(strip_network_tags("<lora:x:0.5> mix4"), " mix4");
        assert_eq!(strip_network_tags("狐 <lora:é:1> ü"), "狐  ü");
        assert_eq!(strip_network_tags("no tags <b>"), "no tags <b>");
    }
}
