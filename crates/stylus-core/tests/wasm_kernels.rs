//! The ANN kernels of `stylus_core::embed::ann` against their definitions, bit for bit: natively (SSE2
//! on x86_64, scalar code elsewhere) and on wasm32, where they are simd128 code, in Node through wasm-bindgen-test-runner
//! (`scripts/test.sh`: `cargo test --target wasm32-unknown-unknown -p stylus-core --test wasm_kernels`).
//! Equal bits here are what makes the worker's, the browser's and the CLI's rankings identical.

use stylus_core::embed::ann::{best_rows, dot_i8, dot_i8_2, dot_i8_i16, dot_i8_i16_4, head_rows_at_least, head_scores, rows_at_least};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() % 2_000_001) as f32 / 1_000_000.0 - 1.0
    }
    fn i8(&mut self) -> i8 {
        (self.next() % 255) as i8 // 0..=254 → -128..=126 after wrapping, both signs
    }
}

/// The definition: eight partial sums over lanes `j mod 8`, paired as ((0+4)+(2+6))+((1+5)+(3+7)),
/// then the tail past the last multiple of 8 summed in order.
fn dot_i8_def(q: &[f32], c: &[i8]) -> f32 {
    let n = q.len().min(c.len());
    let full = n / 8 * 8;
    let mut a = [0f32; 8];
    for i in 0..full {
        a[i % 8] += q[i] * c[i] as f32;
    }
    let mut tail = -0.0f32;
    for i in full..n {
        tail += q[i] * c[i] as f32;
    }
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])) + tail
}

#[test]
fn dot_products_equal_their_definition() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for n in (0..40).chain([63, 64, 65, 255, 256, 257, 384]) {
        for _ in 0..8 {
            let q: Vec<f32> = (0..n).map(|_| r.f32()).collect();
            let (a, b): (Vec<i8>, Vec<i8>) = (0..n).map(|_| (r.i8(), r.i8())).unzip();
            let want = (dot_i8_def(&q, &a), dot_i8_def(&q, &b));
            assert_eq!(dot_i8(&q, &a).to_bits(), want.0.to_bits(), "dot_i8, n = {n}");
            let two = dot_i8_2(&q, &a, &b);
            assert_eq!((two.0.to_bits(), two.1.to_bits()), (want.0.to_bits(), want.1.to_bits()), "dot_i8_2, n = {n}");
        }
    }
}

#[test]
fn head_scores_equal_integer_dots() {
    let mut r = Rng(7);
    // 64 components: blocks of four rows plus a remainder of three; 40: the generic path with a tail
    for (m, rows) in [(64usize, 39usize), (40, 9), (8, 5), (3, 4)] {
        let q: Vec<i16> = (0..m).map(|_| (r.next() % 65_535) as i32 as i16).collect();
        let head: Vec<i8> = (0..m * rows).map(|_| r.i8()).collect();
        let scales: Vec<f32> = (0..rows).map(|_| r.f32().abs() / 100.0).collect();
        let mut got = Vec::new();
        head_scores(&q, &head, &scales, &mut got);
        let want: Vec<f32> =
            head.chunks_exact(m).zip(&scales).map(|(c, &s)| q.iter().zip(c).map(|(&x, &y)| x as i32 * y as i32).sum::<i32>() as f32 * s).collect();
        assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "m = {m}");
        // the fused threshold keeps exactly the rows (and scores) reaching it, in row order
        let mut sorted = want.clone();
        sorted.sort_by(f32::total_cmp);
        for t in [f32::NEG_INFINITY, sorted[rows / 3], sorted[rows / 2], sorted[rows - 1], f32::INFINITY] {
            let (mut kept, mut kept_scores) = (vec![u32::MAX], vec![-1.0]);
            head_rows_at_least(&q, &head, &scales, t, &mut kept, &mut kept_scores);
            let expect: Vec<u32> = (0..rows as u32).filter(|&i| want[i as usize] >= t).collect();
            assert_eq!(kept[1..], expect, "m = {m}, t = {t}: appended after what was there");
            assert_eq!(kept_scores[1..].iter().map(|x| x.to_bits()).collect::<Vec<_>>(), expect.iter().map(|&i| want[i as usize].to_bits()).collect::<Vec<_>>());
        }
    }
}

#[test]
fn best_rows_keeps_the_top_scores_in_row_order() {
    let mut r = Rng(3);
    let ties = |r: &mut Rng, n: usize| -> Vec<f32> { (0..n).map(|_| ((r.next() % 200) as f32 - 50.0) / 64.0).collect() };
    let cases: Vec<(Vec<f32>, usize)> = vec![
        // few distinct values: many ties across the cut (small inputs: exact selection; large: sampled threshold)
        (ties(&mut r, 1000), 10),
        (ties(&mut r, 5000), 800),
        (ties(&mut r, 300), 299),
        (ties(&mut r, 50), 50),
        (ties(&mut r, 50), 0),
        ((0..30_000).map(|_| r.f32()).collect(), 300),
        (ties(&mut r, 30_000), 2400),
        // the sampled rows hold the best scores: the sample's threshold lets too few through, the exact path answers
        ((0..20_000).map(|i| if i % 16 == 0 { 1.0 + i as f32 } else { -(i as f32) }).collect(), 2000),
    ];
    for (scores, keep) in cases {
        let n = scores.len();
        let rows = best_rows(&scores, keep);
        assert!(rows.windows(2).all(|w| w[0] < w[1]), "row order");
        let mut sorted = scores.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if keep == 0 {
            assert!(rows.is_empty());
            continue;
        }
        let cut = sorted[keep - 1];
        let want: Vec<u32> = (0..n as u32).filter(|&i| scores[i as usize] >= cut).collect();
        assert_eq!(rows, want, "n = {n}, keep = {keep}");
    }
}

#[test]
fn rows_at_least_filters_in_order() {
    let mut r = Rng(11);
    for n in [0usize, 1, 3, 4, 5, 17, 1000, 1003] {
        let mut scores: Vec<f32> = (0..n).map(|_| r.f32()).collect();
        if n > 3 {
            (scores[1], scores[2]) = (-0.0, f32::NEG_INFINITY);
        }
        for t in [-2.0, -0.0, 0.0, 0.25, 0.999, f32::INFINITY] {
            let mut got = vec![99];
            rows_at_least(&scores, t, &mut got);
            let want: Vec<u32> = std::iter::once(99).chain((0..n as u32).filter(|&i| scores[i as usize] >= t)).collect();
            assert_eq!(got, want, "n = {n}, t = {t}");
        }
    }
}

#[test]
fn integer_dot_products_are_exact() {
    let mut r = Rng(5);
    for n in (0..40).chain([63, 64, 65, 255, 256, 257, 384, 512]) {
        let q: Vec<i16> = (0..n).map(|_| ((r.next() % 65_535) as i32 - 32767) as i16).collect();
        let c: Vec<i8> = (0..n).map(|_| r.i8()).collect();
        let want: i64 = q.iter().zip(&c).map(|(&x, &y)| x as i64 * y as i64).sum();
        assert_eq!(dot_i8_i16(&q, &c) as i64, want, "n = {n}");
        let rows: Vec<Vec<i8>> = (0..4).map(|_| (0..n).map(|_| r.i8()).collect()).collect();
        let four = dot_i8_i16_4(&q, [&rows[0], &rows[1], &rows[2], &rows[3]]);
        for (j, row) in rows.iter().enumerate() {
            assert_eq!(four[j] as i64, q.iter().zip(row).map(|(&x, &y)| x as i64 * y as i64).sum::<i64>(), "n = {n}, row {j} of four");
        }
        // extremes (queries are rounded into ±32767): every product at its largest, up to 512 components
        let (q, c) = (vec![-32767i16; n], vec![-128i8; n]);
        assert_eq!(dot_i8_i16(&q, &c) as i64, n as i64 * 32767 * 128, "n = {n}, extremes");
    }
}
