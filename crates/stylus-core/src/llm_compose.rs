//! Pure logic of the optional LLM composer (`stylus compose --llm`; Stylus, Luo et al. 2024,
//! stylus-diffusion/stylus, MIT, whose composer asks GPT-4o / Gemini): the OpenAI chat-completions
//! request built from the prompt and the local retrieval's candidates, the reply's parsing and
//! validation, and its conversion into the [`ComposeResponse`] the local composer produces (same
//! adapter records, masks and merge, [`crate::compose`]). The HTTP call is the binary's; any failure
//! there or here makes it use the local composer.
//!
//! # What the model sees
//! A system message with the task (the reference composer's rules, reworded) and one user message
//! holding JSON: `{"prompt", "max_per_topic", "max_styles", "adapters": [{"id", "name", "category",
//! "tags", "description"?}]}`. The adapters are the local composer's BM25 candidates for the prompt
//! (`options.top_k`, at most [`MAX_CANDIDATES`]), tags cut to [`MAX_TAGS`], descriptions (when the
//! index has them) to [`MAX_DESCRIPTION_CHARS`] characters.
//!
//! # What the model answers (the reference composer's output schema)
//! ```json
//! {"watercolor painting": {"12": "a watercolor style adapter, fits the topic"}, "fox": {"4": "..."}, "forest": {}}
//! ```
//! One key per topic of the prompt, in prompt order, mapping adapter ids to a reason; a list of ids
//! (`{"fox": [4, "9"]}`, the shape of the reference's COCO labels) is accepted too. The object may be
//! wrapped in a Markdown code fence or prose. Validation, in the order written:
//! * a topic must be made of the prompt's words (every term of it, [`text::terms`], is a term of the
//!   prompt), must not repeat an earlier topic's terms, and at most [`MAX_TOPICS`] are kept; others are
//!   dropped with their adapters. Its span is the shortest stretch of the prompt holding all its terms;
//! * an id must be one of the candidates shown; each adapter is kept once, at most `max_per_topic`
//!   per topic and `max_styles` of category style in all; the rest are dropped.
//!
//! Every drop is reported ([`LlmComposition::dropped`]). A reply that is not JSON, not an object of
//! topics, or keeps no topic at all (`{}` included) is an error ([`Error::LlmComposeReply`]).

use crate::card::{Card, Category};
use crate::compose::{self, ComposeRequest, ComposeResponse, Topic};
use crate::text::{self, clean_line, strip_network_tags, truncate_chars};
use crate::topics::{phrases, MAX_TOPICS};
use crate::{Error, Index};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Candidates shown to the model at most (even when `options.top_k` is larger).
pub const MAX_CANDIDATES: usize = 200;
/// Tags shown per candidate.
pub const MAX_TAGS: usize = 10;
/// Characters of a candidate's description shown.
pub const MAX_DESCRIPTION_CHARS: usize = 300;
/// Characters of a topic name kept.
const MAX_TOPIC_CHARS: usize = 200;

/// The system message: the task and the reply schema.
pub const SYSTEM_PROMPT: &str = "You choose LoRA adapters for a Stable Diffusion 1.5 prompt. The user sends JSON: the \
prompt, the limits max_per_topic and max_styles, and candidate adapters (id, name, category, tags, sometimes a \
description). First split the prompt into topics: the key words and short phrases it is about (subjects, objects, \
styles, backgrounds, poses, actions, adjectives). Take every topic from the prompt's own words, cover all its key \
words, keep topics separate from each other, prefer narrow topics, and merge two topics when one adapter is about both \
(e.g. \"black cat\"). Then give each topic 0 to max_per_topic candidate adapters whose main purpose directly matches the \
topic in the context of the prompt: not broader than the topic (no general food adapter for \"hot dog\"), not adding \
things the prompt does not ask for, no specific character or celebrity unless the prompt names one, nothing sexually \
explicit. Use each adapter at most once and at most max_styles adapters of category style in all. A topic with no \
fitting adapter gets an empty object. Reply with one JSON object and nothing else, topics in prompt order: \
{\"<topic as written in the prompt>\": {\"<adapter id>\": \"<why its main purpose fits the topic>\"}}.";

/// The local composer's retrieval for a request (validated first): the cards the model chooses from.
pub fn candidates(index: &Index, req: &ComposeRequest) -> Result<Vec<Card>, Error> {
    req.validate()?;
    let k = (req.options.top_k as usize).min(MAX_CANDIDATES);
    let docs = compose::retrieve(index, &req.prompt, &phrases(&req.prompt), k);
    Ok(docs.into_iter().map(|(d, _)| index.store().card(d).to_card()).collect())
}

/// The request body (`POST …/chat/completions`) asking `model` to compose `req` from `candidates`.
pub fn request_body(model: &str, req: &ComposeRequest, candidates: &[Card]) -> Vec<u8> {
    let adapters: Vec<Value> = candidates
        .iter()
        .map(|c| {
            let mut a = json!({"id": c.id, "name": c.name, "category": c.category.as_str(), "tags": c.tags.iter().take(MAX_TAGS).collect::<Vec<_>>()});
            if let Some(d) = c.description.as_deref().filter(|d| !d.is_empty()) {
                a["description"] = json!(truncate_chars(d, MAX_DESCRIPTION_CHARS));
            }
            a
        })
        .collect();
    let user = json!({
        "prompt": clean_line(&strip_network_tags(&req.prompt)),
        "max_per_topic": req.options.max_per_topic,
        "max_styles": req.options.max_styles,
        "adapters": adapters,
    });
    let body = json!({
        "model": model,
        "temperature": 0,
        "response_format": {"type": "json_object"},
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user.to_string()}],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A topic of a validated reply.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmTopic {
    /// The topic as the model wrote it (one clean line).
    pub name: String,
    /// Byte span `[start, end)` of the shortest stretch of the prompt holding all its terms.
    pub span: [usize; 2],
    /// Chosen adapter ids, in the model's order.
    pub ids: Vec<u64>,
}

/// A validated reply: topics with their adapters, and what validation dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmComposition {
    topics: Vec<LlmTopic>,
    dropped: Vec<String>,
}

impl LlmComposition {
    pub fn topics(&self) -> &[LlmTopic] {
        &self.topics
    }

    /// One line per topic or adapter id that validation dropped, with the reason.
    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }
}

/// Parses and validates a chat-completions response body for `req` (module doc); `candidates` are
/// the cards the model was shown.
pub fn parse_reply(bytes: &[u8], req: &ComposeRequest, candidates: &[Card]) -> Result<LlmComposition, Error> {
    let bad = |m: String| Error::LlmComposeReply(m);
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("response is not JSON: {e}")))?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        let msg = err.get("message").and_then(Value::as_str).map_or_else(|| err.to_string(), str::to_string);
        return Err(bad(format!("endpoint error: {}", truncate_chars(&msg, 200))));
    }
    let content = v.pointer("/choices/0/message/content").and_then(Value::as_str).ok_or_else(|| bad("no choices[0].message.content string".into()))?;
    let start = content.find('{').ok_or_else(|| bad("the reply holds no JSON object".into()))?;
    let end = content.rfind('}').filter(|e| *e > start).ok_or_else(|| bad("the reply holds no JSON object".into()))?;
    let Json::Obj(entries) = serde_json::from_str::<Json>(&content[start..=end]).map_err(|e| bad(format!("the reply's JSON is invalid: {e}")))? else {
        return Err(bad("the reply's JSON is not an object of topics".into()));
    };
    validate(entries, req, candidates)
}

fn validate(entries: Vec<(String, Json)>, req: &ComposeRequest, candidates: &[Card]) -> Result<LlmComposition, Error> {
    let o = &req.options;
    let prompt_words: Vec<(String, usize, usize)> = text::words(&req.prompt).into_iter().filter_map(|w| Some((text::term(w.text)?, w.start, w.end))).collect();
    let prompt_terms: HashSet<&str> = prompt_words.iter().map(|w| w.0.as_str()).collect();
    let by_id: HashMap<u64, &Card> = candidates.iter().map(|c| (c.id, c)).collect();
    let (mut topics, mut dropped, mut keys) = (Vec::<LlmTopic>::new(), Vec::new(), Vec::<Vec<String>>::new());
    let (mut used, mut styles) = (HashSet::new(), 0u32);
    for (raw, value) in entries {
        let name = truncate_chars(&clean_line(&strip_network_tags(&raw)), MAX_TOPIC_CHARS).to_string();
        let mut key = text::terms(&name);
        key.sort();
        key.dedup();
        let span = if key.is_empty() || !key.iter().all(|t| prompt_terms.contains(t.as_str())) { None } else { shortest_span(&prompt_words, &key) };
        let Some(span) = span else {
            dropped.push(format!("topic {name:?}: not made of the prompt's words"));
            continue;
        };
        if keys.contains(&key) {
            dropped.push(format!("topic {name:?}: repeats an earlier topic"));
            continue;
        }
        if topics.len() == MAX_TOPICS {
            dropped.push(format!("topic {name:?}: more than {MAX_TOPICS} topics"));
            continue;
        }
        let mut ids = Vec::new();
        for id in adapter_ids(&value, &name, &mut dropped) {
            let Some(card) = by_id.get(&id) else {
                dropped.push(format!("topic {name:?}: adapter {id} is not a candidate"));
                continue;
            };
            let style = card.category == Category::Style;
            let why = if used.contains(&id) {
                "is already used"
            } else if ids.len() >= o.max_per_topic as usize {
                "exceeds max_per_topic"
            } else if style && styles >= o.max_styles {
                "would exceed max_styles"
            } else {
                used.insert(id);
                styles += style as u32;
                ids.push(id);
                continue;
            };
            dropped.push(format!("topic {name:?}: adapter {id} {why}"));
        }
        keys.push(key);
        topics.push(LlmTopic { name, span, ids });
    }
    if topics.is_empty() {
        return Err(Error::LlmComposeReply("the reply keeps no topic made of the prompt's words".into()));
    }
    Ok(LlmComposition { topics, dropped })
}

/// The ids of a topic's value: an object's keys or a list's items (numbers or numeric strings).
fn adapter_ids(value: &Json, topic: &str, dropped: &mut Vec<String>) -> Vec<u64> {
    let items: Vec<Json> = match value {
        Json::Obj(entries) => entries.iter().map(|(k, _)| Json::Str(k.clone())).collect(),
        Json::Arr(items) => items.clone(),
        Json::Null => Vec::new(),
        _ => {
            dropped.push(format!("topic {topic:?}: its adapters are neither an object nor a list"));
            Vec::new()
        }
    };
    let mut out = Vec::new();
    for item in items {
        match (&item, &item) {
            (Json::Num(Some(id)), _) => out.push(*id),
            (Json::Str(s), _) if s.trim().parse::<u64>().is_ok() => out.extend(s.trim().parse::<u64>().ok()),
            _ => dropped.push(format!("topic {topic:?}: {} is not an adapter id", item.describe())),
        }
    }
    out
}

/// The byte span of the shortest run of prompt words holding every term of `need` (earliest on ties).
fn shortest_span(words: &[(String, usize, usize)], need: &[String]) -> Option<[usize; 2]> {
    let (mut count, mut have, mut lo, mut best) = (vec![0usize; need.len()], 0, 0, None::<[usize; 2]>);
    for hi in 0..words.len() {
        if let Some(k) = need.iter().position(|t| *t == words[hi].0) {
            count[k] += 1;
            have += (count[k] == 1) as usize;
        }
        while have == need.len() && lo <= hi {
            if best.is_none_or(|b| words[hi].2 - words[lo].1 < b[1] - b[0]) {
                best = Some([words[lo].1, words[hi].2]);
            }
            if let Some(k) = need.iter().position(|t| *t == words[lo].0) {
                count[k] -= 1;
                have -= (count[k] == 0) as usize;
            }
            lo += 1;
        }
    }
    best
}

/// The response for a validated reply: the same adapter records (score: BM25 of the topic's terms
/// against the card; why: the terms it matched), masks and merge as the local composer.
pub fn compose(index: &Index, req: &ComposeRequest, c: &LlmComposition) -> Result<ComposeResponse, Error> {
    req.validate()?;
    let mut names = BTreeMap::new();
    let mut topics = Vec::new();
    for t in &c.topics {
        let terms = text::terms(&t.name);
        let mut adapters = Vec::new();
        for &id in &t.ids {
            let Some(doc) = index.doc(id) else { continue };
            let card = index.store().card(doc);
            let (score, why) = index.lexical().score(&terms, doc);
            names.insert(id, card.a1111_name());
            adapters.push(compose::chosen(&card, score, why.into_iter().map(str::to_string).collect()));
        }
        topics.push(Topic { name: t.name.clone(), span: t.span, adapters });
    }
    let images = compose::images(&topics, &names, req);
    Ok(ComposeResponse { topics, images, timings_us: None })
}

/// JSON with object entries in the order written (`serde_json::Value` sorts keys); numbers are kept
/// only as non-negative integers (`None` otherwise).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Other,
    Num(Option<u64>),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn describe(&self) -> String {
        match self {
            Json::Str(s) => format!("{:?}", truncate_chars(s, 40)),
            Json::Num(None) => "a number".into(),
            _ => "a value".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Num(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Num(u64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Num((v.fract() == 0.0 && (0.0..1e15).contains(&v)).then_some(v as u64)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Str(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Json::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = a.next_entry::<String, Json>()? {
                    v.push(e);
                }
                Ok(Json::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: u64, name: &str, cat: Category, tags: &[&str]) -> Card {
        let mut c = Card::new(id, name);
        c.category = cat;
        c.tags = tags.iter().map(|s| s.to_string()).collect();
        c.weight = 0.5 + id as f32 / 10.0;
        c.file_name = format!("f{id}.safetensors");
        c
    }

    fn index() -> Index {
        let mut ix = vec![
            card(1, "Watercolor Style", Category::Style, &["style", "watercolor"]),
            card(2, "Ink Wash", Category::Style, &["style", "watercolor", "ink"]),
            card(3, "Paper Texture", Category::Style, &["style", "watercolor", "paper"]),
            card(4, "Fox", Category::Concept, &["fox", "animal"]),
            card(5, "Forest", Category::Background, &["forest"]),
            card(6, "Pine Forest", Category::Background, &["forest", "pine"]),
            card(7, "Misty Forest", Category::Background, &["forest", "mist"]),
            card(8, "Deep Forest", Category::Background, &["forest", "deep"]),
        ];
        ix[0].description = Some("Soft watercolor washes. ".repeat(40));
        Index::build(ix).unwrap()
    }

    fn req() -> ComposeRequest {
        ComposeRequest { num_images: 6, seed: 2, ..ComposeRequest::new("a watercolor painting of a fox in a forest") }
    }

    fn reply(content: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})).unwrap()
    }

    fn parse(ix: &Index, content: &str) -> Result<LlmComposition, Error> {
        let r = req();
        parse_reply(&reply(content), &r, &candidates(ix, &r).unwrap())
    }

    fn ids(c: &LlmComposition) -> Vec<(&str, Vec<u64>)> {
        c.topics().iter().map(|t| (t.name.as_str(), t.ids.clone())).collect()
    }

    #[test]
    fn request_body_schema() {
        let ix = index();
        let r = req();
        let cands = candidates(&ix, &r).unwrap();
        assert_eq!(cands.len(), 8);
        let v: Value = serde_json::from_slice(&request_body("gpt-x", &r, &cands)).unwrap();
        assert_eq!((v["model"].as_str(), v["messages"][0]["content"].as_str()), (Some("gpt-x"), Some(SYSTEM_PROMPT)));
        let user: Value = serde_json::from_str(v["messages"][1]["content"].as_str().unwrap()).unwrap();
        assert_eq!((user["prompt"].as_str(), user["max_per_topic"].as_u64(), user["max_styles"].as_u64()), (Some(r.prompt.as_str()), Some(3), Some(2)));
        let a = user["adapters"].as_array().unwrap();
        let w = a.iter().find(|a| a["id"] == 1).unwrap();
        assert_eq!((w["name"].as_str(), w["category"].as_str(), w["tags"][1].as_str()), (Some("Watercolor Style"), Some("style"), Some("watercolor")));
        assert_eq!(w["description"].as_str().unwrap().chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(a.iter().find(|a| a["id"] == 4).unwrap().get("description").is_none());
        let mut bad = req();
        bad.options.top_k = 0;
        assert_eq!(candidates(&ix, &bad).unwrap_err().code(), "top_k_out_of_range");
    }

    #[test]
    fn valid_reply_composes_like_the_local_path() {
        let ix = index();
        let c = parse(&ix, r#"{"watercolor painting": {"1": "watercolor"}, "fox": {"4": "a fox"}, "forest": [5, "6"]}"#).unwrap();
        assert_eq!(ids(&c), [("watercolor painting", vec![1]), ("fox", vec![4]), ("forest", vec![5, 6])]);
        assert!(c.dropped().is_empty());
        let r = req();
        let res = compose(&ix, &r, &c).unwrap();
        for t in &res.topics {
            assert_eq!(&r.prompt[t.span[0]..t.span[1]], t.name);
        }
        let fox = &res.topics[1].adapters[0];
        assert_eq!((fox.id, fox.name.as_str(), fox.weight, fox.why.as_slice()), (4, "Fox", 0.9, &["fox".to_string()][..]));
        assert!(fox.score > 0.0 && res.timings_us.is_none());
        for img in &res.images {
            assert!(!img.active.is_empty() && img.prompt == "a watercolor painting of a fox in a forest, realistic, best quality");
            for t in &res.topics {
                let on: Vec<_> = t.adapters.iter().filter(|a| img.mask[&a.id]).collect();
                for a in &on {
                    let act = img.active.iter().find(|x| x.id == a.id).unwrap();
                    assert_eq!(act.weight, a.weight * 0.8 / on.len() as f32);
                    assert!(img.a1111.contains(&format!("<lora:f{}:{:.2}>", a.id, act.weight)));
                }
            }
        }
        assert_eq!(res, compose(&ix, &r, &c).unwrap(), "deterministic");
    }

    #[test]
    fn invalid_parts_are_dropped() {
        let ix = index();
        // unknown ids, a duplicate, four for one topic, three styles, foreign and repeated topics
        let c = parse(
            &ix,
            r#"{"watercolor": {"1": "", "2": "", "3": "", "999": ""}, "fox": [4, 4, 1, "x", -3, 2.5, true],
                "forest": [5, 6, 7, 8], "dragon": [6], "Forests": [7], "painting": null, "a": [5]}"#,
        )
        .unwrap();
        assert_eq!(ids(&c), [("watercolor", vec![1, 2]), ("fox", vec![4]), ("forest", vec![5, 6, 7]), ("painting", vec![])]);
        let d = c.dropped().join("\n");
        for want in [
            "topic \"watercolor\": adapter 3 would exceed max_styles",
            "topic \"watercolor\": adapter 999 is not a candidate",
            "topic \"fox\": adapter 4 is already used",
            "topic \"fox\": adapter 1 is already used",
            "topic \"fox\": \"x\" is not an adapter id",
            "topic \"fox\": a number is not an adapter id",
            "topic \"fox\": a value is not an adapter id",
            "topic \"forest\": adapter 8 exceeds max_per_topic",
            "topic \"dragon\": not made of the prompt's words",
            "topic \"Forests\": repeats an earlier topic",
            "topic \"a\": not made of the prompt's words",
        ] {
            assert!(d.contains(want), "{want} not in\n{d}");
        }
        assert_eq!(c.dropped().len(), 12, "{d}");
        let c = parse(&ix, r#"{"fox": "4"}"#).unwrap();
        assert_eq!((ids(&c), c.dropped()), (vec![("fox", vec![])], &["topic \"fox\": its adapters are neither an object nor a list".to_string()][..]));
    }

    #[test]
    fn fenced_and_malformed_replies() {
        let ix = index();
        let c = parse(&ix, "Here:\n```json\n{\"fox\": {\"4\": \"fits\"}, \"forest\": {}}\n```").unwrap();
        assert_eq!(ids(&c), [("fox", vec![4]), ("forest", vec![])]);
        for (content, want) in [
            ("I cannot help with that.", "no JSON object"),
            ("} {", "no JSON object"),
            ("{\"fox\": [4,}", "invalid"),
            ("{}", "keeps no topic"),
            (r#"{"dragon": [4]}"#, "keeps no topic"),
        ] {
            let e = parse(&ix, content).unwrap_err();
            assert!(e.code() == "llm_compose_reply" && e.to_string().contains(want), "{e} lacks {want}");
        }
        let (r, cands) = (req(), candidates(&ix, &req()).unwrap());
        for (body, want) in [
            (&b"garbage"[..], "not JSON"),
            (br#"{"choices": []}"#, "choices"),
            (br#"{"error": {"message": "rate limited"}}"#, "rate limited"),
            (br#"{"choices": [{"message": {"content": "[1, 2]"}}]}"#, "no JSON object"),
        ] {
            let e = parse_reply(body, &r, &cands).unwrap_err();
            assert!(e.to_string().contains(want), "{e} lacks {want}");
        }
        let deep = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert!(parse(&ix, &deep).is_err());
    }

    #[test]
    fn spans_cover_scattered_words() {
        let p = "A large polar bear swimming in an exhibit at a zoo, polar light";
        let r = ComposeRequest::new(p);
        let c = Card::new(1, "x");
        let res = parse_reply(&reply(r#"{"polar bear swimming in a zoo exhibit": [1], "polar": []}"#), &r, &[c]).unwrap();
        assert_eq!(&p[res.topics()[0].span[0]..res.topics()[0].span[1]], "polar bear swimming in an exhibit at a zoo");
        assert_eq!(&p[res.topics()[1].span[0]..res.topics()[1].span[1]], "polar");
        let words = |s: &str| text::words(s).into_iter().filter_map(|w| Some((text::term(w.text)?, w.start, w.end))).collect::<Vec<_>>();
        assert_eq!(shortest_span(&words("fox a b fox forest"), &["forest".into(), "fox".into()]), Some([8, 18]));
        assert_eq!(shortest_span(&words("fox"), &["forest".into()]), None);
    }
}
