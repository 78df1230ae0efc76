//! Hybrid retrieval: the union of several candidate lists (dense cosine, BM25 over the card's fields,
//! BM25 over its example prompts), every candidate scored exactly by every signal, each signal scaled
//! by its best score for the query, then mixed with fixed weights. The default weights were chosen by
//! the quality benchmark (benches/retrieval_quality.py, BENCHMARKS.md).

use super::ann::top_k;
use serde::{Deserialize, Serialize};

/// Fusion settings: weights of the dense, card-field BM25 and example-prompt BM25 signals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fusion {
    pub dense: f32,
    pub lexical: f32,
    pub examples: f32,
    /// Candidates taken from each list before fusion (at least the requested k).
    pub depth: usize,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion { dense: 0.4, lexical: 0.3, examples: 0.3, depth: 300 }
    }
}

impl Fusion {
    /// Checks the weights: finite, ≥ 0, not all zero.
    pub fn validate(&self) -> Result<(), String> {
        let w = [self.dense, self.lexical, self.examples];
        if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f32>() <= 0.0 {
            return Err(format!("fusion weights {w:?} must be finite, non-negative and not all zero"));
        }
        Ok(())
    }
}

/// One signal: its candidates (best first, with their exact scores: fusion uses them as given), the
/// exact score of any document, and its weight.
pub struct Signal<'a> {
    pub hits: Vec<(u32, f32)>,
    pub score: Box<dyn Fn(u32) -> f32 + 'a>,
    pub weight: f32,
}

/// Fuses the signals; returns the `k` best `(doc, fused score)`, best first (ties: lower doc first).
pub fn fuse(signals: &[Signal], k: usize) -> Vec<(u32, f32)> {
    let mut docs: Vec<u32> = signals.iter().flat_map(|s| s.hits.iter().map(|h| h.0)).collect();
    docs.sort_unstable();
    docs.dedup();
    // a signal's own hits carry their exact scores already; only the other signals' documents are scored
    let scores: Vec<Vec<f32>> = signals
        .iter()
        .map(|s| {
            let mut own = s.hits.clone();
            own.sort_unstable_by_key(|h| h.0);
            docs.iter().map(|&d| own.binary_search_by_key(&d, |h| h.0).map_or_else(|_| (s.score)(d), |i| own[i].1).max(0.0)).collect()
        })
        .collect();
    let factors: Vec<f32> = signals
        .iter()
        .zip(&scores)
        .map(|(s, v)| {
            let m = v.iter().fold(0f32, |a, &x| a.max(x));
            if m > 0.0 {
                s.weight / m
            } else {
                0.0
            }
        })
        .collect();
    top_k(docs.iter().enumerate().map(|(j, &d)| (d, scores.iter().zip(&factors).map(|(v, f)| v[j] * f).sum())), k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig<'a>(hits: &[(u32, f32)], all: &'a [f32], weight: f32) -> Signal<'a> {
        Signal { hits: hits.to_vec(), score: Box::new(move |d| all[d as usize]), weight }
    }

    #[test]
    fn fusion_mixes_lists_with_exact_scores() {
        let dense = [0.9, 0.1, 0.5, 0.0];
        let lex = [0.0, 5.0, 4.0, 2.0];
        let f = |a: f32| fuse(&[sig(&[(0, 0.9), (2, 0.5)], &dense, a), sig(&[(1, 5.0), (2, 4.0)], &lex, 1.0 - a)], 3);
        // doc 2 is second in both lists and wins the balanced mix: 0.5·(0.5/0.9) + 0.5·(4/5)
        assert_eq!(f(0.5)[0].0, 2);
        assert_eq!(f(1.0)[0].0, 0);
        assert_eq!(f(0.0)[0].0, 1);
        // doc 3 was in no list: never returned
        assert!(f(0.5).iter().all(|h| h.0 != 3));
        // a signal without any positive score adds nothing
        let zero = [0.0; 4];
        assert_eq!(fuse(&[sig(&[(0, 0.9)], &dense, 1.0), sig(&[(3, 0.0)], &zero, 1.0)], 1)[0], (0, 1.0));
    }

    #[test]
    fn weights_are_validated() {
        assert!(Fusion::default().validate().is_ok());
        assert!(Fusion { dense: -1.0, ..Fusion::default() }.validate().is_err());
        assert!(Fusion { dense: 0.0, lexical: 0.0, examples: 0.0, depth: 1 }.validate().is_err());
        assert!(Fusion { dense: f32::NAN, ..Fusion::default() }.validate().is_err());
    }
}
