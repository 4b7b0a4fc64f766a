//! Measured throughput, to cost a sweep in seconds before it runs (`--dry-run`).
//!
//! Two sources, the store first:
//! - **the store** (`--state-dir`): every completed trial's epoch history records the training and
//!   evaluation images per second of its epochs (all ranks together), and its manifest the device
//!   it ran on; the epochs after the first (warm-up) are averaged per trial, then over the trials
//!   of one profile;
//! - **the calibration table** ([`COMMITTED`], `coordinator/calibration/throughput.csv`, or a file
//!   given with `--calibration`): rows measured by `scripts/calibrate.sh` (or imported, as its
//!   `source` column says).
//!
//! A profile is architecture × resolution × batch size × device. Devices are named as
//! [`device_name`] names a trial's manifest: a GPU by its model (`NVIDIA H200` → `nvidia-h200`),
//! a CPU rank as `cpu` (1 intra-op thread, a trial's default) or `cpu-Nthreads`; a CPU's model is
//! not told apart (virtual machines report generic names).
//!
//! Figures are per device: a stored trial's, which ran on R replicas, is divided by R, and a trial
//! on G devices is assumed to go G times as fast (data parallel scaling linearly: no measurement
//! of ours says how it scales; see README, "What ran on real GPUs").
//!
//! A resolution with no row is estimated from the profile's rows at other resolutions, by one
//! rule: the time per image is `a + b × pixels` (a: the per-image cost that does not grow with the
//! image, e.g. launching kernels; b: the cost per pixel), fitted through the two measured
//! resolutions nearest to it (a, b ≥ 0), or, with one, `b × pixels` alone (cost ∝ pixels). Such
//! estimates are marked extrapolated.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use common::run_manifest::RunManifest;
use common::{TrialResult, TrialSpec};

/// The committed calibration table.
pub const COMMITTED: &str = include_str!("../../calibration/throughput.csv");
/// How [`COMMITTED`] is named in messages.
pub const COMMITTED_NAME: &str = "coordinator/calibration/throughput.csv";

const HEADER: &str = "architecture,resolution,batch,device,train_images_per_s,eval_images_per_s,source";

/// A bad calibration file: where and what.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{file}:{line}: {message}")]
    Row { file: String, line: usize, message: String },
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a throughput is measured for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Profile {
    pub architecture: String,
    pub resolution: u32,
    pub batch: u32,
    pub device: String,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} px batch {} on {}", self.architecture, self.resolution, self.batch, self.device)
    }
}

/// Images per second on one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub train: f64,
    pub eval: f64,
}

/// One row of the calibration table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub profile: Profile,
    pub throughput: Throughput,
    pub source: String,
}

/// The parsed calibration table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    /// The committed table (its parse is checked by this module's tests).
    pub fn committed() -> Table {
        Table::parse(COMMITTED, COMMITTED_NAME).unwrap_or_default()
    }

    pub fn load(path: &Path) -> Result<Table, CalibrationError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| CalibrationError::Read { file: file.clone(), source })?;
        Table::parse(&text, &file)
    }

    /// CSV with the header [`HEADER`]; `#` starts a comment line; `source`, the last column, is
    /// the rest of the line (it may hold commas). A profile listed twice is an error.
    pub fn parse(text: &str, file: &str) -> Result<Table, CalibrationError> {
        let mut rows: Vec<Row> = Vec::new();
        let mut header_seen = false;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let bad =
                |message: String| CalibrationError::Row { file: file.to_string(), line: index + 1, message };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !header_seen {
                if line != HEADER {
                    return Err(bad(format!("the first row must be the header `{HEADER}`")));
                }
                header_seen = true;
                continue;
            }
            let fields: Vec<&str> = line.splitn(7, ',').map(str::trim).collect();
            if fields.len() != 7 {
                return Err(bad(format!("{} fields, expected 7 ({HEADER})", fields.len())));
            }
            let count = |name: &str, value: &str| -> Result<u32, CalibrationError> {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad(format!("`{name}`: expected a whole number > 0, got `{value}`")))
            };
            let rate =
                |name: &str, value: &str| -> Result<f64, CalibrationError> {
                    value.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).ok_or_else(|| {
                        bad(format!("`{name}`: expected images per second > 0, got `{value}`"))
                    })
                };
            if fields[0].is_empty() || fields[3].is_empty() {
                return Err(bad("`architecture` and `device` must not be empty".into()));
            }
            if fields[6].is_empty() {
                return Err(bad("`source` must say where the row comes from".into()));
            }
            let row = Row {
                profile: Profile {
                    architecture: fields[0].to_string(),
                    resolution: count("resolution", fields[1])?,
                    batch: count("batch", fields[2])?,
                    device: fields[3].to_string(),
                },
                throughput: Throughput {
                    train: rate("train_images_per_s", fields[4])?,
                    eval: rate("eval_images_per_s", fields[5])?,
                },
                source: fields[6].to_string(),
            };
            if rows.iter().any(|r| r.profile == row.profile) {
                return Err(bad(format!("{} is listed twice", row.profile)));
            }
            rows.push(row);
        }
        if !header_seen {
            return Err(CalibrationError::Row {
                file: file.to_string(),
                line: 1,
                message: format!("no header `{HEADER}`"),
            });
        }
        Ok(Table { rows })
    }

    /// The devices with rows, each with its row count.
    pub fn devices(&self) -> BTreeMap<String, usize> {
        let mut devices = BTreeMap::new();
        for row in &self.rows {
            *devices.entry(row.profile.device.clone()).or_insert(0) += 1;
        }
        devices
    }

    /// The device a dry run costs on by default: the GPU (any device not named `cpu…`) with the
    /// most rows, else the device with the most rows.
    pub fn default_device(&self) -> Option<String> {
        let devices = self.devices();
        let most = |gpu_only: bool| {
            devices
                .iter()
                .filter(|(name, _)| !gpu_only || !name.starts_with("cpu"))
                .max_by_key(|(name, n)| (**n, std::cmp::Reverse((*name).clone())))
                .map(|(name, _)| name.clone())
        };
        most(true).or_else(|| most(false))
    }
}

/// The device a stored trial ran on, by the name the calibration table uses.
pub fn device_name(manifest: &RunManifest) -> String {
    if manifest.devices == "cuda" {
        if let Some(model) = manifest.gpus.first() {
            return slug(model);
        }
        return "cuda".into();
    }
    match manifest.cpu_threads {
        0 | 1 => "cpu".into(),
        n => format!("cpu-{n}threads"),
    }
}

/// `NVIDIA H200 NVL` → `nvidia-h200-nvl`: lower case, runs of other characters as one dash.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Per-device throughput the store measured, per profile, with the trials it comes from.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    pub profiles: BTreeMap<Profile, (Throughput, usize)>,
}

impl Learned {
    /// From completed trials (their spec and result) that recorded their throughput and device.
    pub fn from_completed<'a>(
        completed: impl IntoIterator<Item = (&'a TrialSpec, &'a TrialResult)>,
    ) -> Learned {
        let mut sums: BTreeMap<Profile, (f64, f64, usize)> = BTreeMap::new();
        for (spec, result) in completed {
            let Some(manifest) = &result.manifest else { continue };
            let measured: Vec<(f64, f64)> = result
                .history
                .iter()
                .filter(|e| e.train_images_per_s > 0.0 && e.eval_images_per_s > 0.0)
                .map(|e| (e.train_images_per_s, e.eval_images_per_s))
                .collect();
            // The first epoch pays for warm-up; keep it only when it is all there is.
            let steady = if measured.len() > 1 { &measured[1..] } else { &measured[..] };
            if steady.is_empty() {
                continue;
            }
            let replicas = f64::from(manifest.ranks.max(1));
            let n = steady.len() as f64;
            // Per forward and backward pass, as the table is: a SAM step takes two.
            let passes = f64::from(spec.method.passes_per_step());
            let train = steady.iter().map(|m| m.0).sum::<f64>() / n / replicas * passes;
            let eval = steady.iter().map(|m| m.1).sum::<f64>() / n / replicas;
            let profile = Profile {
                architecture: spec.architecture.clone(),
                resolution: spec.resolution,
                batch: spec.batch_size,
                device: device_name(manifest),
            };
            let entry = sums.entry(profile).or_insert((0.0, 0.0, 0));
            entry.0 += train;
            entry.1 += eval;
            entry.2 += 1;
        }
        let profiles = sums
            .into_iter()
            .map(|(p, (train, eval, n))| {
                (p, (Throughput { train: train / n as f64, eval: eval / n as f64 }, n))
            })
            .collect();
        Learned { profiles }
    }

    pub fn devices(&self) -> BTreeSet<String> {
        self.profiles.keys().map(|p| p.device.clone()).collect()
    }
}

/// Where a trial's throughput came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Basis {
    Store,
    Table,
    /// From other resolutions of the profile (store or table rows), by the module's rule.
    Extrapolated,
}

/// Throughputs by profile: the store's where it has one, else the table's.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    known: HashMap<Profile, (Throughput, Basis)>,
}

impl Calibration {
    pub fn new(table: &Table, learned: &Learned) -> Calibration {
        let mut known: HashMap<Profile, (Throughput, Basis)> =
            table.rows.iter().map(|r| (r.profile.clone(), (r.throughput, Basis::Table))).collect();
        for (profile, (throughput, _)) in &learned.profiles {
            known.insert(profile.clone(), (*throughput, Basis::Store));
        }
        Calibration { known }
    }

    /// The per-device throughput of `profile`, measured or extrapolated.
    pub fn lookup(&self, profile: &Profile) -> Option<(Throughput, Basis)> {
        if let Some(found) = self.known.get(profile) {
            return Some(*found);
        }
        // The same architecture, batch and device at other resolutions, nearest first.
        let mut others: Vec<(u32, Throughput)> = self
            .known
            .iter()
            .filter(|(p, _)| {
                p.architecture == profile.architecture
                    && p.batch == profile.batch
                    && p.device == profile.device
            })
            .map(|(p, (t, _))| (p.resolution, *t))
            .collect();
        others.sort_by_key(|(r, _)| (r.abs_diff(profile.resolution), *r));
        let pixels = |r: u32| f64::from(r) * f64::from(r);
        let target = pixels(profile.resolution);
        let rate = |of: fn(&Throughput) -> f64| -> f64 {
            let seconds_per_image = match others.as_slice() {
                [(r, t)] => target / pixels(*r) / of(t),
                [(r1, t1), (r2, t2), ..] => {
                    let (s1, s2) = (1.0 / of(t1), 1.0 / of(t2));
                    let (p1, p2) = (pixels(*r1), pixels(*r2));
                    let b = ((s2 - s1) / (p2 - p1)).max(0.0);
                    let a = (s1 - b * p1).max(0.0);
                    let fitted = a + b * target;
                    // a = 0 and b = 0 cannot both hold for measured times; keep the rule total.
                    if fitted > 0.0 {
                        fitted
                    } else {
                        target / p1 * s1
                    }
                }
                [] => f64::INFINITY,
            };
            1.0 / seconds_per_image
        };
        if others.is_empty() {
            return None;
        }
        let throughput = Throughput { train: rate(|t| t.train), eval: rate(|t| t.eval) };
        Some((throughput, Basis::Extrapolated))
    }
}

/// Training and validation images of one epoch of a trial (the dataset sizes are `common`'s).
pub fn epoch_images(spec: &TrialSpec) -> Option<(f64, f64)> {
    common::sizes::epoch_images(&spec.dataset)
}

/// A trial's cost: seconds from its first epoch to its last on its devices, and device-seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialCost {
    pub seconds: f64,
    pub devices: u32,
    pub basis: Basis,
}

impl TrialCost {
    pub fn device_hours(&self) -> f64 {
        self.seconds * f64::from(self.devices) / 3600.0
    }
}

/// Why a trial could not be costed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Uncosted {
    /// No row of its profile at any resolution.
    NoRow(Profile),
    /// Its dataset's size is not known without reading it.
    UnknownSize(String),
}

/// `epochs × (train images / train img/s + validation images / eval img/s)` over `devices`
/// devices, each at the per-device rate (data parallel assumed linear).
pub fn trial_seconds(epochs: u32, images: (f64, f64), per_device: Throughput, devices: u32) -> f64 {
    let devices = f64::from(devices.max(1));
    f64::from(epochs) * (images.0 / (per_device.train * devices) + images.1 / (per_device.eval * devices))
}

/// Costs one trial on `device`; `devices` is how many it takes.
pub fn cost(
    calibration: &Calibration,
    spec: &TrialSpec,
    device: &str,
    devices: u32,
) -> Result<TrialCost, Uncosted> {
    let profile = Profile {
        architecture: spec.architecture.clone(),
        resolution: spec.resolution,
        batch: spec.batch_size,
        device: device.to_string(),
    };
    let images = epoch_images(spec)
        .ok_or_else(|| Uncosted::UnknownSize(format!("{} ({})", spec.dataset.name, spec.dataset.format)))?;
    let (mut throughput, basis) = calibration.lookup(&profile).ok_or(Uncosted::NoRow(profile))?;
    // The table holds one forward and backward pass per step; SAM takes two.
    throughput.train /= f64::from(spec.method.passes_per_step());
    Ok(TrialCost { seconds: trial_seconds(spec.epochs, images, throughput, devices), devices, basis })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "# a comment\n\
        architecture,resolution,batch,device,train_images_per_s,eval_images_per_s,source\n\
        resnet50,32,64,gpu-x,1000,4000,test, with a comma\n\
        resnet50,64,64,gpu-x,500,2000,test\n\
        resnet50,32,64,cpu,10,40,test\n";

    fn profile(architecture: &str, resolution: u32, device: &str) -> Profile {
        Profile { architecture: architecture.into(), resolution, batch: 64, device: device.into() }
    }

    #[test]
    fn the_committed_table_parses_and_says_where_every_row_comes_from() {
        let table = Table::parse(COMMITTED, COMMITTED_NAME).unwrap();
        assert!(table.rows.len() >= 12, "{} rows", table.rows.len());
        assert!(table.rows.iter().all(|r| r.source.contains("20")), "every source has a date");
        assert!(table.devices().contains_key("cpu"));
    }

    #[test]
    fn rows_parse_with_commas_in_the_source_and_bad_rows_name_their_line_and_field() {
        let table = Table::parse(TABLE, "t.csv").unwrap();
        assert_eq!(table.rows.len(), 3);
        assert_eq!(table.rows[0].source, "test, with a comma");
        assert_eq!(table.default_device().as_deref(), Some("gpu-x"));
        let bad = TABLE.replace("resnet50,64,64,gpu-x,500,", "resnet50,64,64,gpu-x,fast,");
        let error = Table::parse(&bad, "t.csv").unwrap_err().to_string();
        assert_eq!(error, "t.csv:4: `train_images_per_s`: expected images per second > 0, got `fast`");
        let error = Table::parse(&TABLE.replace(",cpu,10,40,test", ",cpu,10"), "t.csv").unwrap_err();
        assert!(error.to_string().starts_with("t.csv:5: 5 fields, expected 7"), "{error}");
        let twice = format!("{TABLE}resnet50,32,64,cpu,11,41,again\n");
        let error = Table::parse(&twice, "t.csv").unwrap_err().to_string();
        assert_eq!(error, "t.csv:6: resnet50 32 px batch 64 on cpu is listed twice");
        let error = Table::parse("resnet50,32\n", "t.csv").unwrap_err().to_string();
        assert!(error.starts_with("t.csv:1: the first row must be the header"), "{error}");
    }

    #[test]
    fn seconds_are_epochs_times_images_over_throughput_split_over_devices() {
        let rate = Throughput { train: 100.0, eval: 400.0 };
        // 10 × (1000 / 100 + 400 / 400) = 110 s on one device, half on two.
        assert_eq!(trial_seconds(10, (1000.0, 400.0), rate, 1), 110.0);
        assert_eq!(trial_seconds(10, (1000.0, 400.0), rate, 2), 55.0);
        let cost = TrialCost { seconds: 55.0, devices: 2, basis: Basis::Table };
        assert_eq!(cost.device_hours(), 110.0 / 3600.0);
    }

    #[test]
    fn the_store_takes_precedence_over_the_table_and_extrapolation_follows_the_pixel_rule() {
        let table = Table::parse(TABLE, "t.csv").unwrap();
        let none = Calibration::new(&table, &Learned::default());
        assert_eq!(
            none.lookup(&profile("resnet50", 32, "gpu-x")),
            Some((Throughput { train: 1000.0, eval: 4000.0 }, Basis::Table))
        );
        let mut learned = Learned::default();
        learned
            .profiles
            .insert(profile("resnet50", 32, "gpu-x"), (Throughput { train: 800.0, eval: 3000.0 }, 2));
        let both = Calibration::new(&table, &learned);
        assert_eq!(
            both.lookup(&profile("resnet50", 32, "gpu-x")),
            Some((Throughput { train: 800.0, eval: 3000.0 }, Basis::Store))
        );
        // Two resolutions: 1/1000 s at 1024 px², 1/500 s at 4096 px² → b = 1/3072000 s per px²,
        // a = 1/1000 - 1024 b = 2/3000 s; at 128 px (16384 px²): a + 16384 b = 6/1000 s.
        let (at_128, basis) = none.lookup(&profile("resnet50", 128, "gpu-x")).unwrap();
        assert_eq!(basis, Basis::Extrapolated);
        assert!((at_128.train - 1000.0 / 6.0).abs() < 1e-9, "{at_128:?}");
        // One resolution: cost ∝ pixels, 10 img/s at 32 px → 2.5 at 64 px.
        let (at_64, _) = none.lookup(&profile("resnet50", 64, "cpu")).unwrap();
        assert!((at_64.train - 2.5).abs() < 1e-12 && (at_64.eval - 10.0).abs() < 1e-12, "{at_64:?}");
        // A launch-bound profile (slower at 32 px than at 64: b would be negative, so 0) keeps the
        // rate of the nearest measured resolution.
        let flat = Table::parse(
            &TABLE.replace("500,2000", "1000,4000").replace("1000,4000,test,", "900,4000,test,"),
            "t",
        )
        .unwrap();
        let (at_128, _) =
            Calibration::new(&flat, &Learned::default()).lookup(&profile("resnet50", 128, "gpu-x")).unwrap();
        assert!((at_128.train - 1000.0).abs() < 1e-9, "{at_128:?}");
        assert_eq!(none.lookup(&profile("densenet121", 32, "gpu-x")), None);
        assert_eq!(none.lookup(&profile("resnet50", 32, "gpu-y")), None);
    }

    #[test]
    fn a_sam_trial_trains_at_half_the_rate_of_a_pass_and_teaches_the_rate_of_one() {
        let table = Table::parse(TABLE, "t.csv").unwrap();
        let none = Calibration::new(&table, &Learned::default());
        let spec = |method: &str| -> TrialSpec {
            serde_json::from_str(&format!(
                r#"{{"architecture":"resnet50","optimizer":"adam","dataset":{{"name":"d","format":"synthetic",
                "options":{{"train_size":1000,"val_size":400}}}},"resolution":32,"method":"{method}","epochs":10,
                "batch_size":64,"learning_rate":0.1,"seed":1}}"#
            ))
            .unwrap()
        };
        // 1000 img/s training, 4000 evaluating: 10 × (1000/1000 + 400/4000) = 11 s; SAM 10 × (2 + 0.1).
        let baseline = cost(&none, &spec("baseline"), "gpu-x", 1).unwrap();
        let sam = cost(&none, &spec("sam"), "gpu-x", 1).unwrap();
        assert!((baseline.seconds - 11.0).abs() < 1e-9 && (sam.seconds - 21.0).abs() < 1e-9, "{sam:?}");
    }

    #[test]
    fn devices_are_named_by_gpu_model_or_cpu_threads() {
        let gpu =
            RunManifest { devices: "cuda".into(), gpus: vec!["NVIDIA H200".into()], ..Default::default() };
        assert_eq!(device_name(&gpu), "nvidia-h200");
        let cpu = RunManifest { devices: "cpu".into(), cpu_threads: 1, ..Default::default() };
        assert_eq!(device_name(&cpu), "cpu");
        let cpu2 = RunManifest { devices: "cpu".into(), cpu_threads: 2, ..Default::default() };
        assert_eq!(device_name(&cpu2), "cpu-2threads");
        assert_eq!(slug(" NVIDIA  H100 80GB HBM3 "), "nvidia-h100-80gb-hbm3");
    }

    #[test]
    fn dataset_sizes_follow_the_format_and_its_split_options() {
        let spec = |format: &str, options: &str| {
            let mut spec: TrialSpec = serde_json::from_str(&format!(
                r#"{{"architecture":"resnet50","optimizer":"adam","dataset":{{"name":"d","format":"{format}","options":{options}}},
                "resolution":32,"method":"baseline","epochs":1,"batch_size":64,"learning_rate":0.1,"seed":1}}"#
            ))
            .unwrap();
            spec.dataset.root = Some("/data/x".into());
            spec
        };
        assert_eq!(
            epoch_images(&spec("synthetic", r#"{"train_size":300,"val_size":50}"#)),
            Some((300.0, 50.0))
        );
        assert_eq!(epoch_images(&spec("eurosat", "{}")), Some((21_600.0, 5_400.0)));
        assert_eq!(epoch_images(&spec("corel1k", r#"{"val_fraction":0.5}"#)), Some((500.0, 500.0)));
        assert_eq!(epoch_images(&spec("pacs", r#"{"holdout_domain":"sketch"}"#)), Some((6_062.0, 3_929.0)));
        assert_eq!(epoch_images(&spec("image_folder", "{}")), None);
    }
}
