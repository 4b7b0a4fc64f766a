//! Every architecture's committed trunk manifest (`common/src/weights_manifest/manifests/`) lists exactly
//! the variables and shapes of the tch model's trunk, so that the coordinator's header check,
//! which has no libtorch, agrees with the worker's strict loader.
//!
//! After changing a model: `SAL_WRITE_MANIFESTS=1 cargo test -p worker --test weights_manifest`
//! rewrites the manifests; review the diff.

use std::path::PathBuf;

use tch::nn::VarStore;
use tch::Device;
use worker::models::{self, ARCHITECTURES};
use worker::weights_manifest::{is_trunk_variable, Manifest, Shapes};
use worker::Head;

fn trunk_of(architecture: &str) -> Shapes {
    let vs = VarStore::new(Device::Cpu);
    let _model = models::build(&vs.root(), architecture, Head::Paper, 10).expect("a known architecture");
    vs.variables()
        .into_iter()
        .filter(|(name, _)| is_trunk_variable(name))
        .map(|(name, t)| (name, t.size()))
        .collect()
}

#[test]
fn committed_manifests_match_the_models() {
    let write = std::env::var_os("SAL_WRITE_MANIFESTS").is_some();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../common/src/weights_manifest/manifests");
    let mut stale = Vec::new();
    for architecture in ARCHITECTURES {
        let built = Manifest { architecture: architecture.to_string(), tensors: trunk_of(architecture) };
        assert!(!built.tensors.is_empty(), "{architecture}: no trunk variables");
        if write {
            std::fs::write(dir.join(format!("{architecture}.json")), built.to_json())
                .expect("write manifest");
        } else if Manifest::of(architecture).as_ref() != Some(&built) {
            stale.push(*architecture);
        }
    }
    assert!(
        stale.is_empty(),
        "manifests differ from the models for {stale:?}: rerun with SAL_WRITE_MANIFESTS=1 and review the diff"
    );
}

#[test]
fn the_written_form_reads_back() {
    let manifest = Manifest { architecture: "small_cnn".into(), tensors: trunk_of("small_cnn") };
    let back: Manifest = serde_json::from_str(&manifest.to_json()).expect("JSON");
    assert_eq!(back, manifest);
}
