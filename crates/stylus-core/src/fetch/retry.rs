//! Retry and rate-limit decisions of the catalog fetcher ([`crate::fetch`]): which failures are
//! retried, the exponential backoff, `Retry-After`, and the wait between requests. Pure: the caller
//! measures time and sleeps.

use crate::Error;

/// How one request ended, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// An HTTP status other than 2xx, with its `Retry-After` header when present.
    Status {
        code: u16,
        retry_after: Option<&'a str>,
    },
    /// No response: connection refused or reset, DNS, TLS, timeout (the reason in words).
    Transport(String),
    /// A 2xx response whose body is not a page (see [`super::parse_page`]).
    BadBody(String),
}

/// Retries with exponential backoff: the `n`-th retry (0-based) waits `base_delay_ms · 2ⁿ`, at most
/// `max_delay_ms`, and at least what a `Retry-After` header asks. 429, 408, 5xx, transport errors
/// and bad bodies are retried `max_retries` times; other statuses fail at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// A `Retry-After` longer than this fails the fetch (resume it later) instead of sleeping.
    pub max_retry_after_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay_ms: 1000,
            max_delay_ms: 60_000,
            max_retry_after_ms: 600_000,
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry `retry` (0-based), without `Retry-After`.
    pub fn backoff_ms(&self, retry: u32) -> u64 {
        let factor = 1u64.checked_shl(retry.min(63)).unwrap_or(u64::MAX);
        self.base_delay_ms
            .saturating_mul(factor)
            .min(self.max_delay_ms)
    }

    /// What to do after request attempt `retry` (0 = the first try) ended with `outcome`: `Ok(delay)`
    /// to wait `delay` ms and try again, or the reason to stop ([`Error::FetchFailed`]).
    pub fn decide(&self, retry: u32, outcome: &Outcome) -> Result<u64, Error> {
        let fail = |m: String| Err(Error::FetchFailed(m));
        let (what, retry_after) = match outcome {
            Outcome::Status { code, retry_after } => {
                if !(*code == 429 || *code == 408 || (500..600).contains(code)) {
                    let hint = match code {
                        401 | 403 => " (check CIVITAI_API_KEY)",
                        404 => " (check --base-url)",
                        400 | 422 => " (check the query parameters)",
                        _ => "",
                    };
                    return fail(format!("HTTP {code}{hint}: not retried"));
                }
                (
                    format!("HTTP {code}"),
                    retry_after.and_then(parse_retry_after_ms),
                )
            }
            Outcome::Transport(e) => (e.clone(), None),
            Outcome::BadBody(e) => (format!("bad page: {e}"), None),
        };
        if retry >= self.max_retries {
            let n = retry as u64 + 1;
            return fail(format!(
                "{what}; gave up after {n} attempt{}",
                if n == 1 { "" } else { "s" }
            ));
        }
        match retry_after {
            Some(ms) if ms > self.max_retry_after_ms => fail(format!(
                "{what}: the server asks to wait {} s, longer than the {} s allowed; resume later",
                ms / 1000,
                self.max_retry_after_ms / 1000
            )),
            Some(ms) => Ok(ms.max(self.backoff_ms(retry))),
            None => Ok(self.backoff_ms(retry)),
        }
    }
}

/// A `Retry-After` value in milliseconds. Only the delta-seconds form is read; an HTTP date (which
/// needs a clock) or garbage gives `None`, and the plain backoff applies.
pub fn parse_retry_after_ms(value: &str) -> Option<u64> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(u64::MAX).saturating_mul(1000))
}

/// How long to wait before the next request so that requests start at least `min_interval_ms`
/// apart, given the time since the previous one started (`None`: no request yet).
pub fn rate_limit_wait_ms(min_interval_ms: u64, since_last_ms: Option<u64>) -> u64 {
    since_last_ms.map_or(0, |t| min_interval_ms.saturating_sub(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_decisions() {
        let p = RetryPolicy {
            max_retries: 3,
            base_delay_ms: 100,
            max_delay_ms: 350,
            max_retry_after_ms: 5000,
        };
        let st = |code| Outcome::Status {
            code,
            retry_after: None,
        };
        assert_eq!(
            (
                p.decide(0, &st(500)),
                p.decide(1, &st(503)),
                p.decide(2, &st(429))
            ),
            (Ok(100), Ok(200), Ok(350))
        );
        assert_eq!(
            p.decide(3, &st(500)).unwrap_err().to_string(),
            "catalog fetch failed: HTTP 500; gave up after 4 attempts"
        );
        let e = p.decide(0, &st(404)).unwrap_err().to_string();
        assert!(e.contains("HTTP 404") && e.contains("not retried"), "{e}");
        assert!(p
            .decide(0, &st(401))
            .unwrap_err()
            .to_string()
            .contains("CIVITAI_API_KEY"));
        let ra = |v| Outcome::Status {
            code: 429,
            retry_after: Some(v),
        };
        assert_eq!(p.decide(0, &ra("2")), Ok(2000));
        assert_eq!(p.decide(2, &ra(" 0 ")), Ok(350));
        assert_eq!(p.decide(0, &ra("Wed, 21 Oct 2015 07:28:00 GMT")), Ok(100));
        assert!(p
            .decide(0, &ra("99999999999999999999"))
            .unwrap_err()
            .to_string()
            .contains("resume later"));
        assert_eq!(
            p.decide(1, &Outcome::Transport("timed out".into())),
            Ok(200)
        );
        assert_eq!(p.decide(0, &Outcome::BadBody("x".into())), Ok(100));
        assert_eq!(
            RetryPolicy {
                max_delay_ms: u64::MAX,
                ..p
            }
            .backoff_ms(200),
            u64::MAX
        );
        assert_eq!(
            (
                parse_retry_after_ms("5"),
                parse_retry_after_ms("-1"),
                parse_retry_after_ms("")
            ),
            (Some(5000), None, None)
        );
        assert_eq!(
            (
                rate_limit_wait_ms(1000, None),
                rate_limit_wait_ms(1000, Some(300)),
                rate_limit_wait_ms(1000, Some(5000))
            ),
            (0, 700, 0)
        );
    }
}
