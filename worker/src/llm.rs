//! The optional LLM composer in the worker, runtime-free (tested natively): the request's `composer`
//! option, the chat-completions request (`stylus_core::llm_compose`: the local retrieval's candidates
//! in the reference composer's schema), and the answer from what the endpoint did: its validated
//! composition through the local masks and merge, or — after a timeout, a transport error, a non-2xx
//! status, an oversized or an invalid reply — the local composer's answer with the reason as a stable
//! code and a fixed message. The endpoint's own text never reaches the client; it goes to the log.
//!
//! Every compose response carries `composer`: `{"used": "local"}`, `{"used": "llm", "model", "dropped"}`
//! (`dropped`: how many topics or adapter ids validation removed), or after a failure
//! `{"requested": "llm", "used": "local", "fallback": {"code", "message"}}`.

use serde_json::{json, Value};
use stylus_core::{llm_compose, Card, ComposeRequest, Index};

use crate::api::{compose_local, from_core, with_composer, Reply};
use crate::config::LlmConfig;

/// Largest LLM reply body read; past it the local composer answers (`llm_reply_too_large`).
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// Which composer a request asks for (`"composer"`, default local).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Composer {
    Local,
    Llm,
}

/// A compose body: the library's request (unknown fields rejected as before) and `composer`.
pub fn parse_request(body: &[u8]) -> Result<(ComposeRequest, Composer), Reply> {
    let mentions = body.windows(b"composer".len()).any(|w| w == b"composer");
    let object = if mentions { serde_json::from_slice::<Value>(body).ok() } else { None };
    let (req, composer) = match object {
        Some(Value::Object(mut m)) if m.contains_key("composer") => {
            let composer = match m.remove("composer").as_ref().and_then(Value::as_str) {
                Some("local") => Composer::Local,
                Some("llm") => Composer::Llm,
                _ => return Err(Reply::error(400, "invalid_request", "invalid compose request: composer must be \"local\" or \"llm\"")),
            };
            (ComposeRequest::from_json(&serde_json::to_vec(&Value::Object(m)).unwrap_or_default()), composer)
        }
        _ => (ComposeRequest::from_json(body), Composer::Local),
    };
    req.map(|r| (r, composer)).map_err(|e| from_core(&e))
}

/// A compose request waiting for the LLM: what to send and what it may choose from.
#[derive(Debug)]
pub struct Pending {
    pub req: ComposeRequest,
    /// Ids of the candidates shown to the model, in order.
    pub candidates: Vec<u64>,
    /// The chat-completions request body.
    pub body: Vec<u8>,
}

/// The LLM request for a (validated) compose request.
pub fn plan(index: &Index, req: ComposeRequest, cfg: &LlmConfig) -> Result<Pending, Reply> {
    let cands = llm_compose::candidates(index, &req).map_err(|e| from_core(&e))?;
    let body = llm_compose::request_body(&cfg.model, &req, &cands);
    Ok(Pending { candidates: cands.iter().map(|c| c.id).collect(), body, req })
}

/// What the HTTP call to the endpoint gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A response, its status and (capped) body.
    Answered { status: u16, body: Vec<u8> },
    /// No complete answer within the timeout (the request was aborted).
    Timeout,
    /// The request could not be made or the connection failed; the detail is for the log.
    Unreachable(String),
    /// The body exceeded [`MAX_REPLY_BYTES`].
    TooLarge,
}

/// Why the LLM's answer was not used: (code, message for the client, detail for the log).
fn fallback(cfg: &LlmConfig, why: &str, detail: String) -> (&'static str, String, String) {
    let (code, msg) = match why {
        "timeout" => ("llm_timeout", format!("the LLM composer did not answer within {} ms", cfg.timeout_ms)),
        "unreachable" => ("llm_unreachable", "the LLM composer could not be reached".to_string()),
        "too_large" => ("llm_reply_too_large", format!("the LLM composer's reply exceeded {MAX_REPLY_BYTES} bytes")),
        "status" => ("llm_http_error", "the LLM composer answered with an error status".to_string()),
        _ => ("llm_invalid_reply", "the LLM composer's reply was not a valid composition".to_string()),
    };
    (code, format!("{msg}; the local composer answered"), detail)
}

/// The reply for a pending request once the endpoint has answered (or not), and a line for the log
/// when the LLM's answer was not used.
pub fn finish(index: &Index, p: &Pending, cfg: &LlmConfig, outcome: Outcome, now: &dyn Fn() -> f64) -> (Reply, Option<String>) {
    let cands: Vec<Card> = p.candidates.iter().filter_map(|id| index.get(*id)).collect();
    let failure = match outcome {
        Outcome::Timeout => fallback(cfg, "timeout", format!("no answer within {} ms", cfg.timeout_ms)),
        Outcome::Unreachable(e) => fallback(cfg, "unreachable", e),
        Outcome::TooLarge => fallback(cfg, "too_large", format!("reply over {MAX_REPLY_BYTES} bytes")),
        Outcome::Answered { status, body } if !(200..300).contains(&status) => {
            let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            fallback(cfg, "status", format!("HTTP {status}: {head}"))
        }
        Outcome::Answered { body, .. } => match llm_compose::parse_reply(&body, &p.req, &cands) {
            Ok(c) => {
                let composer = json!({"used": "llm", "model": cfg.model, "dropped": c.dropped().len()});
                return (with_composer(llm_compose::compose(index, &p.req, &c), composer), None);
            }
            Err(e) => fallback(cfg, "invalid", e.to_string()),
        },
    };
    let (code, message, detail) = failure;
    let composer = json!({"requested": "llm", "used": "local", "fallback": {"code": code, "message": message}});
    (compose_local(index, &p.req, now, composer), Some(format!("llm composer ({}): {code}: {detail}", cfg.model)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::{ctx, index, reply};
    use crate::api::{handle, Step};

    fn cfg() -> LlmConfig {
        LlmConfig { url: "http://127.0.0.1:9/v1/chat/completions".into(), model: "mock-1".into(), api_key: None, timeout_ms: 500 }
    }

    fn chat(content: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"choices": [{"message": {"role": "assistant", "content": content}}]})).unwrap()
    }

    fn zero() -> f64 {
        0.0
    }

    fn pending(ix: &Index, c: &LlmConfig) -> Pending {
        let body = br#"{"prompt":"a fox in a misty forest","num_images":2,"composer":"llm"}"#;
        match handle("POST", "/v1/compose", body, &ctx(Some(ix), Some(c))) {
            Step::AskLlm(p) => *p,
            Step::Done(r) => panic!("answered without the LLM: {}", r.body),
        }
    }

    #[test]
    fn the_composer_option() {
        assert_eq!(parse_request(br#"{"prompt":"x"}"#).unwrap().1, Composer::Local);
        assert_eq!(parse_request(br#"{"prompt":"x","composer":"local"}"#).unwrap().1, Composer::Local);
        let (req, c) = parse_request(br#"{"composer":"llm","prompt":"a composer","num_images":3}"#).unwrap();
        assert_eq!((c, req.prompt.as_str(), req.num_images), (Composer::Llm, "a composer", 3));
        for bad in [&br#"{"prompt":"x","composer":5}"#[..], br#"{"prompt":"x","composer":null}"#, br#"{"prompt":"x","composer":"LLM"}"#] {
            assert_eq!(parse_request(bad).unwrap_err().body["error"]["code"], "invalid_request");
        }
        // the library's own checks still apply, with its codes
        assert_eq!(parse_request(br#"{"prompt":"","composer":"llm"}"#).unwrap_err().body["error"]["code"], "prompt_empty");
        assert_eq!(parse_request(br#"{"prompt":"x","composer":"llm","extra":1}"#).unwrap_err().body["error"]["code"], "invalid_request");
        assert_eq!(parse_request(br#"{"prompt":"composer"}"#).unwrap().0.prompt, "composer");
    }

    #[test]
    fn a_valid_reply_is_used() {
        let (ix, c) = (index(), cfg());
        let p = pending(&ix, &c);
        let sent: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(sent["model"], "mock-1");
        assert_eq!(p.candidates.len(), 2);
        let good = chat(r#"{"fox": {"1": "a fox"}, "misty forest": [2], "dragon": [1]}"#);
        let (r, log) = finish(&ix, &p, &c, Outcome::Answered { status: 200, body: good }, &zero);
        assert_eq!((r.status, log), (200, None));
        assert_eq!(r.body["composer"], json!({"used": "llm", "model": "mock-1", "dropped": 1}));
        let topics: Vec<(&str, u64)> =
            r.body["topics"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap(), t["adapters"][0]["id"].as_u64().unwrap())).collect();
        assert_eq!(topics, [("fox", 1), ("misty forest", 2)]);
        assert_eq!(r.body["images"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn every_failure_falls_back_to_the_local_composer() {
        let (ix, c) = (index(), cfg());
        let p = pending(&ix, &c);
        let local = reply(handle("POST", "/v1/compose", br#"{"prompt":"a fox in a misty forest","num_images":2}"#, &ctx(Some(&ix), None)));
        let secret = "sk-internal-detail";
        let cases = [
            (Outcome::Timeout, "llm_timeout"),
            (Outcome::Unreachable(format!("connect refused {secret}")), "llm_unreachable"),
            (Outcome::TooLarge, "llm_reply_too_large"),
            (Outcome::Answered { status: 500, body: format!("boom {secret}").into_bytes() }, "llm_http_error"),
            (Outcome::Answered { status: 200, body: format!("<html>{secret}</html>").into_bytes() }, "llm_invalid_reply"),
            (Outcome::Answered { status: 200, body: chat(&format!("I cannot help with {secret}")) }, "llm_invalid_reply"),
            (Outcome::Answered { status: 200, body: chat(r#"{"dragon": [1]}"#) }, "llm_invalid_reply"),
            (Outcome::Answered { status: 200, body: chat("{}") }, "llm_invalid_reply"),
        ];
        for (outcome, code) in cases {
            let (r, log) = finish(&ix, &p, &c, outcome, &zero);
            assert_eq!((r.status, r.body["composer"]["fallback"]["code"].as_str()), (200, Some(code)));
            assert_eq!((r.body["composer"]["used"].as_str(), r.body["composer"]["requested"].as_str()), (Some("local"), Some("llm")));
            assert_eq!((&r.body["topics"], &r.body["images"]), (&local.body["topics"], &local.body["images"]), "{code}: the local answer");
            assert!(!r.body.to_string().contains(secret), "{code}: no endpoint text in the reply");
            assert!(log.unwrap().contains(code));
        }
        let (r, _) = finish(&ix, &p, &c, Outcome::Timeout, &zero);
        assert!(r.body["composer"]["fallback"]["message"].as_str().unwrap().contains("500 ms"));
    }
}
