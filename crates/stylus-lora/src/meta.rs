//! kohya-ss training metadata (`ss_*` keys in the safetensors header, written by kohya-ss
//! `train_network.py`): the fields useful for Stylus adapter cards — output and base-model names,
//! network settings and the most frequent caption tags from `ss_tag_frequency` (NOTES §5.3,
//! "a local source of keywords").

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// A summary of kohya metadata.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct KohyaMeta {
    pub output_name: Option<String>,
    pub sd_model_name: Option<String>,
    pub base_model_version: Option<String>,
    pub network_module: Option<String>,
    pub network_dim: Option<String>,
    pub network_alpha: Option<String>,
    pub network_args: Option<String>,
    pub num_train_images: Option<String>,
    pub training_comment: Option<String>,
    /// Caption tags by total count over all dataset folders, most frequent first.
    pub top_tags: Vec<(String, u64)>,
    /// Number of distinct tags in `ss_tag_frequency`.
    pub distinct_tags: usize,
}

/// Summarises `ss_*` metadata; `None` when the file has none. Malformed `ss_tag_frequency` is
/// ignored (it is informative only).
pub fn kohya_meta(meta: &BTreeMap<String, String>, top_n: usize) -> Option<KohyaMeta> {
    if !meta.keys().any(|k| k.starts_with("ss_")) {
        return None;
    }
    let get = |k: &str| meta.get(k).filter(|v| !v.is_empty() && v.as_str() != "None").cloned();
    let mut counts: HashMap<String, u64> = HashMap::new();
    if let Some(Value::Object(dirs)) = meta.get("ss_tag_frequency").and_then(|s| serde_json::from_str(s).ok()) {
        for tags in dirs.values().filter_map(Value::as_object) {
            for (tag, n) in tags {
                let tag = tag.trim();
                if tag.is_empty() {
                    continue;
                }
                let c = counts.entry(tag.to_string()).or_insert(0);
                *c = c.saturating_add(n.as_u64().unwrap_or(0));
            }
        }
    }
    let distinct_tags = counts.len();
    let mut top: Vec<(String, u64)> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(top_n);
    Some(KohyaMeta {
        output_name: get("ss_output_name"),
        sd_model_name: get("ss_sd_model_name"),
        base_model_version: get("ss_base_model_version"),
        network_module: get("ss_network_module"),
        network_dim: get("ss_network_dim"),
        network_alpha: get("ss_network_alpha"),
        network_args: get("ss_network_args"),
        num_train_images: get("ss_num_train_images"),
        training_comment: get("ss_training_comment"),
        top_tags: top,
        distinct_tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_summed_over_folders_and_ranked() {
        let meta = BTreeMap::from([
            ("ss_output_name".to_string(), "fox_style".to_string()),
            ("ss_tag_frequency".to_string(), r#"{"10_a": {"fox": 3, " forest": 1}, "5_b": {"fox": 2, "autumn": 4, "": 9}}"#.to_string()),
        ]);
        let m = kohya_meta(&meta, 2).unwrap();
        assert_eq!(m.output_name.as_deref(), Some("fox_style"));
        assert_eq!(m.top_tags, vec![("fox".to_string(), 5), ("autumn".to_string(), 4)]);
        assert_eq!(m.distinct_tags, 3);
        assert!(kohya_meta(&BTreeMap::new(), 5).is_none());
        let bad = BTreeMap::from([("ss_tag_frequency".to_string(), "{not json".to_string())]);
        assert_eq!(kohya_meta(&bad, 5).unwrap().top_tags, vec![]);
    }
}
