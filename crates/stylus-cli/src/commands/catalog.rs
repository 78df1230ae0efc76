//! `stylus catalog fetch`: the live Civitai REST v1 `/models` fetcher. Pages are followed by cursor,
//! requests are spaced by a minimum interval, failures are retried with exponential backoff (and
//! `Retry-After`), each page's items are appended to one JSONL file that `stylus index build`
//! reads, and a state file makes an interrupted fetch resume where it stopped. The decisions (URLs,
//! retry policy, state) are `stylus_core::fetch`'s; this file does the HTTP and the files. Also the
//! small HTTP helpers the LLM refiner of `index build` shares.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use stylus_core::fetch::{self, FetchState, Outcome, Page, Query, RetryPolicy, CIVITAI_MODELS_URL};

/// Largest response body read (a 100-item `/models` page is a few MB).
const MAX_BODY: u64 = 64 << 20;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Fetch the Civitai model catalog (REST v1 `/models`, cursor paging) into a JSONL of items that
    /// `stylus index build --catalog` reads. Resumable: rerun the same command after an interruption.
    /// An API key is read from CIVITAI_API_KEY (sent as a Bearer token) when set.
    Fetch(FetchArgs),
    /// Derive a synthetic card JSONL of N cards from a real catalog (deterministic from a seed,
    /// streamed), for scale tests and benchmarks: `stylus catalog synth --from FILE --n 75000 --out OUT.jsonl`.
    Synth(super::synth::Args),
}

#[derive(clap::Args)]
pub struct FetchArgs {
    /// Output JSONL (one Civitai model item per line, appended page by page).
    #[arg(long)]
    out: PathBuf,
    /// Resume state [default: OUT.state.json].
    #[arg(long)]
    state: Option<PathBuf>,
    /// The `/models` endpoint.
    #[arg(long, default_value = CIVITAI_MODELS_URL)]
    base_url: String,
    /// Model type (`types=`).
    #[arg(long, default_value = "LORA")]
    types: String,
    /// Items per page (`limit=`, at most 100).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Further query parameters, e.g. `--param sort="Most Downloaded" --param nsfw=false`.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Fetch at most this many pages in this run (rerun to continue).
    #[arg(long)]
    max_pages: Option<u64>,
    /// Minimum time between the starts of two requests, ms (rate limit).
    #[arg(long, default_value_t = 1000)]
    min_interval_ms: u64,
    /// Retries of one page after 429, 408, 5xx, timeouts, connection errors or a bad body.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// First retry's backoff, ms; it doubles with each retry.
    #[arg(long, default_value_t = 1000)]
    backoff_ms: u64,
    /// Longest backoff, ms.
    #[arg(long, default_value_t = 60_000)]
    max_backoff_ms: u64,
    /// Stop (to resume later) instead of waiting when `Retry-After` asks for more than this, s.
    #[arg(long, default_value_t = 600)]
    max_retry_after_s: u64,
    /// Timeout of one request (connect, headers and body), ms.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    /// Start over: truncate OUT and forget the saved state.
    #[arg(long)]
    restart: bool,
    /// No progress bar, retry notices or summary (errors are still printed).
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Fetch(a) => run_fetch(a),
        Cmd::Synth(a) => super::synth::run(a),
    }
}

/// An HTTP agent with an overall per-request timeout.
pub(crate) fn agent(timeout_ms: u64) -> ureq::Agent {
    let ua = concat!("stylus-rs/", env!("CARGO_PKG_VERSION"));
    ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(timeout_ms.max(1)))
        .user_agent(ua)
        .build()
}

/// Why an HTTP request brought no usable body.
pub(crate) enum HttpFailure {
    /// A non-2xx status, its `Retry-After` and the start of its body.
    Status {
        code: u16,
        retry_after: Option<String>,
        body: String,
    },
    Timeout(String),
    Transport(String),
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpFailure::Status { code, body, .. } if body.is_empty() => write!(f, "HTTP {code}"),
            HttpFailure::Status { code, body, .. } => write!(f, "HTTP {code}: {body}"),
            HttpFailure::Timeout(e) => write!(f, "timeout: {e}"),
            HttpFailure::Transport(e) => write!(f, "{e}"),
        }
    }
}

fn transport_failure(e: &(dyn std::error::Error + 'static)) -> HttpFailure {
    let text = e.to_string();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut timed_out = text.contains("timed out");
    while let Some(s) = src {
        timed_out |= s.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            )
        });
        src = s.source();
    }
    if timed_out {
        HttpFailure::Timeout(text)
    } else {
        HttpFailure::Transport(text)
    }
}

/// Sends a request (a POST when `body` is given) and reads the response body (at most `MAX_BODY`).
pub(crate) fn send(req: ureq::Request, body: Option<&[u8]>) -> Result<Vec<u8>, HttpFailure> {
    let res = match body {
        Some(b) => req.set("Content-Type", "application/json").send_bytes(b),
        None => req.call(),
    };
    match res {
        Ok(resp) => {
            let mut buf = Vec::new();
            match resp.into_reader().take(MAX_BODY + 1).read_to_end(&mut buf) {
                Ok(_) if buf.len() as u64 > MAX_BODY => Err(HttpFailure::Transport(format!(
                    "response body over {} MiB",
                    MAX_BODY >> 20
                ))),
                Ok(_) => Ok(buf),
                Err(e) => Err(transport_failure(&e)),
            }
        }
        Err(ureq::Error::Status(code, resp)) => {
            let retry_after = resp.header("Retry-After").map(str::to_string);
            let mut head = Vec::new();
            let _ = resp.into_reader().take(300).read_to_end(&mut head);
            let body = String::from_utf8_lossy(&head)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            Err(HttpFailure::Status {
                code,
                retry_after,
                body: body.chars().take(200).collect(),
            })
        }
        Err(ureq::Error::Transport(t)) => Err(transport_failure(&t)),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename (never a half-written file).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

fn run_fetch(a: FetchArgs) -> anyhow::Result<()> {
    let params = a
        .params
        .iter()
        .map(|p| Query::parse_param(p))
        .collect::<Result<Vec<_>, _>>()?;
    let query = Query::new(&a.types, a.limit, params)?;
    let state_path = a
        .state
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.state.json", a.out.display())));
    let mut state = load_state(&a, &query, &state_path)?;
    if state.done {
        if !a.quiet {
            eprintln!(
                "{}: already complete ({} pages, {} items); pass --restart to fetch again",
                a.out.display(),
                state.pages_done,
                state.items_done
            );
        }
        return Ok(());
    }
    if state.pages_done > 0 && !a.quiet {
        eprintln!(
            "resuming after page {} ({} items) at cursor {:?}",
            state.pages_done,
            state.items_done,
            state.cursor().unwrap_or("")
        );
    }
    let mut out = open_output(&a.out, state.out_bytes)?;
    let key = std::env::var("CIVITAI_API_KEY")
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    let policy = RetryPolicy {
        max_retries: a.retries,
        base_delay_ms: a.backoff_ms,
        max_delay_ms: a.max_backoff_ms,
        max_retry_after_ms: a.max_retry_after_s.saturating_mul(1000),
    };
    let mut client = Client {
        agent: agent(a.timeout_ms),
        key,
        policy,
        min_interval_ms: a.min_interval_ms,
        last: None,
        quiet: a.quiet,
    };
    let bar = progress(&a);
    let mut pages = 0u64;
    let mut items = 0u64;
    while !state.done && a.max_pages.is_none_or(|m| pages < m) {
        let url = query.page_url(&a.base_url, state.cursor());
        let page = client.page(&url, &bar).with_context(|| {
            let saved = match state.pages_done {
                0 => String::new(),
                n => format!(
                    "; {n} pages ({} items) are saved in {}: rerun the same command to resume",
                    state.items_done,
                    a.out.display()
                ),
            };
            format!("fetching page {} ({url}){saved}", state.pages_done + 1)
        })?;
        let bytes = page.to_jsonl();
        out.write_all(&bytes)
            .and_then(|_| out.sync_data())
            .with_context(|| format!("writing {}", a.out.display()))?;
        state.advance(&page, state.out_bytes + bytes.len() as u64)?;
        write_atomic(&state_path, &state.to_bytes())?;
        pages += 1;
        items += page.items.len() as u64;
        bar.inc(1);
        bar.set_message(format!("{} items", state.items_done));
    }
    bar.finish_and_clear();
    if !a.quiet {
        let tail = if state.done {
            format!(
                "complete; build an index with `stylus index build --catalog {} --out my.index`",
                a.out.display()
            )
        } else {
            "more pages remain: rerun the same command to continue".to_string()
        };
        eprintln!(
            "fetched {pages} pages ({items} items) in this run; {} pages, {} items in {}; {tail}",
            state.pages_done,
            state.items_done,
            a.out.display()
        );
    }
    Ok(())
}

/// The saved state (checked against this query), or a new one (saved at once) for a fresh start.
fn load_state(a: &FetchArgs, query: &Query, path: &Path) -> anyhow::Result<FetchState> {
    if path.exists() && !a.restart {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let state = FetchState::from_bytes(&bytes)
            .with_context(|| format!("{}: pass --restart to start over", path.display()))?;
        state.check_query(query).with_context(|| {
            format!(
                "{}: give the first run's --types/--limit/--param, or --restart",
                path.display()
            )
        })?;
        return Ok(state);
    }
    if !a.restart && std::fs::metadata(&a.out).is_ok_and(|m| m.len() > 0) {
        bail!(
            "{} exists but has no fetch state {}: pass --restart to overwrite it",
            a.out.display(),
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let state = FetchState::new(query, &a.base_url);
    write_atomic(path, &state.to_bytes())?;
    Ok(state)
}

/// Opens OUT for appending after its first `len` bytes (what the state says is complete).
fn open_output(path: &Path, len: u64) -> anyhow::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let have = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if have < len {
        bail!(
            "{} has {have} bytes but the fetch state records {len}: it was changed; pass --restart",
            path.display()
        );
    }
    f.set_len(len)
        .and_then(|_| f.seek(SeekFrom::End(0)))
        .with_context(|| format!("truncating {}", path.display()))?;
    Ok(f)
}

fn progress(a: &FetchArgs) -> ProgressBar {
    if a.quiet {
        return ProgressBar::hidden();
    }
    let (bar, template) = match a.max_pages {
        Some(n) => (
            ProgressBar::new(n),
            "{spinner} pages [{bar:30}] {pos}/{len} {msg} {elapsed_precise}",
        ),
        None => (
            ProgressBar::no_length(),
            "{spinner} pages {pos} {msg} {elapsed_precise}",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

struct Client {
    agent: ureq::Agent,
    key: Option<String>,
    policy: RetryPolicy,
    min_interval_ms: u64,
    /// Start of the previous request (rate limit).
    last: Option<Instant>,
    quiet: bool,
}

impl Client {
    /// One page, with rate limiting and retries.
    fn page(&mut self, url: &str, bar: &ProgressBar) -> anyhow::Result<Page> {
        let mut retry = 0u32;
        loop {
            let since = self
                .last
                .map(|t| t.elapsed().as_millis().min(u64::MAX as u128) as u64);
            std::thread::sleep(Duration::from_millis(fetch::rate_limit_wait_ms(
                self.min_interval_ms,
                since,
            )));
            self.last = Some(Instant::now());
            let mut req = self.agent.get(url).set("Accept", "application/json");
            if let Some(k) = &self.key {
                req = req.set("Authorization", &format!("Bearer {k}"));
            }
            let (failure, retry_after, body) = match send(req, None) {
                Ok(body) => match fetch::parse_page(&body) {
                    Ok(page) => return Ok(page),
                    Err(e) => (Failure::BadBody(e.to_string()), None, String::new()),
                },
                Err(HttpFailure::Status {
                    code,
                    retry_after,
                    body,
                }) => (Failure::Status(code), retry_after, body),
                Err(f) => (Failure::Transport(f.to_string()), None, String::new()),
            };
            let outcome = match &failure {
                Failure::Status(code) => Outcome::Status {
                    code: *code,
                    retry_after: retry_after.as_deref(),
                },
                Failure::Transport(e) => Outcome::Transport(e.clone()),
                Failure::BadBody(e) => Outcome::BadBody(e.clone()),
            };
            let ms = match self.policy.decide(retry, &outcome) {
                Ok(ms) => ms,
                Err(e) if body.is_empty() => return Err(e.into()),
                Err(e) => bail!("{e}; the server said: {body}"),
            };
            if !self.quiet {
                let what = match (&failure, &retry_after) {
                    (Failure::Status(code), Some(ra)) => format!("HTTP {code} (Retry-After: {ra})"),
                    (Failure::Status(code), None) => format!("HTTP {code}"),
                    (Failure::Transport(e) | Failure::BadBody(e), _) => e.clone(),
                };
                let n = self.policy.max_retries;
                bar.suspend(|| {
                    eprintln!(
                        "{what}; retry {} of {n} in {:.1} s",
                        retry + 1,
                        ms as f64 / 1000.0
                    )
                });
            }
            std::thread::sleep(Duration::from_millis(ms));
            retry = retry.saturating_add(1);
        }
    }
}

/// A failed attempt, owned (the core's [`Outcome`] borrows its `Retry-After`).
enum Failure {
    Status(u16),
    Transport(String),
    BadBody(String),
}
