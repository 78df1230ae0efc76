//! `stylus index build|query`: catalog files → refined, filtered cards (optionally refined again by an
//! LLM, `index/llm.rs`) → index bundle (sharded).

mod llm;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use stylus_core::embed::{hybrid::Fusion, DenseText, StaticEmbedder};
use stylus_core::{bundle, ingest, Index, Policy};

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Build an index bundle from catalog files (compact Civitai JSONL, REST v1 pages, card JSONL).
    Build(BuildArgs),
    /// Retrieve the best cards of an index for a text (hybrid dense + BM25, or BM25), to check an index.
    Query(QueryArgs),
    /// Rank the cards of an index for many queries (JSON lines in, JSON lines out), for benchmarks.
    Eval(EvalArgs),
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Index bundle (OUT, or its manifest OUT.json).
    #[arg(long)]
    index: PathBuf,
    /// Queries, one JSON string per line.
    #[arg(long)]
    queries: PathBuf,
    #[arg(short, default_value_t = 150)]
    k: usize,
    /// Output: one JSON array of model ids per query, best first.
    #[arg(long)]
    out: PathBuf,
    /// Also measure the dense index's recall@k against scoring every card (no sign-bit pre-scan).
    #[arg(long)]
    ann_check: bool,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Catalog files; each may be any supported format (sniffed per line).
    #[arg(long = "catalog", required = true)]
    catalogs: Vec<PathBuf>,
    /// Output bundle; shards are written as OUT.0, OUT.1, … when it exceeds --shard-mib.
    #[arg(long)]
    out: PathBuf,
    /// Policy overrides as JSON (fields of `stylus_core::Policy`; defaults are the reference's).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Keep cleaned descriptions in the bundle and its lexical index. Off for bundles you publish:
    /// descriptions are the card authors' text.
    #[arg(long)]
    with_descriptions: bool,
    /// Largest shard, MiB (Workers static assets and KV values are limited to 25 MiB).
    #[arg(long, default_value_t = 25)]
    shard_mib: usize,
    /// Refine the cards the policy keeps with an OpenAI-compatible chat endpoint: STYLUS_LLM_BASE_URL
    /// (e.g. https://api.openai.com/v1), STYLUS_LLM_MODEL and, when it needs one, STYLUS_LLM_API_KEY.
    /// Replies (description, weight, category) are validated and cached by card content; a card
    /// whose request or reply fails keeps the local refiner's fields (counted and printed).
    #[arg(long)]
    llm_refiner: bool,
    /// LLM refiner cache [default: $XDG_CACHE_HOME/stylus/llm-refiner-cache.json, else
    /// ~/.cache/stylus/llm-refiner-cache.json].
    #[arg(long, requires = "llm_refiner")]
    llm_cache: Option<PathBuf>,
    /// Timeout of one LLM request (connect, reply and body), ms.
    #[arg(long, default_value_t = 60_000)]
    llm_timeout_ms: u64,
    /// Stop asking the LLM after this many failures in a row (0: never); the remaining cards keep
    /// the local refiner's fields.
    #[arg(long, default_value_t = 10)]
    llm_max_failures: u32,
    /// Static embedder (`stylus embedder static`): adds card vectors and hybrid retrieval.
    #[arg(long)]
    embedder: Option<PathBuf>,
    /// Fusion weights dense,fields,examples (default 0.4,0.3,0.3).
    #[arg(long)]
    fusion: Option<String>,
    /// The card text embedded (with --embedder): title-tags (`Title; Tags`, measured best on raw
    /// Civitai descriptions) or reference (`Title; Description; Tags`, for refined descriptions).
    #[arg(long, default_value = "title-tags", value_parser = DenseText::parse)]
    dense_text: DenseText,
    /// Example prompts indexed (with --with-descriptions): all, holdout-first (every card's first is
    /// left out: the quality benchmark queries with it) or none.
    #[arg(long, default_value = "all")]
    example_prompts: String,
}

#[derive(clap::Args)]
pub struct QueryArgs {
    /// Index bundle (OUT, or its manifest OUT.json when it was sharded).
    #[arg(long)]
    index: PathBuf,
    /// Text to search for.
    text: String,
    #[arg(short, default_value_t = 10)]
    k: usize,
}

pub fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Build(a) => build(a),
        Cmd::Query(a) => query(a),
        Cmd::Eval(a) => eval(a),
    }
}

fn build(a: BuildArgs) -> anyhow::Result<()> {
    let mut cards = Vec::new();
    for path in &a.catalogs {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (c, issues) = ingest::auto(&bytes);
        for i in issues.iter().take(20) {
            eprintln!("{}:{}: skipped{}: {}", path.display(), i.line, i.id.map(|id| format!(" (id {id})")).unwrap_or_default(), i.reason);
        }
        eprintln!("{}: {} cards read, {} records skipped", path.display(), c.len(), issues.len());
        cards.extend(c);
    }
    let policy: Policy = match &a.policy {
        Some(p) => serde_json::from_slice(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
            .with_context(|| format!("{}: not a valid policy", p.display()))?,
        None => Policy::default(),
    };
    let before = cards.len();
    let (mut cards, report) = policy.apply(cards)?;
    eprintln!("policy: {before} → {} cards; removed {}", cards.len(), serde_json::to_string(&report)?);
    cards.sort_by_key(|c| c.id);
    cards.dedup_by_key(|c| c.id);
    if a.llm_refiner {
        let settings = llm::Settings { cache: a.llm_cache.clone(), timeout_ms: a.llm_timeout_ms, max_failures: a.llm_max_failures };
        llm::refine_cards(&mut cards, &settings)?;
    }
    match a.example_prompts.as_str() {
        "all" => {}
        "holdout-first" => cards.iter_mut().for_each(|c| drop(c.example_prompts.drain(..c.example_prompts.len().min(1)))),
        "none" => cards.iter_mut().for_each(|c| c.example_prompts.clear()),
        x => bail!("--example-prompts {x:?}: expected all, holdout-first or none"),
    }
    let mut fusion = Fusion::default();
    if let Some(f) = &a.fusion {
        let w: Vec<f32> =
            f.split(',').map(|x| x.trim().parse::<f32>()).collect::<Result<_, _>>().with_context(|| format!("--fusion {f:?}: expected three numbers"))?;
        anyhow::ensure!(w.len() == 3, "--fusion {f:?}: expected three numbers dense,fields,examples");
        (fusion.dense, fusion.lexical, fusion.examples) = (w[0], w[1], w[2]);
        fusion.validate().map_err(anyhow::Error::msg)?;
    }
    let index = match &a.embedder {
        None if !a.with_descriptions => Index::build(cards.into_iter().map(|c| c.without_description()).collect())?,
        Some(p) => {
            let e = StaticEmbedder::from_bytes(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("{}: not a static embedder", p.display()))?;
            eprintln!("embedding {} cards with {} (sha256 {})", cards.len(), e.id(), e.hash());
            Index::build_dense(cards, e, fusion, a.dense_text, a.with_descriptions)?
        }
        None => Index::build(cards)?,
    };
    let bytes = if a.with_descriptions { index.to_bundle_with_descriptions() } else { index.to_bundle() };
    write_bundle(&a.out, &bytes, a.shard_mib)?;
    Ok(())
}

fn write_bundle(out: &Path, bytes: &[u8], shard_mib: usize) -> anyhow::Result<()> {
    if shard_mib == 0 {
        bail!("--shard-mib must be at least 1");
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let max = shard_mib << 20;
    let name = out.file_name().and_then(|n| n.to_str()).context("--out needs a file name")?.to_string();
    remove_stale(out)?;
    let mut files = Vec::new();
    if bytes.len() <= max {
        std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
        files.push(name.clone());
    } else {
        for (i, shard) in bundle::split(bytes, max)?.iter().enumerate() {
            let p = PathBuf::from(format!("{}.{i}", out.display()));
            std::fs::write(&p, shard).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {} ({} bytes)", p.display(), shard.len());
            files.push(format!("{name}.{i}"));
        }
    }
    // The shard list the worker (and the browser) read first: OUT.json.
    let manifest = bundle::Manifest { bundle: name, bytes: bytes.len() as u64, shards: files };
    let mpath = manifest_path(out);
    std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest)?).with_context(|| format!("writing {}", mpath.display()))?;
    Ok(())
}

fn manifest_path(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.json", out.display()))
}

/// Deletes what an earlier build left at OUT (the file, its shards, its manifest), so a reader can
/// never mix an old bundle with a new one.
fn remove_stale(out: &Path) -> anyhow::Result<()> {
    let mut stale = vec![out.to_path_buf(), manifest_path(out)];
    stale.extend((0..).map(|i| PathBuf::from(format!("{}.{i}", out.display()))).take_while(|p| p.exists()));
    for p in stale.iter().filter(|p| p.exists()) {
        std::fs::remove_file(p).with_context(|| format!("removing stale {}", p.display()))?;
    }
    Ok(())
}

/// Reads a bundle through its manifest OUT.json (written by `index build`), or a plain bundle file.
pub fn read_bundle(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mpath = if path.extension().is_some_and(|e| e == "json") { path.to_path_buf() } else { manifest_path(path) };
    if !mpath.is_file() {
        return std::fs::read(path).with_context(|| format!("reading {} (no manifest {} beside it)", path.display(), mpath.display()));
    }
    let manifest: bundle::Manifest = serde_json::from_slice(&std::fs::read(&mpath).with_context(|| format!("reading {}", mpath.display()))?)
        .with_context(|| format!("{}: not an index manifest", mpath.display()))?;
    let dir = mpath.parent().unwrap_or(Path::new("."));
    let parts = manifest
        .shards
        .iter()
        .map(|s| std::fs::read(dir.join(s)).with_context(|| format!("reading shard {}", dir.join(s).display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(bundle::assemble(&parts)?)
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let index = Index::from_bundle(&read_bundle(&a.index)?)?;
    let text = std::fs::read_to_string(&a.queries).with_context(|| format!("reading {}", a.queries.display()))?;
    let mut out = String::new();
    let mut us = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let q: String = serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON string", a.queries.display(), i + 1))?;
        let t0 = std::time::Instant::now();
        let hits = index.search(&q, a.k);
        us.push(t0.elapsed().as_secs_f64() * 1e6);
        let ids: Vec<u64> = hits.into_iter().map(|(id, _)| id).collect();
        out.push_str(&serde_json::to_string(&ids)?);
        out.push('\n');
    }
    std::fs::write(&a.out, out).with_context(|| format!("writing {}", a.out.display()))?;
    let ann_recall = match (a.ann_check, index.dense()) {
        (true, Some(d)) => {
            use stylus_core::embed::Ann;
            let mut full = d.vectors.clone();
            // every row re-scored exactly in f32: no pre-scan, no i16 shortlist
            (full.prescan_above, full.shortlist) = (usize::MAX, 0);
            let (mut found, mut total) = (0usize, 0usize);
            for line in text.lines() {
                let q = d.embedder.embed(&serde_json::from_str::<String>(line)?);
                let want: std::collections::HashSet<u32> = full.search(&q, a.k).into_iter().map(|h| h.0).collect();
                found += d.vectors.search(&q, a.k).iter().filter(|h| want.contains(&h.0)).count();
                total += want.len();
            }
            Some(found as f64 / total.max(1) as f64)
        }
        _ => None,
    };
    us.sort_by(f64::total_cmp);
    let pct = |p: f64| us.get(((us.len() as f64 * p) as usize).min(us.len().saturating_sub(1))).copied().unwrap_or(0.0);
    // one JSON line on stdout for drivers; people read stderr
    println!(
        "{}",
        serde_json::json!({"queries": us.len(), "p50_us": pct(0.5), "p99_us": pct(0.99), "mean_us": us.iter().sum::<f64>() / us.len().max(1) as f64, "ann_recall": ann_recall})
    );
    eprintln!("{} queries: p50 {:.3} ms, p99 {:.3} ms", us.len(), pct(0.5) / 1e3, pct(0.99) / 1e3);
    Ok(())
}

fn query(a: QueryArgs) -> anyhow::Result<()> {
    let index = Index::from_bundle(&read_bundle(&a.index)?)?;
    for (id, score) in index.search(&a.text, a.k) {
        let c = index.doc(id).and_then(|d| index.card(d)).expect("search returns ids of the index");
        println!("{score:8.3}  {id:>8}  {}  [{}]  {}", c.name(), c.category().as_str(), c.model_page());
    }
    Ok(())
}
