//! What produced a report's numbers, from the manifests the results carry
//! ([`common::run_manifest`]): one line for the report's method section, and a warning when the
//! trials of one table were produced by different builds of this project.

use std::collections::BTreeMap;

use common::run_manifest::distinct_versions;

use super::model::TrialRecord;

/// "What produced these numbers": each distinct manifest summary with how many results it
/// produced, the most frequent first.
pub fn method_line(records: &[TrialRecord]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut without = 0;
    for result in records.iter().filter_map(|r| r.result.as_ref()) {
        match &result.manifest {
            Some(manifest) => *counts.entry(manifest.summary()).or_default() += 1,
            None => without += 1,
        }
    }
    let mut parts: Vec<(String, usize)> = counts.into_iter().collect();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut texts: Vec<String> =
        parts.iter().map(|(summary, n)| format!("{summary} ({n} result(s))")).collect();
    if without > 0 {
        texts.push(format!(
            "no record of what produced them ({without} result(s), stored before results carried one)"
        ));
    }
    if texts.is_empty() {
        return "What produced these numbers: no results yet.".into();
    }
    format!("What produced these numbers: {}.", texts.join("; "))
}

/// A warning when the results among `records` were produced by more than one version.
pub fn versions_warning(records: &[TrialRecord]) -> Option<String> {
    let versions =
        distinct_versions(records.iter().filter_map(|r| r.result.as_ref()).map(|r| r.manifest.as_ref()));
    (versions.len() > 1).then(|| {
        format!(
            "Warning: these results were produced by {} different versions ({}); rerun with one build to compare them bit for bit.",
            versions.len(),
            versions.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::run_manifest::RunManifest;

    fn record(id: &str, version: Option<&str>) -> TrialRecord {
        let mut result = crate::store::stand_in_result(common::TrialStatus::Completed, 0.5);
        result.manifest = version.map(|v| RunManifest {
            version: v.into(),
            libtorch: "2.11.0".into(),
            cpu: "cpu".into(),
            cpu_capability: "AVX2".into(),
            devices: "cpu".into(),
            ranks: 1,
            cpu_threads: 1,
            host: "h".into(),
            ..RunManifest::default()
        });
        let spec = serde_json::from_value(serde_json::json!({
            "architecture": "noop", "optimizer": "sgd",
            "dataset": {"name": "s", "format": "synthetic"},
            "resolution": 32, "method": "baseline", "epochs": 1, "batch_size": 1,
            "learning_rate": 0.1, "seed": 1,
        }))
        .unwrap();
        TrialRecord {
            id: id.into(),
            spec,
            state: "done".into(),
            attempts: 1,
            last_error: None,
            result: Some(result),
            epochs: Vec::new(),
        }
    }

    #[test]
    fn one_version_gives_no_warning_and_two_do() {
        let same = [record("a", Some("1")), record("b", Some("1"))];
        assert_eq!(versions_warning(&same), None);
        let mixed = [record("a", Some("1")), record("b", Some("2"))];
        let warning = versions_warning(&mixed).unwrap();
        assert!(warning.contains("2 different versions (1, 2)"), "{warning}");
        // A result stored before manifests existed counts as a version of its own.
        assert!(versions_warning(&[record("a", Some("1")), record("b", None)]).is_some());
    }

    #[test]
    fn the_method_line_counts_each_setup() {
        let records = [record("a", Some("1")), record("b", Some("1")), record("c", None)];
        let line = method_line(&records);
        assert!(line.starts_with("What produced these numbers: sal-sweep 1, libtorch 2.11.0"), "{line}");
        assert!(
            line.contains("(2 result(s))") && line.contains("no record of what produced them (1 result(s)"),
            "{line}"
        );
        assert_eq!(method_line(&[]), "What produced these numbers: no results yet.");
    }
}
