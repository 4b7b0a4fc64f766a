use super::*;
use crate::schedule::slots::TrialsPerDevice;
use crate::sweep::identity;
use common::{Method, Precision, TrialSpec};
use std::path::{Path, PathBuf};

const NOOP: &str = "name: t\nepochs: 2\nbatch_size: 4\nlearning_rate: 0.1\nseeds: [1, 2]\n\
    methods: [baseline, sal]\narchitectures: [noop]\noptimizers: [sgd]\nresolutions: [16, 32]\n\
    datasets:\n  synth:\n    format: synthetic\n";

fn parse_str(text: &str) -> Result<Sweep, SpecError> {
    parse(Path::new("s.yaml"), text, &LoadOptions::default())
}

#[test]
fn the_random_shrink_perturb_arm_needs_sal_and_names_its_sal_trial() {
    let alone = NOOP.replace("methods: [baseline, sal]", "methods: [baseline, shrink_perturb_random]");
    let error = parse_str(&alone).unwrap_err().to_string();
    assert!(error.starts_with("s.yaml:6: `methods`") && error.contains("add `sal`"), "{error}");

    let both = NOOP.replace("methods: [baseline, sal]", "methods: [sal, shrink_perturb_random]");
    let sweep = parse_str(&both).unwrap();
    for random in sweep.trials.iter().filter(|t| t.spec.method == Method::ShrinkPerturbRandom) {
        let partner = identity::sal_partner_id(&random.identity).unwrap();
        let sal = sweep.trials.iter().find(|t| t.id == partner).expect("its sal trial is in the sweep");
        assert_eq!(sal.spec, TrialSpec { method: Method::Sal, ..random.spec.clone() });
        assert_eq!(random.spec.deformations, None);
    }
    assert!(sweep
        .trials
        .iter()
        .filter(|t| t.spec.method == Method::Sal)
        .all(|t| identity::sal_partner_id(&t.identity).is_none()));
    // --only that keeps the arm without its sal trials would leave it waiting forever.
    let only = LoadOptions { only: vec!["method=shrink_perturb_random".into()], ..Default::default() };
    let error = parse(Path::new("s.yaml"), &both, &only).unwrap_err().to_string();
    assert!(error.contains("keep `method=sal` too"), "{error}");
}

#[test]
fn the_compute_matched_baseline_trains_twice_the_epochs_and_sam_costs_two_passes() {
    let text = NOOP.replace("methods: [baseline, sal]", "methods: [baseline, baseline_2x, sam]");
    let sweep = parse_str(&text).unwrap();
    let of = |method: Method| {
        sweep.trials.iter().find(|t| t.spec.method == method && t.spec.resolution == 16).unwrap()
    };
    let (baseline, twice, sam) = (of(Method::Baseline), of(Method::Baseline2x), of(Method::Sam));
    assert_eq!(twice.spec, TrialSpec { method: Method::Baseline2x, epochs: 4, ..baseline.spec.clone() });
    assert_eq!(twice.cost, 2.0 * baseline.cost);
    assert_eq!(sam.cost, 2.0 * baseline.cost);
    let error = parse_str(&text.replace("epochs: 2", "epochs: 60000")).unwrap_err().to_string();
    assert!(error.contains("`epochs`") && error.contains("baseline_2x"), "{error}");
}

#[test]
fn expands_every_axis_with_distinct_stable_ids() {
    let sweep = parse_str(NOOP).unwrap();
    assert_eq!(sweep.trials.len(), 2 * 2 * 2);
    let again = parse_str(NOOP).unwrap();
    let ids: Vec<_> = sweep.trials.iter().map(|t| t.id.clone()).collect();
    assert_eq!(ids, again.trials.iter().map(|t| t.id.clone()).collect::<Vec<_>>());
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
}

#[test]
fn trials_per_gpu_is_a_positive_integer_or_auto_and_does_not_change_ids() {
    assert_eq!(parse_str(NOOP).unwrap().trials_per_device, TrialsPerDevice::Fixed(1));
    let three = parse_str(&format!("{NOOP}trials_per_gpu: 3\n")).unwrap();
    assert_eq!(three.trials_per_device, TrialsPerDevice::Fixed(3));
    assert_eq!(three.trials[0].id, parse_str(NOOP).unwrap().trials[0].id);
    let auto = parse_str(&format!("{NOOP}trials_per_gpu: auto\n")).unwrap();
    assert_eq!(auto.trials_per_device, TrialsPerDevice::Auto);
    for bad in ["0", "-1", "1.5", "many", "[2]"] {
        let message = parse_str(&format!("{NOOP}trials_per_gpu: {bad}\n")).unwrap_err().to_string();
        assert!(
            message.starts_with("s.yaml:13: `trials_per_gpu`: must be an integer of at least 1"),
            "{message}"
        );
    }
}

#[test]
fn adding_a_seed_keeps_the_existing_ids() {
    let before = parse_str(NOOP).unwrap();
    let after = parse_str(&NOOP.replace("seeds: [1, 2]", "seeds: [1, 2, 3]")).unwrap();
    assert_eq!(after.trials.len(), 12);
    for trial in &before.trials {
        assert!(after.trials.iter().any(|t| t.id == trial.id));
    }
}

#[test]
fn ids_do_not_depend_on_where_the_files_lie_but_on_the_weights_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/weights")).unwrap();
    std::fs::write(dir.path().join("data/weights/w.bin"), b"one").unwrap();
    let text = NOOP.replace("format: synthetic\n", "format: image_folder\n    root: imgs\n")
        + "pretrained:\n  noop: weights/w.bin\n";
    let load = |sweep_file: &str, root: Option<PathBuf>| {
        parse(Path::new(sweep_file), &text, &LoadOptions { data_root: root, ..Default::default() }).unwrap()
    };
    let ids = |s: &Sweep| s.trials.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    let first = load("a/s.yaml", Some(dir.path().join("data")));
    let moved = load("b/../a/./s.yaml", Some(dir.path().join("data/../data")));
    assert_eq!(ids(&first), ids(&moved));
    // The spec a worker gets carries today's paths.
    assert_ne!(first.trials[0].spec.dataset.root, moved.trials[0].spec.dataset.root);
    std::fs::write(dir.path().join("data/weights/w.bin"), b"two").unwrap();
    let reweighted = load("a/s.yaml", Some(dir.path().join("data")));
    assert!(ids(&first).iter().all(|id| !ids(&reweighted).contains(id)));
}

#[test]
fn sal_overrides_do_not_change_baseline_ids() {
    let before = parse_str(NOOP).unwrap();
    let after = parse_str(&format!("{NOOP}sal:\n  warmup_epochs: 3\n")).unwrap();
    let baseline = |s: &Sweep| {
        s.trials
            .iter()
            .filter(|t| t.spec.method == Method::Baseline)
            .map(|t| t.id.clone())
            .collect::<Vec<_>>()
    };
    let sal = |s: &Sweep| {
        s.trials.iter().filter(|t| t.spec.method == Method::Sal).map(|t| t.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(baseline(&before), baseline(&after));
    assert_ne!(sal(&before), sal(&after));
}

#[test]
fn every_sweep_file_shipped_in_sweeps_loads() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let sweep = load(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
            assert!(!sweep.trials.is_empty(), "{}", path.display());
            loaded += 1;
        }
    }
    assert!(loaded >= 4, "only {loaded} sweep files in {}", folder.display());
}

#[test]
fn gpu_options_reach_every_trial_and_change_ids_only_when_set() {
    let plain = parse_str(NOOP).unwrap();
    let fast = parse_str(&format!(
        "{NOOP}gpus_per_trial: 1\nprecision: bf16\nchannels_last: true\ncudnn_benchmark: true\n"
    ))
    .unwrap();
    assert!(fast
        .trials
        .iter()
        .all(|t| t.spec.precision == Precision::Bf16 && t.spec.channels_last && t.spec.cudnn_benchmark));
    assert!(plain.trials.iter().all(|t| !fast.trials.iter().any(|f| f.id == t.id)));
    // Spelled out at their defaults, they change nothing.
    let defaults =
        parse_str(&format!("{NOOP}precision: fp32\nchannels_last: false\ncudnn_benchmark: false\n")).unwrap();
    let ids = |s: &Sweep| s.trials.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&plain), ids(&defaults));
    let error = parse_str(&format!("{NOOP}precision: bf16\n")).unwrap_err().to_string();
    assert!(error.contains("`precision`") && error.contains("gpus_per_trial"), "{error}");
    let error = parse_str(&format!("{NOOP}precision: fp16\n")).unwrap_err().to_string();
    assert!(error.contains("`precision`") && error.contains("fp16"), "{error}");
}

#[test]
fn only_selects_a_slice_and_refuses_unknown_values() {
    let options =
        LoadOptions { only: vec!["method=sal".into(), "resolution=16".into()], ..Default::default() };
    let sweep = parse(Path::new("s.yaml"), NOOP, &options).unwrap();
    assert_eq!(sweep.trials.len(), 2);
    assert!(sweep.trials.iter().all(|t| t.spec.method == Method::Sal && t.spec.resolution == 16));
    let bad = LoadOptions { only: vec!["resolution=99".into()], ..Default::default() };
    let error = parse(Path::new("s.yaml"), NOOP, &bad).unwrap_err().to_string();
    assert!(error.contains("--only resolution=99") && error.contains("`99`"), "{error}");
}

#[test]
fn errors_name_the_line_of_the_key() {
    let text = NOOP.replace("optimizers: [sgd]", "optimizers: [lion]");
    let error = parse_str(&text).unwrap_err().to_string();
    assert!(error.starts_with("s.yaml:8: `optimizers`: unknown optimizer `lion`"), "{error}");
    let text = format!("{NOOP}    bogus: 1\n");
    let error = parse_str(&text).unwrap_err().to_string();
    assert!(error.starts_with("s.yaml:13: `datasets.synth.bogus`: unknown field `bogus`"), "{error}");
}

#[test]
fn line_index_follows_nesting_and_falls_back_to_parents() {
    let index = LineIndex::new("a: 1\nb:\n  c:\n    d: 2\n  e: {f: 1}\n# x: 1\ng: 3\n");
    assert_eq!(index.line_of("a"), 1);
    assert_eq!(index.line_of("b.c.d"), 4);
    assert_eq!(index.line_of("b.e.f"), 5);
    assert_eq!(index.line_of("g"), 7);
    assert_eq!(index.line_of("zzz"), 1);
}

#[test]
fn cost_orders_bigger_models_and_resolutions_first() {
    let sweep = parse_str(&NOOP.replace("[noop]", "[noop, small_cnn]")).unwrap();
    let cost = |arch: &str, res: u32| {
        sweep.trials.iter().find(|t| t.spec.architecture == arch && t.spec.resolution == res).unwrap().cost
    };
    assert!(cost("small_cnn", 32) > cost("small_cnn", 16));
    assert!(cost("small_cnn", 16) > cost("noop", 32));
}
