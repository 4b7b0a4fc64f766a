//! Paired statistics of SAL against its baseline: the same cell (architecture, optimizer, dataset,
//! resolution) and the same seed make a pair, so that what a seed decides (initialisation, data
//! order) cancels out of the difference.
//!
//! Per cell: the mean difference with its 95% confidence interval (Student's t, n − 1 degrees of
//! freedom), the two-sided paired t-test, and the Wilcoxon signed-rank test when there are at least
//! [`WILCOXON_MIN_PAIRS`] pairs; across the cells of one report, Holm–Bonferroni. Every number
//! follows scipy (`ttest_rel`, `wilcoxon` with its defaults); `tests/fixtures/paired_stats.json`,
//! made by `scripts/make_stats_fixture.py`, pins them.

use std::collections::BTreeMap;

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use super::model::{Method, TrialRecord, TrialStatus};

/// Below this many pairs the signed-rank test cannot reach p < 0.05 at all (its smallest two-sided
/// p with 5 pairs is 0.0625), so it is not reported.
pub const WILCOXON_MIN_PAIRS: usize = 6;

/// A p-value, or why there is none. Never a made-up number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PValue {
    Value(f64),
    /// Fewer pairs than the test needs.
    TooFew {
        n: usize,
        needs: usize,
    },
    /// Every difference is the same: the t statistic is undefined (scipy answers NaN or 0).
    NoVariance,
}

impl PValue {
    pub fn value(self) -> Option<f64> {
        match self {
            PValue::Value(p) => Some(p),
            _ => None,
        }
    }

    pub fn show(self) -> String {
        match self {
            PValue::Value(p) => format_p(p),
            PValue::TooFew { n, needs } if needs <= 2 => format!("n={n}: no test"),
            PValue::TooFew { needs, .. } => format!("n<{needs}: no test"),
            PValue::NoVariance => "no variance: no test".into(),
        }
    }
}

/// Three significant digits, scientific below 0.001.
pub fn format_p(p: f64) -> String {
    if p < 1e-3 {
        format!("{p:.2e}")
    } else {
        format!("{p:.3}")
    }
}

/// Mean of the differences and its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanCi {
    pub mean: f64,
    /// `None` with fewer than two values.
    pub ci95: Option<(f64, f64)>,
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation (n − 1 in the denominator); `None` below two values.
fn sample_sd(values: &[f64]) -> Option<f64> {
    let n = values.len();
    (n >= 2).then(|| {
        let m = mean(values);
        (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    })
}

fn students_t(df: usize) -> StudentsT {
    // df >= 1 and a unit scale are always valid parameters.
    StudentsT::new(0.0, 1.0, df as f64).expect("valid Student's t parameters")
}

/// The mean and the 95% confidence interval of the mean (t distribution with n − 1 df).
pub fn mean_ci95(values: &[f64]) -> Option<MeanCi> {
    if values.is_empty() {
        return None;
    }
    let m = mean(values);
    let ci95 = sample_sd(values).map(|sd| {
        let n = values.len();
        let half = students_t(n - 1).inverse_cdf(0.975) * sd / (n as f64).sqrt();
        (m - half, m + half)
    });
    Some(MeanCi { mean: m, ci95 })
}

/// Two-sided p of the one-sample t-test of the differences against 0 (= scipy's `ttest_rel`).
pub fn paired_t_test(differences: &[f64]) -> PValue {
    let n = differences.len();
    if n < 2 {
        return PValue::TooFew { n, needs: 2 };
    }
    let sd = sample_sd(differences).unwrap_or(0.0);
    if sd == 0.0 {
        return PValue::NoVariance;
    }
    let t = mean(differences) / (sd / (n as f64).sqrt());
    PValue::Value((2.0 * students_t(n - 1).sf(t.abs())).min(1.0))
}

/// Average ranks (1-based) of `values`, ties sharing the mean of their ranks.
fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Ranks start+1 ..= end share their mean.
        let shared = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = shared;
        }
        start = end;
    }
    ranks
}

/// Two-sided p of the Wilcoxon signed-rank test of the differences, as scipy's `wilcoxon` with
/// its defaults (zeros dropped, no continuity correction, `method="auto"`):
/// - without ties or zeros and at most 50 differences: the exact null distribution;
/// - with ties or zeros and at most 13: the exact permutation distribution (all 2^n sign flips);
/// - otherwise: the normal approximation with the tie correction.
pub fn wilcoxon_signed_rank(differences: &[f64]) -> PValue {
    let n = differences.len();
    if n < WILCOXON_MIN_PAIRS {
        return PValue::TooFew { n, needs: WILCOXON_MIN_PAIRS };
    }
    let nonzero: Vec<f64> = differences.iter().copied().filter(|d| *d != 0.0).collect();
    if nonzero.is_empty() {
        return PValue::NoVariance;
    }
    let magnitudes: Vec<f64> = nonzero.iter().map(|d| d.abs()).collect();
    let ranks = average_ranks(&magnitudes);
    let r_plus: f64 = nonzero.iter().zip(&ranks).filter(|(d, _)| **d > 0.0).map(|(_, r)| r).sum();
    let mut sorted = magnitudes.clone();
    sorted.sort_by(f64::total_cmp);
    let has_ties = sorted.windows(2).any(|w| w[0] == w[1]);
    let has_zeros = nonzero.len() < n;
    let p = if !has_ties && !has_zeros && n <= 50 {
        exact_signed_rank_p(n, r_plus)
    } else if n <= 13 {
        permutation_signed_rank_p(&ranks, r_plus)
    } else {
        normal_signed_rank_p(&ranks, r_plus)
    };
    PValue::Value(p.min(1.0))
}

/// 2·min(P(T ≤ t), P(T ≥ t)) under the exact null distribution of T = sum of positive ranks
/// 1..=n (each rank's sign a fair coin), counted by dynamic programming over rank sums.
fn exact_signed_rank_p(n: usize, r_plus: f64) -> f64 {
    let max_sum = n * (n + 1) / 2;
    let mut counts = vec![0f64; max_sum + 1];
    counts[0] = 1.0;
    for rank in 1..=n {
        for sum in (rank..=max_sum).rev() {
            counts[sum] += counts[sum - rank];
        }
    }
    let total = 2f64.powi(n as i32);
    // Integral without ties; rounded outwards as scipy does, to stay conservative.
    let below = r_plus.ceil() as usize;
    let above = r_plus.floor() as usize;
    let cdf: f64 = counts[..=below.min(max_sum)].iter().sum::<f64>() / total;
    let sf: f64 = counts[above.min(max_sum + 1)..].iter().sum::<f64>() / total;
    2.0 * cdf.min(sf)
}

/// 2·min(P(R ≤ r), P(R ≥ r)) over all 2^m sign flips of the (tied) ranks: scipy's
/// `permutation_test` with every permutation enumerated, which counts no extra +1.
fn permutation_signed_rank_p(ranks: &[f64], r_plus: f64) -> f64 {
    let m = ranks.len();
    // scipy compares with a relative tolerance so that rounding does not decide ties.
    let gamma = (r_plus * 1e-14).abs();
    let (mut less, mut greater) = (0u64, 0u64);
    for signs in 0u64..(1 << m) {
        let sum: f64 = ranks.iter().enumerate().filter(|(i, _)| signs >> i & 1 == 1).map(|(_, r)| r).sum();
        less += u64::from(sum <= r_plus + gamma);
        greater += u64::from(sum >= r_plus - gamma);
    }
    let total = (1u64 << m) as f64;
    2.0 * (less as f64 / total).min(greater as f64 / total)
}

/// Normal approximation with the tie correction, without continuity correction.
fn normal_signed_rank_p(ranks: &[f64], r_plus: f64) -> f64 {
    let count = ranks.len() as f64;
    let expected = count * (count + 1.0) / 4.0;
    let mut tie_sizes: BTreeMap<u64, f64> = BTreeMap::new();
    for r in ranks {
        *tie_sizes.entry(r.to_bits()).or_default() += 1.0;
    }
    let tie_correction: f64 = tie_sizes.values().map(|t| t * t * t - t).sum();
    let variance = (count * (count + 1.0) * (2.0 * count + 1.0) - tie_correction / 2.0) / 24.0;
    let z = (r_plus - expected) / variance.sqrt();
    let normal = Normal::new(0.0, 1.0).expect("valid normal parameters");
    2.0 * normal.sf(z.abs())
}

/// Holm–Bonferroni adjusted p-values of a family; `None`s are not part of the family and stay
/// `None`.
pub fn holm(p_values: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut tested: Vec<(usize, f64)> =
        p_values.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i, p))).collect();
    tested.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = tested.len();
    let mut adjusted = vec![None; p_values.len()];
    let mut running_max: f64 = 0.0;
    for (k, (i, p)) in tested.into_iter().enumerate() {
        running_max = running_max.max(((m - k) as f64 * p).min(1.0));
        adjusted[i] = Some(running_max);
    }
    adjusted
}

/// Everything one cell's comparison says.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedComparison {
    /// Pairs (seeds with a result for both methods).
    pub n: usize,
    /// SAL − baseline, per pair, in the metric's unit.
    pub differences: Vec<f64>,
    pub mean_ci: Option<MeanCi>,
    pub t_test: PValue,
    pub wilcoxon: PValue,
}

pub fn compare(differences: Vec<f64>) -> PairedComparison {
    PairedComparison {
        n: differences.len(),
        mean_ci: mean_ci95(&differences),
        t_test: paired_t_test(&differences),
        wilcoxon: wilcoxon_signed_rank(&differences),
        differences,
    }
}

/// A cell of the grid: every axis but method and seed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    pub architecture: String,
    pub optimizer: String,
    pub dataset: String,
    pub resolution: u32,
}

impl Cell {
    pub fn of(record: &TrialRecord) -> Cell {
        let spec = &record.spec;
        Cell {
            architecture: spec.architecture.clone(),
            optimizer: spec.optimizer.clone(),
            dataset: spec.dataset.name.clone(),
            resolution: spec.resolution,
        }
    }

    /// `architecture/optimizer/dataset@resolution`.
    pub fn label(&self) -> String {
        format!("{}/{}/{}@{}", self.architecture, self.optimizer, self.dataset, self.resolution)
    }
}

/// One cell's SAL − baseline top-1 comparison, with the Holm-adjusted p-values of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct CellComparison {
    pub cell: Cell,
    pub comparison: PairedComparison,
    /// Seeds with a result for one method only (left out of the pairs).
    pub unpaired: usize,
    pub t_holm: Option<f64>,
    pub wilcoxon_holm: Option<f64>,
}

/// Top-1 in percent of a trial that completed (diverged trials are out of the comparisons, as
/// they are out of the report's means).
pub fn top1_percent(record: &TrialRecord) -> Option<f64> {
    record
        .result
        .as_ref()
        .filter(|r| r.status == TrialStatus::Completed)
        .map(|r| r.top1 * 100.0)
        .filter(|v| v.is_finite())
}

/// SAL − baseline top-1 (percentage points) per cell, paired by seed; Holm–Bonferroni across the
/// cells (separately for the t-test and the signed-rank test). Cells without both methods are
/// left out.
pub fn compare_cells(records: &[TrialRecord]) -> Vec<CellComparison> {
    compare_method(records, Method::Sal)
}

/// The methods other than the baseline and SAL (the ablation arms) that `records` hold, each
/// compared with the baseline by [`compare_method`].
pub fn other_methods(records: &[TrialRecord]) -> Vec<Method> {
    let present: std::collections::BTreeSet<Method> = records.iter().map(|r| r.spec.method).collect();
    present.into_iter().filter(|m| !matches!(m, Method::Baseline | Method::Sal)).collect()
}

/// `method` − baseline top-1 per cell, as [`compare_cells`] does for SAL.
pub fn compare_method(records: &[TrialRecord], method: Method) -> Vec<CellComparison> {
    type BySeed = BTreeMap<u64, f64>;
    let mut cells: BTreeMap<Cell, (BySeed, BySeed)> = BTreeMap::new();
    for record in records {
        let Some(top1) = top1_percent(record) else { continue };
        let is_method = match record.spec.method {
            Method::Baseline => false,
            m if m == method => true,
            _ => continue,
        };
        let (baseline, other) = cells.entry(Cell::of(record)).or_default();
        if is_method { other } else { baseline }.insert(record.spec.seed, top1);
    }
    let mut out: Vec<CellComparison> = cells
        .into_iter()
        .filter(|(_, (baseline, sal))| !baseline.is_empty() && !sal.is_empty())
        .map(|(cell, (baseline, sal))| {
            let differences: Vec<f64> =
                sal.iter().filter_map(|(seed, s)| baseline.get(seed).map(|b| s - b)).collect();
            let unpaired = baseline.len() + sal.len() - 2 * differences.len();
            CellComparison {
                cell,
                comparison: compare(differences),
                unpaired,
                t_holm: None,
                wilcoxon_holm: None,
            }
        })
        .collect();
    let t_holm = holm(&out.iter().map(|c| c.comparison.t_test.value()).collect::<Vec<_>>());
    let w_holm = holm(&out.iter().map(|c| c.comparison.wilcoxon.value()).collect::<Vec<_>>());
    for ((cell, t), w) in out.iter_mut().zip(t_holm).zip(w_holm) {
        cell.t_holm = t;
        cell.wilcoxon_holm = w;
    }
    out
}

/// The statistics as a grid: one row per cell, and what was done stated under it.
pub fn grid(comparisons: &[CellComparison]) -> super::grid::Grid {
    method_grid(comparisons, Method::Sal)
}

/// The statistics table of `method` − baseline (see [`compare_method`]).
pub fn method_grid(comparisons: &[CellComparison], method: Method) -> super::grid::Grid {
    let shown = if method == Method::Sal { "SAL" } else { method.name() };
    let header = [
        "architecture",
        "optimizer",
        "dataset",
        "resolution",
        "pairs",
        "Δ top-1 (pp)",
        "95% CI",
        "t-test p",
        "Holm p",
        "Wilcoxon p",
        "Holm p (W)",
    ];
    let rows = comparisons
        .iter()
        .map(|c| {
            let stats = &c.comparison;
            let (delta, ci) = match stats.mean_ci {
                None => (String::new(), String::new()),
                Some(MeanCi { mean, ci95: None }) => (format!("{mean:+.2}"), "n=1".into()),
                Some(MeanCi { mean, ci95: Some((lo, hi)) }) => {
                    super::precision::difference(mean, (lo, hi), false)
                        .unwrap_or_else(|| (format!("{mean:+.2}"), format!("[{lo:+.2}, {hi:+.2}]")))
                }
            };
            let adjusted = |p: Option<f64>| p.map(format_p).unwrap_or_default();
            vec![
                c.cell.architecture.clone(),
                c.cell.optimizer.clone(),
                c.cell.dataset.clone(),
                c.cell.resolution.to_string(),
                stats.n.to_string(),
                delta,
                ci,
                stats.t_test.show(),
                adjusted(c.t_holm),
                stats.wilcoxon.show(),
                adjusted(c.wilcoxon_holm),
            ]
        })
        .collect();
    let t_family = comparisons.iter().filter(|c| c.t_holm.is_some()).count();
    let w_family = comparisons.iter().filter(|c| c.wilcoxon_holm.is_some()).count();
    let unpaired: usize = comparisons.iter().map(|c| c.unpaired).sum();
    let mut notes = vec![
        format!(
            "Δ = {shown} − baseline top-1 in percentage points, paired by seed; 95% CI of the mean \
             difference from Student's t (n − 1 df; Δ and the CI's ends rounded to two significant \
             digits of its half-width); p-values two-sided."
        ),
        format!(
            "Holm–Bonferroni across the cells of this report: {t_family} cell(s) in the t-test family, \
             {w_family} in the Wilcoxon family."
        ),
        format!(
            "Paired t-test from n = 2; Wilcoxon signed-rank (exact distribution as scipy) from n = \
             {WILCOXON_MIN_PAIRS}; n=1: no test."
        ),
    ];
    if unpaired > 0 {
        notes.push(format!(
            "{unpaired} trial(s) with a result for one method only were left out of the pairs."
        ));
    }
    super::grid::Grid {
        title: format!("{shown} vs baseline, paired by seed (top-1)"),
        header: header.map(String::from).to_vec(),
        rows,
        numeric_from: 4,
        notes,
        // The difference and what it is worth first; the raw p-values and the signed-rank test
        // (which needs 6 pairs) last.
        importance: &[
            &["pairs"],
            &["Δ top-1 (pp)", "95% CI"],
            &["Holm p"],
            &["t-test p"],
            &["Wilcoxon p", "Holm p (W)"],
        ],
    }
}
