//! The paired statistics against scipy on fixed inputs (`tests/fixtures/paired_stats.json`, made
//! by `scripts/make_stats_fixture.py`).

use coordinator::report::stats::{self, PValue};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/paired_stats.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn numbers(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

fn close(ours: f64, scipy: f64, what: &str) {
    let tolerance = 1e-9 * scipy.abs().max(1e-3);
    assert!((ours - scipy).abs() <= tolerance, "{what}: ours {ours}, scipy {scipy}");
}

#[test]
fn mean_ci_t_test_and_signed_rank_agree_with_scipy() {
    let fixture = fixture();
    let cases = fixture["cases"].as_object().unwrap();
    assert!(cases.len() >= 8);
    let (mut exact, mut with_ties, mut with_zeros, mut normal) = (0, 0, 0, 0);
    for (name, case) in cases {
        let sal = numbers(&case["sal"]);
        let baseline = numbers(&case["baseline"]);
        let differences: Vec<f64> = sal.iter().zip(&baseline).map(|(s, b)| s - b).collect();
        let n = differences.len();
        let comparison = stats::compare(differences);
        let mean_ci = comparison.mean_ci.unwrap();
        close(mean_ci.mean, case["mean"].as_f64().unwrap(), &format!("{name}: mean"));
        let (low, high) = mean_ci.ci95.unwrap();
        close(low, case["ci_low"].as_f64().unwrap(), &format!("{name}: CI low"));
        close(high, case["ci_high"].as_f64().unwrap(), &format!("{name}: CI high"));
        let PValue::Value(t_p) = comparison.t_test else {
            panic!("{name}: no t-test: {:?}", comparison.t_test)
        };
        close(t_p, case["t_p"].as_f64().unwrap(), &format!("{name}: t-test p"));
        match case["wilcoxon_p"].as_f64() {
            None => {
                assert!(n < stats::WILCOXON_MIN_PAIRS, "{name}");
                assert_eq!(comparison.wilcoxon, PValue::TooFew { n, needs: stats::WILCOXON_MIN_PAIRS });
                assert_eq!(comparison.wilcoxon.show(), "n<6: no test");
            }
            Some(scipy) => {
                let ours = comparison.wilcoxon.value().unwrap_or_else(|| panic!("{name}: no signed-rank p"));
                close(ours, scipy, &format!("{name}: Wilcoxon p"));
                let ties = case["ties"].as_bool().unwrap();
                let zeros = case["zeros"].as_u64().unwrap() > 0;
                match (ties || zeros, n <= 13) {
                    (false, _) => exact += 1,
                    (true, true) => {
                        with_ties += usize::from(ties);
                        with_zeros += usize::from(zeros);
                    }
                    (true, false) => normal += 1,
                }
            }
        }
    }
    // Every branch of scipy's `method="auto"` was compared.
    assert!(
        exact >= 2 && with_ties >= 1 && with_zeros >= 1 && normal >= 1,
        "{exact} {with_ties} {with_zeros} {normal}"
    );
}

#[test]
fn holm_bonferroni_agrees_with_the_fixture_and_skips_untested_cells() {
    let fixture = fixture();
    let p: Vec<Option<f64>> = fixture["holm"]["p"].as_array().unwrap().iter().map(Value::as_f64).collect();
    let expected: Vec<Option<f64>> =
        fixture["holm"]["adjusted"].as_array().unwrap().iter().map(Value::as_f64).collect();
    let ours = stats::holm(&p);
    assert_eq!(ours.len(), expected.len());
    for (i, (o, e)) in ours.iter().zip(&expected).enumerate() {
        match (o, e) {
            (Some(o), Some(e)) => close(*o, *e, &format!("holm[{i}]")),
            (None, None) => {}
            other => panic!("holm[{i}]: {other:?}"),
        }
    }
}

#[test]
fn one_pair_or_no_variance_gives_no_number() {
    let one = stats::compare(vec![1.5]);
    assert_eq!(one.t_test, PValue::TooFew { n: 1, needs: 2 });
    assert_eq!(one.t_test.show(), "n=1: no test");
    assert_eq!(one.mean_ci.unwrap().ci95, None);
    let flat = stats::compare(vec![0.5; 4]);
    assert_eq!(flat.t_test, PValue::NoVariance);
    assert_eq!(stats::holm(&[None, None]), vec![None, None]);
}
