//! Pure logic of the live Civitai catalog fetcher (`stylus catalog fetch`): page URLs and cursor
//! paging, page parsing into raw items, the resume state, and the retry / rate-limit decisions. The
//! HTTP client, the clock and the files are the binary's; everything here takes bytes and numbers.
//! Retry and rate-limit decisions are in [`retry`] (re-exported here).
//!
//! # Protocol
//! `GET {base}?types=LORA&limit=100[&KEY=VALUE…][&cursor=C]` answers a Civitai REST v1 `/models`
//! page: `{"items": [model, …], "metadata": {"nextCursor": "…", "nextPage": "https://…"}}`. The next
//! page is asked for with `cursor=nextCursor` (or the `cursor` parameter of `nextPage` when
//! `nextCursor` is missing); a page with neither is the last one.
//!
//! # Output
//! The fetcher appends each page's items, one compact JSON object per line, to one JSONL file that
//! `stylus index build --catalog FILE` reads (`ingest::auto` sniffs REST items by `modelVersions`).
//!
//! # Resume state
//! After each page is written, [`FetchState`] is saved as JSON: the canonical query, the next cursor,
//! pages and items done, and the output's length in bytes at that point (a resumed run truncates the
//! output to it, so a page half-written when the run was killed is written again, never twice).

use crate::Error;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod retry;
pub use retry::{parse_retry_after_ms, rate_limit_wait_ms, Outcome, RetryPolicy};

/// The Civitai REST v1 models endpoint.
pub const CIVITAI_MODELS_URL: &str = "https://civitai.com/api/v1/models";
/// Largest `limit` Civitai accepts for `/models`.
pub const MAX_LIMIT: u32 = 100;
/// Version of the [`FetchState`] JSON this build reads and writes.
pub const STATE_VERSION: u32 = 1;

/// What to fetch: the query parameters of every page but the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `types=` (Civitai model type, e.g. `LORA`).
    pub types: String,
    /// `limit=`: items per page, 1 ..= [`MAX_LIMIT`].
    pub limit: u32,
    /// Further parameters (`sort`, `period`, `nsfw`, `baseModels`, …), sent in this order.
    pub params: Vec<(String, String)>,
}

impl Query {
    /// Checks the query: a non-empty type, a limit in range, non-empty keys other than the ones the
    /// fetcher sets itself (`types`, `limit`, `cursor`, `page`).
    pub fn new(types: &str, limit: u32, params: Vec<(String, String)>) -> Result<Self, Error> {
        let bad = |m: String| Err(Error::FetchQuery(m));
        if types.trim().is_empty() {
            return bad("the model type is empty".into());
        }
        if limit == 0 || limit > MAX_LIMIT {
            return bad(format!("limit {limit} is out of range 1..={MAX_LIMIT}"));
        }
        for (k, _) in &params {
            if k.trim().is_empty() {
                return bad("a parameter has an empty name".into());
            }
            if ["types", "limit", "cursor", "page"].contains(&k.as_str()) {
                return bad(format!("parameter `{k}` is set by the fetcher itself"));
            }
        }
        Ok(Query {
            types: types.trim().to_string(),
            limit,
            params,
        })
    }

    /// Parses one `KEY=VALUE` parameter as given on a command line.
    pub fn parse_param(s: &str) -> Result<(String, String), Error> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(Error::FetchQuery(format!(
                "parameter {s:?} is not KEY=VALUE"
            ))),
        }
    }

    /// The query string without the cursor (percent-encoded, in a fixed order); the resume state
    /// records it so a run cannot resume another query's cursor.
    pub fn canonical(&self) -> String {
        let mut out = format!("types={}&limit={}", percent_encode(&self.types), self.limit);
        for (k, v) in &self.params {
            out.push_str(&format!("&{}={}", percent_encode(k), percent_encode(v)));
        }
        out
    }

    /// The URL of the page at `cursor` (`None`: the first page) under `base` (e.g. [`CIVITAI_MODELS_URL`]).
    pub fn page_url(&self, base: &str, cursor: Option<&str>) -> String {
        let base = base.trim_end_matches(['?', '&']);
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut url = format!("{base}{sep}{}", self.canonical());
        if let Some(c) = cursor {
            url.push_str("&cursor=");
            url.push_str(&percent_encode(c));
        }
        url
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (a space in query strings); invalid escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The next page's cursor of a parsed page: `metadata.nextCursor` (string or number), else the
/// `cursor` parameter of `metadata.nextPage`; `None` on the last page.
pub fn next_cursor(page: &Value) -> Option<String> {
    let direct = page.pointer("/metadata/nextCursor").and_then(|c| match c {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    direct.or_else(|| {
        let url = page.pointer("/metadata/nextPage")?.as_str()?;
        let query = url.split_once('?')?.1;
        let query = query.split('#').next().unwrap_or("");
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("cursor="))
            .map(percent_decode)
            .filter(|c| !c.is_empty())
    })
}

/// One fetched page: its items as served and the cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
}

impl Page {
    /// The items as JSONL: one compact JSON object per line, each line ending in `\n`.
    pub fn to_jsonl(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for item in &self.items {
            // Serializing a `Value` cannot fail (its map keys are strings).
            if let Ok(line) = serde_json::to_vec(item) {
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
        }
        out
    }
}

/// Parses a `/models` page body. Fails ([`Error::FetchPage`]) when the body is not JSON or has no
/// `items` array (an HTML error page served with status 200, a truncated body).
pub fn parse_page(bytes: &[u8]) -> Result<Page, Error> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::FetchPage(format!("not a JSON document: {e}")))?;
    let next_cursor = next_cursor(&v);
    match v {
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => Ok(Page { items, next_cursor }),
            _ => Err(Error::FetchPage(
                "no `items` array: not a Civitai /models page".into(),
            )),
        },
        _ => Err(Error::FetchPage("the page is not a JSON object".into())),
    }
}

/// Where a fetch stands; saved after every page (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchState {
    pub version: u32,
    /// [`Query::canonical`] of the query being fetched.
    pub query: String,
    /// Endpoint of the run that started the fetch (informative; a resume may use a mirror).
    pub base_url: String,
    /// Cursor of the next page to fetch; `None` before the first page and after the last.
    pub next_cursor: Option<String>,
    pub pages_done: u64,
    pub items_done: u64,
    /// Length of the output file after the last complete page.
    pub out_bytes: u64,
    /// The last page has been fetched.
    pub done: bool,
}

impl FetchState {
    /// The state before the first page.
    pub fn new(query: &Query, base_url: &str) -> Self {
        FetchState {
            version: STATE_VERSION,
            query: query.canonical(),
            base_url: base_url.to_string(),
            next_cursor: None,
            pages_done: 0,
            items_done: 0,
            out_bytes: 0,
            done: false,
        }
    }

    /// Reads a saved state, checking its version and consistency.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let s: FetchState = serde_json::from_slice(bytes)
            .map_err(|e| Error::FetchState(format!("not a fetch state: {e}")))?;
        if s.version != STATE_VERSION {
            return Err(Error::FetchState(format!(
                "state version {} is not supported (this build reads {STATE_VERSION})",
                s.version
            )));
        }
        if s.pages_done > 0 && !s.done && s.next_cursor.is_none() {
            return Err(Error::FetchState(
                "pages were fetched but no next cursor is recorded".into(),
            ));
        }
        Ok(s)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The cursor to ask for next (`None`: the first page). Meaningless once [`FetchState::done`].
    pub fn cursor(&self) -> Option<&str> {
        self.next_cursor.as_deref()
    }

    /// Fails when this state was saved for another query.
    pub fn check_query(&self, query: &Query) -> Result<(), Error> {
        let q = query.canonical();
        if self.query != q {
            return Err(Error::FetchState(format!(
                "the state is for query `{}`, not `{q}`",
                self.query
            )));
        }
        Ok(())
    }

    /// Records a page written to the output (`out_bytes`: the output's new length). Fails when the
    /// server sends the cursor it was asked for again (it would loop forever).
    pub fn advance(&mut self, page: &Page, out_bytes: u64) -> Result<(), Error> {
        if page.next_cursor.is_some() && page.next_cursor == self.next_cursor {
            return Err(Error::FetchFailed(format!(
                "the server returned cursor {:?} again: paging would never end",
                page.next_cursor.as_deref().unwrap_or("")
            )));
        }
        self.pages_done += 1;
        self.items_done += page.items.len() as u64;
        self.out_bytes = out_bytes;
        self.next_cursor = page.next_cursor.clone();
        self.done = page.next_cursor.is_none();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Query {
        Query::new("LORA", 100, vec![("sort".into(), "Most Downloaded".into())]).unwrap()
    }

    #[test]
    fn urls_and_queries() {
        let q = q();
        assert_eq!(q.canonical(), "types=LORA&limit=100&sort=Most%20Downloaded");
        assert_eq!(
            q.page_url(CIVITAI_MODELS_URL, None),
            "https://civitai.com/api/v1/models?types=LORA&limit=100&sort=Most%20Downloaded"
        );
        assert_eq!(q.page_url("http://127.0.0.1:9/m?x=1", Some("12|a b")), "http://127.0.0.1:9/m?x=1&types=LORA&limit=100&sort=Most%20Downloaded&cursor=12%7Ca%20b");
        assert_eq!(percent_encode("é/~"), "%C3%A9%2F~");
        assert_eq!(percent_decode("12%7Ca+b%zz%4"), "12|a b%zz%4");
        assert_eq!(percent_decode("%C3%A9%"), "é%");
        assert_eq!(
            Query::parse_param("nsfw=false").unwrap(),
            ("nsfw".to_string(), "false".to_string())
        );
        assert!(Query::parse_param("=x").is_err() && Query::parse_param("nsfw").is_err());
        assert_eq!(
            Query::new("LORA", 0, vec![]).unwrap_err().code(),
            "fetch_query"
        );
        assert!(Query::new("LORA", 101, vec![]).is_err());
        assert!(Query::new(" ", 10, vec![]).is_err());
        assert!(Query::new("LORA", 10, vec![("cursor".into(), "1".into())]).is_err());
    }

    #[test]
    fn pages_and_cursors() {
        let p = parse_page(
            br#"{"items":[{"id":1,"name":"a\nb"},{"id":2}],"metadata":{"nextCursor":"7|x"}}"#,
        )
        .unwrap();
        assert_eq!((p.items.len(), p.next_cursor.as_deref()), (2, Some("7|x")));
        assert_eq!(p.to_jsonl(), b"{\"id\":1,\"name\":\"a\\nb\"}\n{\"id\":2}\n");
        let p = parse_page(br#"{"items":[],"metadata":{"nextCursor":42}}"#).unwrap();
        assert_eq!(p.next_cursor.as_deref(), Some("42"));
        let p = parse_page(br#"{"items":[],"metadata":{"nextPage":"https://civitai.com/api/v1/models?limit=1&cursor=9%7C3"}}"#).unwrap();
        assert_eq!(p.next_cursor.as_deref(), Some("9|3"));
        let p =
            parse_page(br#"{"items":[],"metadata":{"nextCursor":"","nextPage":null}}"#).unwrap();
        assert_eq!(p.next_cursor, None);
        assert_eq!(
            parse_page(b"<html>busy</html>").unwrap_err().code(),
            "fetch_page"
        );
        assert!(
            parse_page(b"[1]").is_err()
                && parse_page(br#"{"items":{}}"#).is_err()
                && parse_page(b"").is_err()
        );
    }

    #[test]
    fn state_roundtrip_and_advance() {
        let mut s = FetchState::new(&q(), CIVITAI_MODELS_URL);
        assert_eq!(s.cursor(), None);
        let page = |n: usize, c: Option<&str>| Page {
            items: vec![Value::Null; n],
            next_cursor: c.map(str::to_string),
        };
        s.advance(&page(3, Some("c2")), 30).unwrap();
        assert_eq!(
            (s.cursor(), s.pages_done, s.items_done, s.out_bytes, s.done),
            (Some("c2"), 1, 3, 30, false)
        );
        assert_eq!(FetchState::from_bytes(&s.to_bytes()).unwrap(), s);
        assert_eq!(
            s.advance(&page(1, Some("c2")), 40).unwrap_err().code(),
            "fetch_failed"
        );
        s.advance(&page(2, None), 50).unwrap();
        assert!(s.done && s.items_done == 5);
        assert_eq!(FetchState::from_bytes(&s.to_bytes()).unwrap(), s);
        s.check_query(&q()).unwrap();
        assert!(s
            .check_query(&Query::new("LORA", 50, vec![]).unwrap())
            .is_err());
        assert_eq!(
            FetchState::from_bytes(b"{}").unwrap_err().code(),
            "fetch_state"
        );
        let mut bad = FetchState::new(&q(), "x");
        bad.version = 9;
        assert!(FetchState::from_bytes(&bad.to_bytes()).is_err());
        bad.version = STATE_VERSION;
        bad.pages_done = 2;
        assert!(FetchState::from_bytes(&bad.to_bytes()).is_err());
    }
}
