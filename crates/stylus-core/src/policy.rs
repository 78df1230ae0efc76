//! Catalog policy: which cards may be composed. Defaults follow the reference composer's filters
//! (Stylus, stylus-diffusion/stylus): SD 1.x base models only, no NSFW, no character / celebrity
//! adapters, no "slider" adapters, enough evidence (example images), plus a blacklist and a minimum
//! download count. Beyond the reference, cards whose `nsfw` flag is false but whose tags or name
//! words are explicit (e.g. "hentai", "nude") are removed too, counted apart (`nsfw_terms`) so the
//! flag-based count stays comparable. Filters run in a fixed order and a card is counted against the first that
//! removes it.

use crate::card::Card;
use crate::Error;
use serde::{Deserialize, Serialize};

/// Tags that mark an adapter of a specific character or real person.
pub const CHARACTER_TAGS: &[&str] = &["character", "celebrity", "anime character", "game character", "video game character", "real person"];

/// Tags that mark explicit content on cards the `nsfw` flag missed.
pub const NSFW_TAGS: &[&str] = &["analingus", "bdsm", "erotic", "genitals", "hentai", "lewd", "naked", "nsfw", "nude", "nudes", "nudity", "porn", "pornstar", "sex"];
/// Words of a card name that mark explicit content.
pub const NSFW_NAME_WORDS: &[&str] = &["ass", "cum", "erotic", "hentai", "lewd", "naked", "nipples", "nsfw", "nude", "nudes", "nudity", "penis", "porn", "pussy", "sex"];

/// Filter settings; `Policy::default()` is the reference's (plus the explicit-term filter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// A card's `base_model` must start with one of these (default `["SD 1"]`); empty: any.
    pub base_model_prefixes: Vec<String>,
    /// Keep NSFW cards (disables both NSFW filters).
    pub allow_nsfw: bool,
    /// Tags (case-insensitive) that remove a card as NSFW although its flag is false.
    pub nsfw_tags: Vec<String>,
    /// Name words (case-insensitive) that remove a card as NSFW although its flag is false.
    pub nsfw_name_words: Vec<String>,
    /// Model ids never composed.
    pub blacklist: Vec<u64>,
    /// Cards with one of these tags (case-insensitive) are removed; empty: keep characters.
    pub character_tags: Vec<String>,
    /// Remove cards with "slider" in the name.
    pub exclude_sliders: bool,
    pub min_example_prompts: u32,
    pub min_downloads: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            base_model_prefixes: vec!["SD 1".into()],
            allow_nsfw: false,
            nsfw_tags: NSFW_TAGS.iter().map(|s| s.to_string()).collect(),
            nsfw_name_words: NSFW_NAME_WORDS.iter().map(|s| s.to_string()).collect(),
            blacklist: Vec::new(),
            character_tags: CHARACTER_TAGS.iter().map(|s| s.to_string()).collect(),
            exclude_sliders: true,
            min_example_prompts: 1,
            min_downloads: 0,
        }
    }
}

/// The filters, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    BaseModel,
    Nsfw,
    NsfwTerms,
    Blacklist,
    Character,
    Slider,
    Evidence,
}

impl Filter {
    pub const ALL: [Filter; 7] = [Filter::BaseModel, Filter::Nsfw, Filter::NsfwTerms, Filter::Blacklist, Filter::Character, Filter::Slider, Filter::Evidence];

    pub fn as_str(self) -> &'static str {
        match self {
            Filter::BaseModel => "base_model",
            Filter::Nsfw => "nsfw",
            Filter::NsfwTerms => "nsfw_terms",
            Filter::Blacklist => "blacklist",
            Filter::Character => "character",
            Filter::Slider => "slider",
            Filter::Evidence => "evidence",
        }
    }
}

/// How many cards each filter removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    pub input: usize,
    /// (filter, cards it removed), in filter order, every filter listed.
    pub removed: Vec<(Filter, usize)>,
    pub kept: usize,
}

impl PolicyReport {
    /// Cards removed by one filter.
    pub fn removed_by(&self, f: Filter) -> usize {
        self.removed.iter().find(|(g, _)| *g == f).map_or(0, |r| r.1)
    }
}

impl std::fmt::Display for PolicyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} cards in", self.input)?;
        for (filter, n) in &self.removed {
            write!(f, ", {} removed {n}", filter.as_str())?;
        }
        write!(f, ", {} kept", self.kept)
    }
}

impl Policy {
    /// The first filter that removes `card`, if any.
    pub fn rejects(&self, card: &Card) -> Option<Filter> {
        let lname = card.name.to_lowercase();
        let has = |list: &[String], s: &str| list.iter().any(|x| x.eq_ignore_ascii_case(s));
        let explicit = || {
            card.tags.iter().any(|t| has(&self.nsfw_tags, t)) || crate::text::words(&lname).iter().any(|w| has(&self.nsfw_name_words, w.text))
        };
        if !self.base_model_prefixes.is_empty() && !self.base_model_prefixes.iter().any(|p| card.base_model.starts_with(p.as_str())) {
            Some(Filter::BaseModel)
        } else if card.nsfw && !self.allow_nsfw {
            Some(Filter::Nsfw)
        } else if !self.allow_nsfw && explicit() {
            Some(Filter::NsfwTerms)
        } else if self.blacklist.contains(&card.id) {
            Some(Filter::Blacklist)
        } else if card.tags.iter().any(|t| has(&self.character_tags, t)) {
            Some(Filter::Character)
        } else if self.exclude_sliders && lname.contains("slider") {
            Some(Filter::Slider)
        } else if card.n_example_prompts < self.min_example_prompts || card.stats.downloads < self.min_downloads {
            Some(Filter::Evidence)
        } else {
            None
        }
    }

    /// Keeps the cards no filter removes. An empty result is [`Error::EmptyCatalog`] with the report.
    pub fn apply(&self, cards: Vec<Card>) -> Result<(Vec<Card>, PolicyReport), Error> {
        let input = cards.len();
        let mut counts = [0usize; Filter::ALL.len()];
        let kept: Vec<Card> = cards
            .into_iter()
            .filter(|c| match self.rejects(c) {
                Some(f) => {
                    counts[f as usize] += 1;
                    false
                }
                None => true,
            })
            .collect();
        let report = PolicyReport { input, removed: Filter::ALL.iter().map(|f| (*f, counts[*f as usize])).collect(), kept: kept.len() };
        if kept.is_empty() {
            return Err(Error::EmptyCatalog(format!("policy removed every card ({report})")));
        }
        Ok((kept, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: u64, f: impl FnOnce(&mut Card)) -> Card {
        let mut c = Card::new(id, format!("card {id}"));
        c.base_model = "SD 1.5".into();
        c.n_example_prompts = 3;
        c.stats.downloads = 100;
        f(&mut c);
        c
    }

    #[test]
    fn each_filter_counts() {
        let cards = vec![
            card(1, |_| {}),
            card(2, |c| c.base_model = "SDXL 1.0".into()),
            card(3, |c| c.nsfw = true),
            card(4, |_| {}),
            card(5, |c| c.tags = vec!["Celebrity".into()]),
            card(6, |c| c.name = "Age Slider".into()),
            card(7, |c| c.n_example_prompts = 0),
            card(8, |c| c.stats.downloads = 5),
            card(9, |c| c.base_model = "SD 1.4".into()),
            card(10, |c| c.tags = vec!["Hentai".into()]),
            card(11, |c| c.name = "Ass Licking (x)".into()),
            card(12, |c| c.name = "Classic bass".into()),
        ];
        let p = Policy { blacklist: vec![4], min_downloads: 10, ..Policy::default() };
        let (kept, r) = p.apply(cards).unwrap();
        assert_eq!(kept.iter().map(|c| c.id).collect::<Vec<_>>(), [1, 9, 12]);
        assert_eq!(r.removed.iter().map(|x| x.1).collect::<Vec<_>>(), [1, 1, 2, 1, 1, 1, 2]);
        assert_eq!((r.input, r.kept, r.removed_by(Filter::Evidence)), (12, 3, 2));
        assert!(r.to_string().starts_with("12 cards in, base_model removed 1"));
    }

    #[test]
    fn empty_result_is_an_error_naming_filters() {
        let err = Policy::default().apply(vec![card(1, |c| c.nsfw = true)]).unwrap_err();
        assert_eq!(err.code(), "empty_catalog");
        assert!(err.to_string().contains("nsfw removed 1"), "{err}");
        assert!(Policy::default().apply(Vec::new()).is_err());
    }

    #[test]
    fn policy_json() {
        let p: Policy = serde_json::from_str(r#"{"allow_nsfw": true, "base_model_prefixes": []}"#).unwrap();
        assert!(p.allow_nsfw && p.exclude_sliders && p.rejects(&card(1, |c| c.base_model.clear())).is_none());
        assert!(p.rejects(&card(1, |c| c.tags = vec!["nsfw".into()])).is_none());
        assert!(serde_json::from_str::<Policy>(r#"{"bogus": 1}"#).is_err());
    }
}
