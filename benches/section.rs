//! The BENCHMARKS.md section writer of the Rust benches (`stylus-core`'s `ann`, `stylus-diffusion`'s
//! `convert_drift`), included by each with `#[path]`; the Python and Node benches have theirs in
//! benches/benchlib.py and their own scripts.

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in the workspace's
/// BENCHMARKS.md with `md` (given without the markers); prints why when the file or the markers are missing.
pub fn write_section(name: &str, md: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md");
    let Ok(text) = std::fs::read_to_string(&path) else { return eprintln!("{name}: {} not found; section printed only", path.display()) };
    let (b, e) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
    match (text.find(&b), text.find(&e)) {
        (Some(i), Some(j)) if i < j => {
            let out = format!("{}{b}\n{}\n{}", &text[..i], md.trim(), &text[j..]);
            if let Err(err) = std::fs::write(&path, out) {
                eprintln!("{name}: writing {}: {err}", path.display());
            }
        }
        _ => eprintln!("{name}: no {name} markers in {}; section printed only", path.display()),
    }
}
