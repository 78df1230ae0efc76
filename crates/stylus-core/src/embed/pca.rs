//! Principal component analysis for the static embedder's distillation (model2vec, Tulkens & van
//! Dongen 2024: PCA of the teacher's per-token outputs): covariance in f64 and a cyclic Jacobi
//! eigen-decomposition (Golub & Van Loan §8.5), deterministic and dependency-free.

/// Mean and the top `k` principal axes (unit rows, largest variance first) of row-major `[n, d]` data.
pub struct Pca {
    pub mean: Vec<f32>,
    /// `[k, d]`, row-major.
    pub axes: Vec<f32>,
    pub variances: Vec<f64>,
    pub dim_in: usize,
}

impl Pca {
    /// Fits on `data` (`n ≥ 2` rows of `d`), keeping `k ≤ d` axes.
    pub fn fit(data: &[f32], d: usize, k: usize) -> Result<Pca, String> {
        if d == 0 || !data.len().is_multiple_of(d) || data.len() / d < 2 {
            return Err(format!("PCA needs at least 2 rows of dimension {d}; got {} values", data.len()));
        }
        if k == 0 || k > d {
            return Err(format!("PCA output dimension {k} must be between 1 and {d}"));
        }
        let n = data.len() / d;
        let mut mean = vec![0f64; d];
        for r in data.chunks_exact(d) {
            for (m, &x) in mean.iter_mut().zip(r) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0f64; d * d];
        let mut c = vec![0f64; d];
        for r in data.chunks_exact(d) {
            for (ci, (&x, m)) in c.iter_mut().zip(r.iter().zip(&mean)) {
                *ci = x as f64 - m;
            }
            for i in 0..d {
                let ci = c[i];
                let row = &mut cov[i * d..i * d + i + 1];
                for (v, &cj) in row.iter_mut().zip(&c[..=i]) {
                    *v += ci * cj;
                }
            }
        }
        for i in 0..d {
            for j in 0..=i {
                let v = cov[i * d + j] / (n - 1) as f64;
                cov[i * d + j] = v;
                cov[j * d + i] = v;
            }
        }
        let (vals, vecs) = jacobi_eigen(cov, d);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]).then(a.cmp(&b)));
        let mut axes = Vec::with_capacity(k * d);
        for &o in &order[..k] {
            // eigenvector o is column o; fix its sign so the largest component is positive
            let col: Vec<f64> = (0..d).map(|i| vecs[i * d + o]).collect();
            let big = col.iter().fold(0f64, |a, &x| if x.abs() > a.abs() { x } else { a });
            let sign = if big < 0.0 { -1.0 } else { 1.0 };
            axes.extend(col.iter().map(|&x| (x * sign) as f32));
        }
        Ok(Pca { mean: mean.iter().map(|&m| m as f32).collect(), axes, variances: order[..k].iter().map(|&o| vals[o]).collect(), dim_in: d })
    }

    pub fn dim_out(&self) -> usize {
        self.variances.len()
    }

    /// Projects one `d`-vector onto the axes (after removing the mean).
    pub fn project(&self, x: &[f32]) -> Vec<f32> {
        self.axes.chunks_exact(self.dim_in).map(|a| a.iter().zip(x.iter().zip(&self.mean)).map(|(w, (v, m))| w * (v - m)).sum()).collect()
    }
}

/// Eigenvalues and eigenvectors (columns of the returned row-major matrix) of a symmetric `d × d` matrix.
fn jacobi_eigen(mut a: Vec<f64>, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..60 {
        let off: f64 = (0..d).flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * d + j].powi(2)).sum();
        if off <= total * 1e-22 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() <= f64::MIN_POSITIVE {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_dominant_axes() {
        // points spread 10x along (1,1,0)/√2 and 3x along z, 0.1x along (1,-1,0)/√2
        let mut data = Vec::new();
        let mut s = 12345u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        };
        for _ in 0..2000 {
            let (a, b, c) = (10.0 * rnd(), 3.0 * rnd(), 0.1 * rnd());
            let h = std::f64::consts::FRAC_1_SQRT_2;
            data.extend([(a * h + c * h + 5.0) as f32, (a * h - c * h) as f32, b as f32]);
        }
        let p = Pca::fit(&data, 3, 2).unwrap();
        // (finite samples: the axes are exact up to the sample correlations, ~0.02 here)
        let r = std::f32::consts::FRAC_1_SQRT_2;
        assert!((p.axes[0] - r).abs() < 0.03 && (p.axes[1] - r).abs() < 0.03 && p.axes[2].abs() < 0.03, "{:?}", p.axes);
        assert!(p.axes[3].abs() < 0.03 && (p.axes[5] - 1.0).abs() < 1e-2);
        assert!(p.variances[0] > p.variances[1]);
        assert!((p.mean[0] - 5.0).abs() < 0.3);
        let y = p.project(&[5.0 + r, r, 2.0]);
        assert!((y[0] - 1.0).abs() < 0.15 && (y[1] - 2.0).abs() < 0.1, "{y:?}");
        assert!(Pca::fit(&data, 3, 4).is_err() && Pca::fit(&data[..3], 3, 1).is_err());
    }
}
