//! BERT uncased WordPiece tokenizer (the one of all-MiniLM-L6-v2), dependency-light so it runs in the
//! worker: a port of HF tokenizers' `BertNormalizer` (clean text, CJK padding, NFD accent stripping,
//! lowercase), `BertPreTokenizer` (split on whitespace and punctuation) and `WordPiece` (greedy
//! longest match with `##` continuations, `[UNK]` for words over 100 chars or without a match).
//! Checked against the HF tokenizer's ids in tests/fixtures/minilm/embeddings.json.

use std::collections::HashMap;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

/// Longest word WordPiece tries to split (longer words become `[UNK]`), as in HF.
const MAX_WORD_CHARS: usize = 100;

/// A WordPiece vocabulary and the tokenizer over it.
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: Vec<String>,
    ids: HashMap<String, u32>,
    unk: u32,
    /// Longest vocabulary entry, in chars (bounds the greedy search).
    max_piece: usize,
}

impl WordPiece {
    /// Builds from `vocab.txt` lines (one token per line, id = line number). Needs `[UNK]`.
    pub fn from_vocab_txt(text: &str) -> Result<Self, String> {
        Self::from_tokens(text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect())
    }

    /// Builds from the tokens in id order. Needs `[UNK]`; refuses repeated tokens.
    pub fn from_tokens(vocab: Vec<String>) -> Result<Self, String> {
        let mut ids = HashMap::with_capacity(vocab.len());
        let mut max_piece = 1;
        for (i, t) in vocab.iter().enumerate() {
            if ids.insert(t.clone(), i as u32).is_some() && !t.is_empty() {
                return Err(format!("vocabulary token {t:?} appears twice (line {})", i + 1));
            }
            max_piece = max_piece.max(t.chars().count());
        }
        let unk = *ids.get("[UNK]").ok_or("the vocabulary has no [UNK] token")?;
        Ok(WordPiece { vocab, ids, unk, max_piece })
    }

    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    pub fn tokens(&self) -> &[String] {
        &self.vocab
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Token ids of `text` without `[CLS]`/`[SEP]`, at most `max` of them.
    pub fn encode(&self, text: &str, max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        for word in pre_tokenize(&normalize(text)) {
            if out.len() >= max {
                break;
            }
            self.word_pieces(&word, &mut out);
        }
        out.truncate(max);
        out
    }

    fn word_pieces(&self, word: &str, out: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_WORD_CHARS {
            out.push(self.unk);
            return;
        }
        let mark = out.len();
        let mut start = 0;
        let mut piece = String::new();
        while start < chars.len() {
            let mut end = chars.len().min(start + self.max_piece);
            let mut found = None;
            while end > start {
                piece.clear();
                if start > 0 {
                    piece.push_str("##");
                }
                piece.extend(&chars[start..end]);
                if let Some(&id) = self.ids.get(piece.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => out.push(id),
                None => {
                    out.truncate(mark);
                    out.push(self.unk);
                    return;
                }
            }
            start = end;
        }
    }
}

/// `BertNormalizer` with the uncased defaults: control characters dropped, whitespace made a space,
/// CJK ideographs padded with spaces, NFD then combining marks dropped, lowercase.
pub fn normalize(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_control(c) {
            continue;
        }
        if is_whitespace(c) {
            cleaned.push(' ');
        } else if is_chinese(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    cleaned.nfd().map(|(c, _)| c).filter(|c| !c.is_mark_nonspacing()).flat_map(char::to_lowercase).collect()
}

/// `BertPreTokenizer`: whitespace separates words, every punctuation character is a word of its own.
pub fn pre_tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
        } else if is_punctuation(c) {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            words.push(c.to_string());
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r') || c.is_separator_space()
}

fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && (c.is_other_control() || c.is_other_format())
}

fn is_punctuation(c: char) -> bool {
    matches!(c as u32, 33..=47 | 58..=64 | 91..=96 | 123..=126) || c.is_punctuation()
}

fn is_chinese(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> WordPiece {
        let v = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "fox", "##es", "run", "##ning", ",", "cafe", "un", "##aff", "##able"];
        WordPiece::from_tokens(v.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn greedy_longest_match_with_continuations() {
        let wp = toy();
        assert_eq!(wp.encode("Foxes, RUNNING", 10), vec![4, 5, 8, 6, 7]);
        assert_eq!(wp.encode("unaffable", 10), vec![10, 11, 12]);
        // a word with an unmatched piece is one [UNK], not a partial split
        assert_eq!(wp.encode("foxy fox", 10), vec![1, 4]);
    }

    #[test]
    fn accents_controls_and_truncation() {
        let wp = toy();
        assert_eq!(wp.encode("Café\u{0007}", 10), vec![9]);
        assert_eq!(wp.encode("fox fox fox", 2), vec![4, 4]);
        assert_eq!(wp.encode(&"x".repeat(101), 10), vec![1]);
        assert_eq!(pre_tokenize("a.b  c"), vec!["a", ".", "b", "c"]);
        assert_eq!(normalize("猫Ä"), " 猫 a");
    }

    #[test]
    fn vocabulary_errors() {
        assert!(WordPiece::from_vocab_txt("a\nb\n").unwrap_err().contains("[UNK]"));
        assert!(WordPiece::from_vocab_txt("[UNK]\na\na\n").unwrap_err().contains("twice"));
    }
}
