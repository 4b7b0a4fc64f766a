//! `worker --coordinator URL` as a process: refusals and giving up are one line and exit code 1.
//! (The end-to-end runs with a coordinator are in the `e2e` crate.)

use std::process::Command;

fn worker(args: &[&str]) -> (Option<i32>, String) {
    let work_dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(args)
        .arg("--work-dir")
        .arg(work_dir.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).trim().to_string())
}

#[test]
fn a_malformed_coordinator_address_is_refused() {
    let (code, stderr) = worker(&["--coordinator", "not a url"]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("error: coordinator not a url: bad address"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn an_unreachable_coordinator_is_given_up_on_after_the_limit() {
    // Port 9 (discard) on loopback: nothing listens there.
    let (code, stderr) = worker(&["--coordinator", "http://127.0.0.1:9", "--give-up-after", "0"]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("error: coordinator http://127.0.0.1:9 unreachable for 0 s"), "{stderr}");
}

#[test]
fn no_coordinator_and_no_subcommand_is_a_usage_error() {
    let (code, stderr) = worker(&[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--coordinator"), "{stderr}");
}

#[test]
fn gpus_this_node_does_not_have_are_a_usage_error() {
    let (code, stderr) = worker(&["--coordinator", "http://127.0.0.1:9", "--gpus", "0,4096"]);
    assert_eq!(code, Some(2));
    assert!(stderr.starts_with("error: --gpus: no CUDA device"), "{stderr}");
}
