//! The deployment files pass only flags and environment variables that the binaries know: every
//! `--flag` and `env` name of the Kubernetes manifests (the base and the TLS overlay's patches) and
//! of the Slurm script appears in the `--help` of the binary it is given to.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::binary;
use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `binary --help`, and the help of its subcommand when `subcommand` is given.
fn help(name: &str, subcommand: Option<&str>) -> String {
    let mut command = Command::new(binary(name));
    command.args(subcommand).arg("--help");
    let output = command.output().unwrap_or_else(|e| panic!("{name} --help: {e}"));
    assert!(output.status.success(), "{name} --help failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The flags a help text lists (`--name`), and the environment variables it names (`$NAME`,
/// `[env: NAME=]`).
fn known(help: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut flags = BTreeSet::new();
    let mut env = BTreeSet::new();
    let words =
        help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '(' || c == ')');
    for word in words {
        if let Some(flag) = word.strip_prefix("--") {
            let flag: String = flag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            flags.insert(format!("--{flag}"));
        }
        let name = word.trim_start_matches('$').trim_start_matches("env:");
        let name: String = name.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
        if name.starts_with("SAL_") {
            env.insert(name);
        }
    }
    for part in help.split("[env: ").skip(1) {
        env.extend(part.split('=').next().map(str::to_string));
    }
    (flags, env)
}

/// What a deployment passes to one binary.
#[derive(Default, Debug)]
struct Passed {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

fn note_args(args: &[Value], passed: &mut Passed) {
    for arg in args.iter().filter_map(Value::as_str) {
        if let Some(flag) = arg.strip_prefix("--") {
            passed.flags.insert(format!("--{}", flag.split('=').next().unwrap_or(flag)));
        }
    }
}

/// Walks every container of every object; `command: [NAME]` says which binary it runs.
fn collect_containers(value: &Value, coordinator: &mut Passed, worker: &mut Passed) {
    match value {
        Value::Mapping(map) => {
            let command = map.get("command").and_then(Value::as_sequence);
            let program = command.and_then(|c| c.first()).and_then(Value::as_str);
            let target = match program {
                Some("coordinator") => Some(&mut *coordinator),
                Some("worker") => Some(&mut *worker),
                _ => None,
            };
            if let Some(passed) = target {
                if let Some(args) = map.get("args").and_then(Value::as_sequence) {
                    note_args(args, passed);
                }
                for var in map.get("env").and_then(Value::as_sequence).into_iter().flatten() {
                    if let Some(name) = var.get("name").and_then(Value::as_str) {
                        passed.env.insert(name.to_string());
                    }
                }
            }
            for child in map.values() {
                collect_containers(child, coordinator, worker);
            }
        }
        Value::Sequence(items) => {
            for item in items {
                collect_containers(item, coordinator, worker);
            }
        }
        _ => {}
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            <Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// The TLS overlay's JSON patches: `add .../containers/0/args/-` values, by the patched object.
fn overlay_flags(path: &Path, coordinator: &mut Passed, worker: &mut Passed) {
    for document in documents(path) {
        for patch in document.get("patches").and_then(Value::as_sequence).into_iter().flatten() {
            let name = patch.get("target").and_then(|t| t.get("name")).and_then(Value::as_str).unwrap_or("");
            let target = if name.contains("worker") { &mut *worker } else { &mut *coordinator };
            let text = patch.get("patch").and_then(Value::as_str).unwrap_or("");
            let operations: Value = serde_yaml_ng::from_str(text).unwrap_or(Value::Null);
            for operation in operations.as_sequence().into_iter().flatten() {
                let path = operation.get("path").and_then(Value::as_str).unwrap_or("");
                if path.contains("/args") {
                    note_args(&[operation.get("value").cloned().unwrap_or(Value::Null)], target);
                }
            }
        }
    }
}

fn assert_known(what: &str, passed: &Passed, help: &str) {
    let (flags, env) = known(help);
    let unknown: Vec<&String> = passed.flags.iter().filter(|f| !flags.contains(*f)).collect();
    assert!(unknown.is_empty(), "{what} passes flags its --help does not list: {unknown:?}");
    let unknown: Vec<&String> = passed.env.iter().filter(|e| !env.contains(*e)).collect();
    assert!(unknown.is_empty(), "{what} sets environment variables its --help does not name: {unknown:?}");
}

#[test]
fn every_flag_and_variable_of_the_kubernetes_manifests_exists_in_the_binaries() {
    let k8s = repo().join("deploy/k8s");
    let mut coordinator = Passed::default();
    let mut worker = Passed::default();
    for file in ["coordinator.yaml", "worker.yaml", "data-pvc.yaml"] {
        for document in documents(&k8s.join(file)) {
            collect_containers(&document, &mut coordinator, &mut worker);
        }
    }
    overlay_flags(&k8s.join("tls/kustomization.yaml"), &mut coordinator, &mut worker);
    // The walk found what the manifests are known to pass (a walk that finds nothing checks nothing).
    for flag in ["--sweep", "--state-dir", "--token-file", "--tls-cert", "--tls-key"] {
        assert!(coordinator.flags.contains(flag), "no {flag} found for the coordinator: {coordinator:?}");
    }
    for flag in ["--coordinator", "--gpus", "--token-file", "--tls-ca"] {
        assert!(worker.flags.contains(flag), "no {flag} found for the worker: {worker:?}");
    }
    assert_known("deploy/k8s (coordinator)", &coordinator, &help("coordinator", None));
    assert_known("deploy/k8s (worker)", &worker, &help("worker", None));
}

#[test]
fn every_flag_of_the_slurm_script_exists_in_the_binaries() {
    let script = std::fs::read_to_string(repo().join("deploy/slurm/sal-sweep.sbatch")).unwrap();
    let mut coordinator = Passed::default();
    let mut worker = Passed::default();
    // Which binary a line's flags go to: the argument arrays (and their continuation lines, up
    // to the closing parenthesis) and the node side's device flags.
    let mut open_array: Option<bool> = None;
    for line in script.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let to_coordinator = if let Some(to_coordinator) = open_array {
            to_coordinator
        } else if line.starts_with("COORDINATOR_ARGS") {
            true
        } else if line.starts_with("WORKER_ARGS") || line.contains("devices") || line.starts_with("WORKER=") {
            false
        } else {
            continue;
        };
        open_array = (line.contains("ARGS=(") || open_array.is_some())
            .then_some(to_coordinator)
            .filter(|_| !line.ends_with(')'));
        let target = if to_coordinator { &mut coordinator } else { &mut worker };
        for word in line.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == '"') {
            if let Some(flag) = word.strip_prefix("--") {
                let flag: String =
                    flag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                if !flag.is_empty() {
                    target.flags.insert(format!("--{flag}"));
                }
            }
        }
    }
    for flag in ["--cpu-ranks", "--gpus", "--cpu-threads", "--coordinator", "--token-file"] {
        assert!(worker.flags.contains(flag), "no {flag} found for the worker: {worker:?}");
    }
    assert!(coordinator.flags.contains("--addr-file"), "{coordinator:?}");
    assert_known("deploy/slurm/sal-sweep.sbatch (coordinator)", &coordinator, &help("coordinator", None));
    assert_known("deploy/slurm/sal-sweep.sbatch (worker)", &worker, &help("worker", None));
}
