//! Topic segmentation for the composer: splits a prompt into the phrases it is about, using only its
//! own words (the reference asks an LLM for "topics from the prompt"; this is the local, deterministic
//! stand-in). Rules:
//! - punctuation other than `-`, `'`, `"` and whitespace ends a phrase (`,` `;` `.` `(` `|` `:` ...);
//! - connector words end a phrase and are dropped: conjunctions, prepositions ("of", "in", "on",
//!   "with", "at", "near", ...), relation verbs ("wearing", "holding", "riding", ...), copulas and
//!   relative pronouns;
//! - an action word in -ing after a phrase's first content word is a phrase of its own ("a dog
//!   eating a treat" → "dog", "eating", "treat"; "glowing eyes" stays whole; nouns like "painting" or
//!   "building" are not actions);
//! - stopwords, numbers and fillers ("two", "couple", "next", "top", ...) are trimmed from both ends;
//! - phrases made only of quality boilerplate ("masterpiece, best quality, 8k") are dropped;
//! - a phrase of more than 4 words is cut into runs of at most 3 words (Han / kana text, one word
//!   per character: more than 8 into runs of 8);
//! - a phrase whose terms repeat an earlier topic's is dropped; at most [`MAX_TOPICS`] topics.

use crate::text::{is_cjk, term, words, Word};

/// Topics kept per prompt; later phrases are ignored.
pub const MAX_TOPICS: usize = 32;
/// Longest topic phrase in Han / kana text (one word per character).
const MAX_CJK_RUN: usize = 8;

const CONNECTORS: &[&str] = &[
    "above", "across", "after", "against", "along", "among", "amongst", "and", "are", "around", "as", "at", "before",
    "behind", "being", "below", "beneath", "beside", "besides", "between", "but", "by", "carrying", "during", "featuring",
    "for", "from", "has", "have", "having", "holding", "in", "inside", "into", "is", "near", "of", "on", "onto", "or",
    "outside", "over", "riding", "showing", "surrounded", "that", "there", "through", "to", "under", "using", "was",
    "wearing", "were", "which", "while", "who", "whose", "with", "within", "without",
];
const FILLERS: &[&str] = &[
    "bunch", "couple", "eight", "five", "four", "front", "group", "image", "lot", "lots", "many", "middle", "next",
    "nine", "one", "pair", "picture", "seven", "several", "side", "six", "ten", "three", "top", "two", "various",
];
const QUALITY: &[&str] = &[
    "16k", "4k", "8k", "absurdre", "best", "detailed", "extremely", "focus", "hd", "high", "highly", "highre",
    "intricate", "masterpiece", "quality", "res", "resolution", "sharp", "uhd", "ultra",
];
/// Words in -ing that are nouns in prompts (not split off as actions).
const ING_NOUNS: &[&str] = &[
    "anything", "awning", "bedding", "building", "ceiling", "clothing", "coloring", "colouring", "darling", "drawing",
    "dumpling", "earring", "ending", "evening", "everything", "frosting", "housing", "lighting", "lightning", "morning",
    "nothing", "offspring", "painting", "pudding", "railing", "rendering", "setting", "shading", "sibling", "something",
    "spring", "string", "stuffing", "viking", "wedding",
];

/// One phrase of the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    /// The phrase as written in the prompt.
    pub name: String,
    /// Byte span `[start, end)` in the prompt.
    pub span: [usize; 2],
    /// Its terms (see [`crate::text::term`]).
    pub terms: Vec<String>,
}

fn hard_break(gap: &str) -> bool {
    gap.chars().any(|c| !(c.is_whitespace() || matches!(c, '-' | '\'' | '’' | '"' | '“' | '”')))
}

fn is_cjk_word(w: &Word) -> bool {
    w.text.chars().next().is_some_and(is_cjk)
}

/// An action word ("eating", "running"): ASCII, six letters or more, ends in -ing, not a known noun.
fn is_action(lower: &str) -> bool {
    lower.len() >= 6 && lower.is_ascii() && lower.ends_with("ing") && ING_NOUNS.binary_search(&lower).is_err()
}

/// Splits a prompt into topic phrases (rules in the module doc).
pub fn phrases(prompt: &str) -> Vec<Phrase> {
    let ws = words(prompt);
    let mut segments: Vec<Vec<Word>> = vec![Vec::new()];
    let mut prev_end = 0;
    for w in ws {
        let lower = w.text.to_lowercase();
        let connector = CONNECTORS.binary_search(&lower.as_str()).is_ok();
        let brk = hard_break(&prompt[prev_end..w.start]) || connector;
        // An -ing word is an action only inside a running phrase ("dog eating"), not at its start.
        let action = !brk && is_action(&lower) && segments.last().is_some_and(|s| s.iter().any(|x| term(x.text).is_some()));
        if brk || action {
            segments.push(Vec::new());
        }
        prev_end = w.end;
        if let (false, Some(s)) = (connector, segments.last_mut()) {
            s.push(w);
        }
        if action {
            segments.push(Vec::new());
        }
    }
    let mut out: Vec<Phrase> = Vec::new();
    for seg in segments {
        let keep = |w: &Word| term(w.text).is_some_and(|t| FILLERS.binary_search(&t.as_str()).is_err());
        let Some(first) = seg.iter().position(keep) else { continue };
        let last = seg.iter().rposition(keep).unwrap_or(first);
        let seg = &seg[first..=last];
        // Han/kana text has one word per character, so its runs are longer; both are bounded.
        let (max, run) = if seg.iter().any(is_cjk_word) { (MAX_CJK_RUN, MAX_CJK_RUN) } else { (4, 3) };
        let chunks: Vec<&[Word]> = if seg.len() > max { seg.chunks(run).collect() } else { vec![seg] };
        for chunk in chunks {
            let (Some(a), Some(b)) = (chunk.iter().position(keep), chunk.iter().rposition(keep)) else { continue };
            let terms: Vec<String> = chunk[a..=b].iter().filter_map(|w| term(w.text)).collect();
            if terms.iter().all(|t| QUALITY.binary_search(&t.as_str()).is_ok()) {
                continue;
            }
            let mut key = terms.clone();
            key.sort();
            key.dedup();
            if out.iter().any(|p| {
                let mut k = p.terms.clone();
                k.sort();
                k.dedup();
                k == key
            }) {
                continue;
            }
            let span = [chunk[a].start, chunk[b].end];
            out.push(Phrase { name: prompt[span[0]..span[1]].to_string(), span, terms });
            if out.len() == MAX_TOPICS {
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &str) -> Vec<String> {
        phrases(p).into_iter().map(|t| t.name).collect()
    }

    #[test]
    fn lists_sorted() {
        for l in [CONNECTORS, FILLERS, QUALITY, ING_NOUNS] {
            assert!(l.windows(2).all(|w| w[0] < w[1]), "{:?}", l);
        }
    }

    #[test]
    fn splits_reference_prompts() {
        assert_eq!(names("a watercolor painting of a fox in a forest"), ["watercolor painting", "fox", "forest"]);
        assert_eq!(names("cyberpunk city at night, neon lights"), ["cyberpunk city", "night", "neon lights"]);
        assert_eq!(names("portrait of a woman wearing a kimono"), ["portrait", "woman", "kimono"]);
        assert_eq!(names("A small dog eating a treat next to a couple of knitted hats."), ["small dog", "eating", "treat", "knitted hats"]);
        assert_eq!(names("masterpiece, best quality, 8k, Airplane-shaped kites; blue sky"), ["Airplane-shaped kites", "blue sky"]);
        assert_eq!(names("fox, Fox, foxes and the FOX"), ["fox"]);
        assert_eq!(names("a girl with glowing eyes running through a building"), ["girl", "glowing eyes", "running", "building"]);
        assert_eq!(names("a cat, glowing eyes"), ["cat", "glowing eyes"]);
    }

    #[test]
    fn spans_point_into_prompt() {
        let p = "Ein Fuchs im Wald, 一只狐狸, лиса в лесу";
        let ph = phrases(p);
        assert!(!ph.is_empty());
        for t in &ph {
            assert_eq!(&p[t.span[0]..t.span[1]], t.name);
        }
        assert_eq!(ph[1].name, "一只狐狸");
        // mixed scripts without commas are bounded too
        let mixed = "1girl 少女 solo long hair blue eyes school uniform 森林の中の狐と少女が走っている";
        assert!(phrases(mixed).iter().all(|t| t.terms.len() <= MAX_CJK_RUN), "{:?}", names(mixed));
    }

    #[test]
    fn degenerate_inputs() {
        assert!(phrases("").is_empty());
        assert!(phrases("the of and, 2 3 !!! \u{0}\u{1b}[31m").len() <= 1);
        assert!(phrases("a, the, of").is_empty());
        let long = "red green blue cyan magenta yellow black";
        assert_eq!(names(long), ["red green blue", "cyan magenta yellow", "black"]);
        let many: String = (0..100).map(|i| format!("word{i}x, ")).collect();
        assert_eq!(phrases(&many).len(), MAX_TOPICS);
    }
}
