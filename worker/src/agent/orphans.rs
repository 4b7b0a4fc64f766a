//! Results the coordinator does not know what to do with, kept on the worker's disk.
//!
//! The coordinator stores the result of any trial its state dir has ever known. It refuses one
//! only for a trial it never knew (another state dir, a coordinator started afresh): then the
//! worker writes the result to `WORK_DIR/orphans/TRIAL.json` and logs where, instead of dropping
//! a finished trial's work.

use std::path::{Path, PathBuf};

use super::LeaseKey;

/// Writes an orphaned result (with its epoch reports and why it was refused); answers the file.
pub(super) fn keep(
    work_dir: &Path,
    coordinator: &str,
    lease: &LeaseKey,
    result_json: &str,
    epochs_json: &[String],
    reason: &str,
) -> std::io::Result<PathBuf> {
    let folder = work_dir.join("orphans");
    std::fs::create_dir_all(&folder)?;
    // Reports that do not parse are kept as text: nothing the trial said is lost.
    let parse = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json)
            .unwrap_or_else(|_| serde_json::Value::String(json.into()))
    };
    let orphan = serde_json::json!({
        "trial_id": lease.trial_id,
        "lease_id": lease.lease_id,
        "coordinator": coordinator,
        "refused": reason,
        "result": parse(result_json),
        "epochs": epochs_json.iter().map(|e| parse(e)).collect::<Vec<_>>(),
    });
    // Trial ids are hex digests, but a coordinator could send anything: keep the name a name.
    let name: String =
        lease.trial_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let path = folder.join(format!("{name}.json"));
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(&orphan).unwrap_or_default())?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}
