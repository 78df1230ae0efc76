//! Compose CPU per request, natively (issue #4): loads an index bundle (argument, default the embedded
//! demo index), composes the worker bench's 12 prompts (4 images each) many times, and prints p50 / p99 /
//! mean for the whole request as the worker runs it (JSON parse, compose, JSON serialize) and per stage.
//! `cargo bench -p stylus-core --bench compose -- [BUNDLE] [--n N]`; for a profile, run the binary under perf.

use std::time::Instant;
use stylus_core::{ComposeRequest, Index};

const PROMPTS: [&str; 12] = [
    "a watercolor painting of a fox in a forest, autumn leaves",
    "cyberpunk city at night, neon lights, a girl wearing a kimono",
    "portrait of an old man with a beard, oil painting, dramatic lighting",
    "a cat sitting on a windowsill, rain outside, cozy room",
    "a knight in shining armor riding a horse on the beach at sunset",
    "anime girl with long silver hair and blue eyes, cherry blossoms",
    "a steampunk airship above the clouds, detailed, golden hour",
    "a bowl of ramen on a wooden table, studio photo",
    "pixel art of a castle on a hill, 16-bit, retro game",
    "a futuristic car in a desert, science fiction, wide shot",
    "a red dragon flying over a medieval village, fantasy art",
    "a woman in a black dress dancing in the rain, street photography, film grain",
];

fn pct(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((p / 100.0) * xs.len() as f64).floor().min(xs.len() as f64 - 1.0) as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let n: usize = args.iter().position(|a| a == "--n").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(2000);
    let path = args.iter().enumerate().find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--n")).map(|(_, a)| a.clone());
    let bytes = match &path {
        Some(p) => std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {p}: {e}")),
        None => std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo/index.stylusix")).expect("demo index"),
    };
    let t = Instant::now();
    let index = Index::from_bundle(&bytes).expect("bundle");
    println!("index: {} ({} cards), loaded in {:.1} ms", path.as_deref().unwrap_or("data/demo"), index.len(), t.elapsed().as_secs_f64() * 1e3);
    let bodies: Vec<String> = PROMPTS.iter().enumerate().map(|(i, p)| serde_json::json!({"prompt": p, "num_images": 4, "seed": i}).to_string()).collect();
    let start = Instant::now();
    let clock = move || start.elapsed().as_secs_f64() * 1e3;
    let (mut whole, mut stages) = (Vec::with_capacity(n), [(); 5].map(|_| Vec::with_capacity(n)));
    for i in 0..n + 100 {
        let t = Instant::now();
        let req = ComposeRequest::from_json(bodies[i % bodies.len()].as_bytes()).expect("request");
        let res = index.compose_timed(&req, &clock).expect("compose");
        let out = serde_json::to_string(&res).expect("json");
        std::hint::black_box(out);
        if i >= 100 {
            whole.push(t.elapsed().as_secs_f64() * 1e3);
            let s = res.timings_us.expect("timings");
            for (v, x) in stages.iter_mut().zip([s.topics, s.retrieve, s.assign, s.masks, s.total]) {
                v.push(x as f64 / 1e3);
            }
        }
    }
    println!("{:<34} {:>8} {:>8} {:>8}", "ms per request", "p50", "p99", "mean");
    let row = |name: &str, v: &mut Vec<f64>| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        println!("{name:<34} {:>8.3} {:>8.3} {:>8.3}", pct(v, 50.0), pct(v, 99.0), mean);
    };
    row("request (parse, compose, JSON)", &mut whole);
    for (name, v) in ["topics", "retrieve", "assign", "masks", "compose total"].iter().zip(stages.iter_mut()) {
        row(name, v);
    }
}
