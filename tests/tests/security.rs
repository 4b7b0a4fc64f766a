//! Who may do what to a running coordinator, checked with a raw gRPC client built from `proto/`
//! (not the worker's): tokens and their roles, leases bound to their holder, what a worker sends
//! checked before it is stored, size limits, TLS, safe defaults, health and reflection.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{binary, noop_sweep, records, start_worker_with, Coordinator, Process};
use proto::pb;
use proto::pb::coordinator_client::CoordinatorClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

const TOKEN: &str = "worker-token-0123456789";
const READ_TOKEN: &str = "reader-token-0123456789";

/// Writes `text` to a file only its owner may read.
fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Adds whatever credentials a test chooses to every call.
#[derive(Clone, Default)]
struct Credentials {
    token: Option<String>,
    session: Option<String>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.token {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        if let Some(session) = &self.session {
            request.metadata_mut().insert(proto::SESSION_METADATA, session.parse().unwrap());
        }
        Ok(request)
    }
}

type Raw = CoordinatorClient<InterceptedService<Channel, Credentials>>;

async fn raw(url: &str, token: Option<&str>, session: Option<&str>) -> Raw {
    let channel = Endpoint::from_shared(url.to_string()).unwrap().connect().await.unwrap();
    let credentials = Credentials { token: token.map(str::to_string), session: session.map(str::to_string) };
    CoordinatorClient::with_interceptor(channel, credentials).max_decoding_message_size(64 << 20)
}

fn devices() -> Option<pb::Devices> {
    Some(pb::Devices { kind: Some(pb::devices::Kind::CpuRanks(1)), memory_mb: vec![] })
}

fn register_request(worker_id: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        protocol_version: proto::PROTOCOL_VERSION,
        worker_id: worker_id.into(),
        hostname: "test-host".into(),
        devices: devices(),
    }
}

/// A worker made of raw calls: registered, with its session.
struct RawWorker {
    id: String,
    client: Raw,
}

impl RawWorker {
    async fn register(url: &str, id: &str) -> Self {
        let mut anonymous = raw(url, Some(TOKEN), None).await;
        let reply = anonymous.register(register_request(id)).await.unwrap().into_inner();
        assert_eq!(reply.session_id.len(), 32, "a session is 128 random bits: {}", reply.session_id);
        Self { id: id.into(), client: raw(url, Some(TOKEN), Some(&reply.session_id)).await }
    }

    async fn lease(&mut self) -> pb::Assignment {
        let request = pb::LeaseRequest {
            worker_id: self.id.clone(),
            devices: vec![pb::DeviceLoad { leases: vec![] }],
            ..Default::default()
        };
        self.client.lease(request).await.unwrap().into_inner().assignment.expect("a trial is pending")
    }
}

fn lease_ref(lease_id: &str, trial_id: &str) -> Option<pb::LeaseRef> {
    Some(pb::LeaseRef { lease_id: lease_id.into(), trial_id: trial_id.into() })
}

fn report(epoch: u32) -> serde_json::Value {
    serde_json::json!({
        "epoch": epoch, "train_loss": 0.5, "train_accuracy": 0.5, "val_loss": 0.5,
        "val_accuracy": 0.5, "grad_norm": 0.1, "sal": null, "seconds": 0.01
    })
}

/// A consistent result of a 2-epoch trial on the noop sweep's synthetic data (10 classes).
fn good_result() -> serde_json::Value {
    let classes = 10;
    let row = |label: String| serde_json::json!({"label": label, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1});
    let confusion: Vec<Vec<u64>> =
        (0..classes).map(|i| (0..classes).map(|j| u64::from(i == j)).collect()).collect();
    serde_json::json!({
        "status": "completed", "top1": 1.0, "top5": 1.0, "test_loss": 0.1,
        "per_class": (0..classes).map(|c| row(format!("class{c}"))).collect::<Vec<_>>(),
        "macro_avg": {"label": "macro avg", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 10},
        "weighted_avg": {"label": "weighted avg", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 10},
        "confusion": confusion, "train_seconds": 0.02, "peak_host_mb": 1.0, "peak_device_mb": null,
        "inference_ms_per_batch": 0.1, "history": [report(1), report(2)]
    })
}

fn complete_request(lease_id: &str, trial_id: &str, result: &serde_json::Value) -> pb::CompleteRequest {
    pb::CompleteRequest {
        lease: lease_ref(lease_id, trial_id),
        result_json: result.to_string(),
        ..Default::default()
    }
}

fn header_chunk(lease_id: &str, trial_id: &str, epoch: u32, total_bytes: u64) -> pb::CheckpointChunk {
    pb::CheckpointChunk {
        part: Some(pb::checkpoint_chunk::Part::Header(pb::CheckpointHeader {
            lease: lease_ref(lease_id, trial_id),
            epoch,
            total_bytes,
        })),
    }
}

fn data_chunk(bytes: usize) -> pb::CheckpointChunk {
    pb::CheckpointChunk { part: Some(pb::checkpoint_chunk::Part::Data(vec![7u8; bytes])) }
}

/// Every call of the protocol once, with harmless arguments; answers each call's outcome.
async fn every_call(client: &mut Raw) -> Vec<(&'static str, Result<(), Status>)> {
    let lease = || lease_ref("00112233445566778899aabbccddeeff", "0011223344556677");
    let mut outcomes = Vec::new();
    outcomes.push(("Register", client.register(register_request("probe")).await.map(drop)));
    let ask = pb::LeaseRequest { worker_id: "probe".into(), ..Default::default() };
    outcomes.push(("Lease", client.lease(ask).await.map(drop)));
    let beat = pb::HeartbeatRequest { worker_id: "probe".into(), ..Default::default() };
    outcomes.push(("Heartbeat", client.heartbeat(beat).await.map(drop)));
    let epoch = pb::EpochReportRequest { lease: lease(), report_json: report(1).to_string() };
    outcomes.push(("ReportEpoch", client.report_epoch(epoch).await.map(drop)));
    let chunks =
        vec![header_chunk("00112233445566778899aabbccddeeff", "0011223344556677", 1, 1), data_chunk(1)];
    outcomes.push(("UploadCheckpoint", client.upload_checkpoint(tokio_stream::iter(chunks)).await.map(drop)));
    let download = pb::CheckpointRequest { trial_id: "0011223344556677".into(), epoch: 1, lease: lease() };
    outcomes.push(("DownloadCheckpoint", client.download_checkpoint(download).await.map(drop)));
    let complete =
        pb::CompleteRequest { lease: lease(), result_json: good_result().to_string(), ..Default::default() };
    outcomes.push(("Complete", client.complete(complete).await.map(drop)));
    let fail = pb::FailRequest { lease: lease(), error: "x".into(), ..Default::default() };
    outcomes.push(("Fail", client.fail(fail).await.map(drop)));
    outcomes.push(("Release", client.release(pb::ReleaseRequest { lease: lease() }).await.map(drop)));
    outcomes.push(("Status", client.status(pb::StatusRequest {}).await.map(drop)));
    outcomes.push(("Results", client.results(pb::ResultsRequest {}).await.map(drop)));
    outcomes
}

fn start_guarded(dir: &Path, trials: usize, extra: &[&str]) -> Coordinator {
    let sweep = noop_sweep(dir, trials, 2, 0);
    let token = secret_file(dir, "token", &format!("{TOKEN}\n"));
    let read_token = secret_file(dir, "read-token", READ_TOKEN);
    let mut args = vec![
        "--keep-serving".to_string(),
        "--token-file".into(),
        token.display().to_string(),
        "--read-token-file".into(),
        read_token.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Coordinator::start(&sweep, &dir.join("state"), "127.0.0.1:0", &args)
}

#[test]
fn every_call_needs_the_token_and_the_read_only_token_opens_only_status_and_results() {
    let dir = tempfile::tempdir().unwrap();
    let mut coordinator = start_guarded(dir.path(), 1, &[]);
    let url = coordinator.url();
    let runtime = runtime();
    for token in [None, Some("wrong-token"), Some("")] {
        let outcomes = runtime.block_on(async { every_call(&mut raw(&url, token, None).await).await });
        assert_eq!(outcomes.len(), 11);
        for (call, outcome) in outcomes {
            let code = outcome.err().map(|s| s.code());
            assert_eq!(code, Some(Code::Unauthenticated), "{call} with token {token:?}");
        }
    }
    let outcomes = runtime.block_on(async { every_call(&mut raw(&url, Some(READ_TOKEN), None).await).await });
    for (call, outcome) in outcomes {
        match call {
            "Status" | "Results" => assert!(outcome.is_ok(), "{call} with the read-only token: {outcome:?}"),
            _ => assert_eq!(outcome.err().map(|s| s.code()), Some(Code::PermissionDenied), "{call}"),
        }
    }
    // The worker token passes every call; without a session, the calls of a registered worker
    // are told to register, and the made-up lease is nobody's.
    let outcomes = runtime.block_on(async { every_call(&mut raw(&url, Some(TOKEN), None).await).await });
    for (call, outcome) in outcomes {
        match call {
            "Register" | "Status" | "Results" => assert!(outcome.is_ok(), "{call}: {outcome:?}"),
            _ => assert_eq!(outcome.err().map(|s| s.code()), Some(Code::FailedPrecondition), "{call}"),
        }
    }
    // Nothing changed: the one trial is pending, with no result.
    assert!(records(&dir.path().join("state")).iter().all(|r| r.state == "pending" && r.result.is_none()));
    // 42 refused calls, one log line naming the peer (at most one a minute).
    coordinator.process.terminate();
    coordinator.process.wait();
    let stderr = coordinator.process.stderr.all();
    let logged: Vec<&str> = stderr.lines().filter(|l| l.contains("refused a call")).collect();
    assert_eq!(logged.len(), 1, "{stderr}");
    assert!(logged[0].contains("peer=127.0.0.1:"), "{}", logged[0]);
}

#[test]
fn a_worker_cannot_act_on_another_workers_lease_and_a_forged_completion_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = start_guarded(dir.path(), 2, &[]);
    let url = coordinator.url();
    let runtime = runtime();
    runtime.block_on(async {
        let mut a = RawWorker::register(&url, "worker-a").await;
        let mut b = RawWorker::register(&url, "worker-b").await;
        let grant = a.lease().await;
        let (lease, trial) = (grant.lease_id.clone(), grant.trial_id.clone());
        assert_eq!(lease.len(), 32);
        assert!(lease.bytes().all(|c| c.is_ascii_hexdigit()) && !lease.contains(&trial), "{lease}");

        // Worker b names a's lease in every call that acts on one: refused.
        let epoch =
            pb::EpochReportRequest { lease: lease_ref(&lease, &trial), report_json: report(1).to_string() };
        let mut refused = vec![("ReportEpoch", b.client.report_epoch(epoch).await.map(drop))];
        let chunks = vec![header_chunk(&lease, &trial, 1, 4), data_chunk(4)];
        refused.push((
            "UploadCheckpoint",
            b.client.upload_checkpoint(tokio_stream::iter(chunks)).await.map(drop),
        ));
        let download =
            pb::CheckpointRequest { trial_id: trial.clone(), epoch: 1, lease: lease_ref(&lease, &trial) };
        refused.push(("DownloadCheckpoint", b.client.download_checkpoint(download).await.map(drop)));
        refused.push((
            "Complete",
            b.client.complete(complete_request(&lease, &trial, &good_result())).await.map(drop),
        ));
        let fail = pb::FailRequest {
            lease: lease_ref(&lease, &trial),
            error: "stolen".into(),
            ..Default::default()
        };
        refused.push(("Fail", b.client.fail(fail).await.map(drop)));
        refused.push((
            "Release",
            b.client.release(pb::ReleaseRequest { lease: lease_ref(&lease, &trial) }).await.map(drop),
        ));
        for (call, outcome) in refused {
            assert_eq!(
                outcome.err().map(|s| s.code()),
                Some(Code::NotFound),
                "{call} on another worker's lease"
            );
        }
        // Naming it in a heartbeat does not extend it: it is reported lost to b.
        let beat = pb::HeartbeatRequest {
            worker_id: "worker-b".into(),
            held_leases: vec![lease.clone()],
            ..Default::default()
        };
        assert_eq!(b.client.heartbeat(beat).await.unwrap().into_inner().lost_leases, vec![lease.clone()]);
        // Claiming to be another worker in a request is refused.
        let beat = pb::HeartbeatRequest { worker_id: "worker-a".into(), ..Default::default() };
        assert_eq!(b.client.heartbeat(beat).await.unwrap_err().code(), Code::InvalidArgument);

        // A completion with a made-up `{trial}-1` lease for the trial nobody leased: refused.
        let status = b.client.status(pb::StatusRequest {}).await.unwrap().into_inner();
        assert_eq!((status.pending, status.leased), (1, 1));
        let results = b.client.results(pb::ResultsRequest {}).await.unwrap().into_inner();
        let other = results.trials.iter().find(|t| t.trial_id != trial).unwrap().trial_id.clone();
        for forger in [&mut a, &mut b] {
            let forged = complete_request(&format!("{other}-1"), &other, &good_result());
            assert_eq!(forger.client.complete(forged).await.unwrap_err().code(), Code::NotFound);
        }
        let results = b.client.results(pb::ResultsRequest {}).await.unwrap().into_inner();
        for record in &results.trials {
            assert!(record.result_json.is_empty() && record.epochs_json.is_empty(), "{record:?}");
            assert!(record.state == "pending" || record.state == "leased", "{record:?}");
        }

        // The holder's own calls go through, and its result counts.
        let epoch =
            pb::EpochReportRequest { lease: lease_ref(&lease, &trial), report_json: report(1).to_string() };
        a.client.report_epoch(epoch).await.unwrap();
        let chunks = vec![header_chunk(&lease, &trial, 1, 4), data_chunk(4)];
        a.client.upload_checkpoint(tokio_stream::iter(chunks)).await.unwrap();
        a.client.complete(complete_request(&lease, &trial, &good_result())).await.unwrap();
    });
    let records = records(&dir.path().join("state"));
    let done: Vec<_> = records.iter().filter(|r| r.state == "done").collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].result.as_ref().unwrap().top1, 1.0);
    assert!(records.iter().filter(|r| r.state != "done").all(|r| r.result.is_none()));
}

#[test]
fn each_kind_of_malformed_report_or_result_is_refused_naming_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = start_guarded(dir.path(), 1, &[]);
    let url = coordinator.url();
    runtime().block_on(async {
        let mut a = RawWorker::register(&url, "worker-a").await;
        let grant = a.lease().await;
        let (lease, trial) = (grant.lease_id.clone(), grant.trial_id.clone());
        type Damage = Box<dyn Fn(&mut serde_json::Value)>;
        let damaged: Vec<(&str, Damage)> = vec![
            ("result_json.top1", Box::new(|r| r["top1"] = 1.5.into())),
            ("result_json.top5", Box::new(|r| r["top5"] = (-0.1).into())),
            ("result_json.test_loss", Box::new(|r| r["test_loss"] = (-1.0).into())),
            (
                "result_json.per_class",
                Box::new(|r| {
                    r["per_class"].as_array_mut().unwrap().truncate(3);
                    r["confusion"] = serde_json::json!([[1, 0, 0], [0, 1, 0], [0, 0, 1]]);
                    r["macro_avg"]["support"] = 3.into();
                    r["weighted_avg"]["support"] = 3.into();
                }),
            ),
            (
                "result_json.confusion[0]",
                Box::new(|r| {
                    r["confusion"][0].as_array_mut().unwrap().pop();
                }),
            ),
            (
                "result_json.confusion",
                Box::new(|r| {
                    r["confusion"].as_array_mut().unwrap().pop();
                }),
            ),
            ("result_json.confusion[2]", Box::new(|r| r["confusion"][2][2] = 5.into())),
            ("result_json.weighted_avg.support", Box::new(|r| r["weighted_avg"]["support"] = 11.into())),
            (
                "result_json.history",
                Box::new(|r| {
                    r["history"].as_array_mut().unwrap().pop();
                }),
            ),
            ("result_json.history[1].epoch", Box::new(|r| r["history"][1] = report(3))),
            ("result_json.history[0].val_accuracy", Box::new(|r| r["history"][0]["val_accuracy"] = 7.into())),
            (
                "result_json.per_class[0].label",
                Box::new(|r| r["per_class"][0]["label"] = "x".repeat(300).into()),
            ),
            ("result_json", Box::new(|r| r["status"] = "exploded".into())),
        ];
        for (field, damage) in damaged {
            let mut result = good_result();
            damage(&mut result);
            let status = a.client.complete(complete_request(&lease, &trial, &result)).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
            assert!(status.message().starts_with(&format!("`{field}`")), "{field}: {}", status.message());
        }
        // Reports carried by a completion, and sent alone: epochs 1..=2 only.
        let mut carrying = complete_request(&lease, &trial, &good_result());
        carrying.epochs_json = vec![report(5).to_string()];
        let status = a.client.complete(carrying).await.unwrap_err();
        assert!(status.message().starts_with("`epochs_json[0].epoch`"), "{}", status.message());
        for epoch in [0, 3] {
            let request = pb::EpochReportRequest {
                lease: lease_ref(&lease, &trial),
                report_json: report(epoch).to_string(),
            };
            let status = a.client.report_epoch(request).await.unwrap_err();
            assert!(status.message().starts_with("`report_json.epoch`"), "{}", status.message());
        }
        let chunks = vec![header_chunk(&lease, &trial, 9, 1), data_chunk(1)];
        let status = a.client.upload_checkpoint(tokio_stream::iter(chunks)).await.unwrap_err();
        assert!(status.message().starts_with("`header.epoch`"), "{}", status.message());
        // Bounded strings and lists.
        let status = a.client.register(register_request(&"w".repeat(1000))).await.unwrap_err();
        assert!(status.message().starts_with("`worker_id`"), "{}", status.message());
        let mut odd_host = register_request("worker-c");
        odd_host.hostname = "host\u{1b}[31m".into();
        let status = a.client.register(odd_host).await.unwrap_err();
        assert!(status.message().starts_with("`hostname`"), "{}", status.message());
        let ask = pb::LeaseRequest {
            worker_id: "worker-a".into(),
            devices: vec![],
            held_leases: vec![],
            cached: (0..2000).map(|i| format!("d@{i}")).collect(),
            ..Default::default()
        };
        let status = a.client.lease(ask).await.unwrap_err();
        assert!(status.message().starts_with("`cached`"), "{}", status.message());
        let fail = pb::FailRequest {
            lease: lease_ref(&lease, &trial),
            error: "e".repeat(100_000),
            ..Default::default()
        };
        let status = a.client.fail(fail).await.unwrap_err();
        assert!(status.message().starts_with("`error`"), "{}", status.message());
        let traversal = pb::EpochReportRequest {
            lease: lease_ref(&lease, "../../../etc"),
            report_json: report(1).to_string(),
        };
        let status = a.client.report_epoch(traversal).await.unwrap_err();
        assert!(status.message().starts_with("`lease.trial_id`"), "{}", status.message());

        // Nothing was stored; the intact result is.
        let results = a.client.results(pb::ResultsRequest {}).await.unwrap().into_inner();
        assert!(results.trials[0].result_json.is_empty() && results.trials[0].epochs_json.is_empty());
        a.client.complete(complete_request(&lease, &trial, &good_result())).await.unwrap();
    });
    let records = records(&dir.path().join("state"));
    assert_eq!(records[0].state, "done");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .flat_map(|e| if e.path().is_dir() { files_under(&e.path()) } else { vec![e.path()] })
        .collect()
}

#[test]
fn an_oversized_upload_or_message_is_refused_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = start_guarded(dir.path(), 1, &["--max-checkpoint-mb", "1", "--max-message-mb", "1"]);
    let url = coordinator.url();
    let checkpoints = dir.path().join("state").join("checkpoints");
    runtime().block_on(async {
        let mut a = RawWorker::register(&url, "worker-a").await;
        let grant = a.lease().await;
        let (lease, trial) = (grant.lease_id.clone(), grant.trial_id.clone());
        // Announced too large: refused before a byte is written.
        let chunks = vec![header_chunk(&lease, &trial, 1, 2 << 20), data_chunk(1)];
        let status = a.client.upload_checkpoint(tokio_stream::iter(chunks)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("1048576 bytes"), "{}", status.message());
        // Not announced, and longer than the cap: cut off.
        let chunks = vec![header_chunk(&lease, &trial, 1, 0), data_chunk(600 << 10), data_chunk(600 << 10)];
        let status = a.client.upload_checkpoint(tokio_stream::iter(chunks)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("1048576 bytes"), "{}", status.message());
        assert_eq!(files_under(&checkpoints), Vec::<PathBuf>::new());
        // A message over --max-message-mb.
        let mut huge = complete_request(&lease, &trial, &good_result());
        huge.cached = vec!["x".repeat(2 << 20)];
        huge.worker_id = "worker-a".into();
        let status = a.client.complete(huge).await.unwrap_err();
        assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
        // Within the limits: stored.
        let chunks = vec![header_chunk(&lease, &trial, 1, 1000), data_chunk(1000)];
        a.client.upload_checkpoint(tokio_stream::iter(chunks)).await.unwrap();
    });
    let files = files_under(&checkpoints);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 1000);
    assert_eq!(records(&dir.path().join("state"))[0].result, None);
}

/// Starts the coordinator binary with `args` and no token in its environment.
fn coordinator_command(args: &[&str]) -> Command {
    let mut command = Command::new(binary("coordinator"));
    command.args(args).env_remove("SAL_TOKEN").env_remove("SAL_READ_TOKEN");
    command
}

#[test]
fn without_a_token_only_loopback_is_served_unless_insecure_and_an_exposed_token_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = noop_sweep(dir.path(), 1, 1, 0);
    let sweep = sweep.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let mut refused = Process::spawn(&mut coordinator_command(&[
        "--sweep",
        sweep,
        "--state-dir",
        state,
        "--listen",
        "0.0.0.0:0",
    ]));
    assert_eq!(refused.wait().code(), Some(2));
    let stderr = refused.stderr.all();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--token-file") && stderr.contains("SAL_TOKEN"), "{stderr}");

    let token = dir.path().join("open-token");
    std::fs::write(&token, TOKEN).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut exposed = Process::spawn(&mut coordinator_command(&[
        "--sweep",
        sweep,
        "--state-dir",
        state,
        "--token-file",
        token.to_str().unwrap(),
    ]));
    assert_eq!(exposed.wait().code(), Some(2));
    let stderr = exposed.stderr.all();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("chmod 600") && stderr.contains("open-token"), "{stderr}");

    let insecure = Process::spawn(&mut coordinator_command(&[
        "--sweep",
        sweep,
        "--state-dir",
        state,
        "--listen",
        "0.0.0.0:0",
        "--insecure",
        "--keep-serving",
    ]));
    insecure.stdout.wait_for("`listening on`", |l| l.starts_with("listening on "));
    insecure.stderr.wait_for("the --insecure warning", |l| l.contains("--insecure"));
}

/// A CA, and a certificate for `localhost` and 127.0.0.1 that it signed: (CA PEM, cert PEM, key PEM).
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

async fn tls_client(
    url: &str,
    ca: &str,
    identity: Option<(&str, &str)>,
) -> Result<Raw, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(url.to_string()).unwrap().tls_config(tls)?.connect().await?;
    Ok(CoordinatorClient::with_interceptor(channel, Credentials { token: Some(TOKEN.into()), session: None }))
}

#[test]
fn over_tls_a_worker_finishes_the_sweep_and_a_client_trusting_another_ca_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates();
    let (other_ca, _, _) = certificates();
    let write = |name: &str, text: &str| {
        let path = secret_file(dir.path(), name, text);
        path.display().to_string()
    };
    let (ca_file, cert_file, key_file) =
        (write("ca.pem", &ca), write("cert.pem", &cert), write("key.pem", &key));
    let token_file = write("worker-token", TOKEN);
    let mut coordinator = start_guarded(dir.path(), 2, &["--tls-cert", &cert_file, "--tls-key", &key_file]);
    let url = format!("https://localhost:{}", coordinator.addr.rsplit(':').next().unwrap());
    let runtime = runtime();
    runtime.block_on(async {
        let wrong = match tls_client(&url, &other_ca, None).await {
            Ok(mut client) => client.status(pb::StatusRequest {}).await.map(drop).map_err(|s| s.to_string()),
            Err(e) => Err(e.to_string()),
        };
        assert!(wrong.is_err(), "a client trusting another CA was answered");
        // Plain text to a TLS port gets nothing either.
        let plain = Endpoint::from_shared(coordinator.url()).unwrap().connect().await;
        if let Ok(channel) = plain {
            let mut client = CoordinatorClient::new(channel);
            assert!(client.status(pb::StatusRequest {}).await.is_err());
        }
        let mut client = tls_client(&url, &ca, None).await.unwrap();
        assert_eq!(client.status(pb::StatusRequest {}).await.unwrap().into_inner().pending, 2);
    });
    // The client command, with the read-only token from its environment.
    let output = Command::new(binary("coordinator"))
        .args(["status", "--coordinator", &url, "--tls-ca", &ca_file])
        .env_remove("SAL_TOKEN")
        .env("SAL_READ_TOKEN", READ_TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("e2e"), "{stdout}");
    // A real worker over TLS with its token file.
    let mut worker = start_worker_with(
        &url,
        &dir.path().join("w"),
        "worker-tls",
        &["--tls-ca", &ca_file, "--token-file", &token_file],
    );
    worker.wait_success("worker over TLS");
    let records = records(&dir.path().join("state"));
    assert!(records.iter().all(|r| r.state == "done"), "{records:?}");
    // The report from the running coordinator is the report from its state dir.
    let report = |source: &[&str]| {
        let output = Command::new(binary("coordinator"))
            .args(["report", "--format", "csv", "--by", "architecture,method"])
            .args(source)
            .env_remove("SAL_TOKEN")
            .env("SAL_READ_TOKEN", READ_TOKEN)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let state = dir.path().join("state");
    let remote = report(&["--coordinator", &url, "--tls-ca", &ca_file]);
    assert_eq!(remote, report(&["--state-dir", state.to_str().unwrap()]));
    assert!(remote.lines().count() >= 2, "{remote}");
    coordinator.process.terminate();
    coordinator.process.wait();
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate_of_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates();
    let (other_ca, other_cert, other_key) = certificates();
    let write = |name: &str, text: &str| secret_file(dir.path(), name, text).display().to_string();
    let (cert_file, key_file, ca_file) =
        (write("cert.pem", &cert), write("key.pem", &key), write("ca.pem", &ca));
    let coordinator = start_guarded(
        dir.path(),
        1,
        &["--tls-cert", &cert_file, "--tls-key", &key_file, "--tls-client-ca", &ca_file],
    );
    let url = format!("https://localhost:{}", coordinator.addr.rsplit(':').next().unwrap());
    runtime().block_on(async {
        let status = |client: Result<Raw, tonic::transport::Error>| async move {
            match client {
                Ok(mut client) => {
                    client.status(pb::StatusRequest {}).await.map(drop).map_err(|s| s.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        };
        assert!(status(tls_client(&url, &ca, None).await).await.is_err(), "no client certificate");
        let foreign = tls_client(&url, &ca, Some((&other_cert, &other_key))).await;
        assert!(status(foreign).await.is_err(), "a certificate of another CA");
        // The server's own certificate is signed by the client CA here: accepted.
        let accepted = status(tls_client(&url, &ca, Some((&cert, &key))).await).await;
        assert!(accepted.is_ok(), "{accepted:?}");
        drop(other_ca);
    });
}

#[test]
fn health_and_reflection_answer_without_a_token_and_health_turns_not_serving_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut coordinator = start_guarded(dir.path(), 1, &[]);
    let url = coordinator.url();
    runtime().block_on(async {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::HealthCheckRequest;
        let channel = Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
        let mut health = HealthClient::new(channel.clone());
        for service in ["", "sal_sweep.v1.Coordinator"] {
            let reply =
                health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
            assert_eq!(reply.status(), ServingStatus::Serving, "service {service:?}");
        }

        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let mut reflection = ServerReflectionClient::new(channel);
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies =
            reflection.server_reflection_info(tokio_stream::iter(vec![ask])).await.unwrap().into_inner();
        let reply = replies.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("not a service list: {reply:?}")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&"sal_sweep.v1.Coordinator".to_string()), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
        // The sweep itself stays closed to the same anonymous channel.
        let mut anonymous = raw(&url, None, None).await;
        assert_eq!(anonymous.status(pb::StatusRequest {}).await.unwrap_err().code(), Code::Unauthenticated);

        // A watcher (a Kubernetes probe, a load balancer) hears NOT_SERVING when the coordinator stops.
        let watch = HealthCheckRequest { service: "sal_sweep.v1.Coordinator".into() };
        let mut updates = health.watch(watch).await.unwrap().into_inner();
        let first = updates.message().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving);
        coordinator.process.terminate();
        let next = updates.message().await.unwrap().unwrap();
        assert_eq!(next.status(), ServingStatus::NotServing);
    });
    coordinator.process.wait();
}

/// A coordinator that hands out assignments whose ids and paths try to leave the worker's
/// folders, and records what the worker answers.
struct HostileCoordinator {
    assignments: std::sync::Mutex<Vec<pb::Assignment>>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<pb::FailRequest>>>,
    downloads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HostileCoordinator {
    fn done(&self) -> bool {
        self.assignments.lock().unwrap().is_empty()
            && self.failures.lock().unwrap().len() == HOSTILE_ASSIGNMENTS
    }
}

const HOSTILE_ASSIGNMENTS: usize = 4;

fn hostile_assignments() -> Vec<pb::Assignment> {
    let spec = |root: Option<&str>, pretrained: Option<&str>| {
        let mut dataset = serde_json::json!({"name": "d", "format": "image_folder"});
        if let Some(root) = root {
            dataset["root"] = root.into();
        }
        let mut spec = serde_json::json!({
            "architecture": "small_cnn", "optimizer": "sgd", "dataset": dataset, "resolution": 32,
            "method": "baseline", "epochs": 1, "batch_size": 2, "learning_rate": 0.1, "seed": 1
        });
        if let Some(weights) = pretrained {
            spec["pretrained"] = weights.into();
        }
        spec.to_string()
    };
    let assignment = |lease: &str, trial: &str, spec_json: String| pb::Assignment {
        lease_id: lease.into(),
        trial_id: trial.into(),
        spec_json,
        devices: 1,
        // A resume makes the worker download to a path named after the trial.
        resume_epoch: 1,
        attempt: 2,
        progress_timeout_s: 0,
        device_indices: vec![0],
        alone: false,
    };
    vec![
        assignment("0a", "../../escape", spec(Some("images"), None)),
        assignment("0b", "00bb", spec(Some("/etc"), None)),
        assignment("0c", "00cc", spec(Some("../outside"), None)),
        assignment("0d", "00dd", spec(Some("images"), Some("../../weights.ot"))),
    ]
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for HostileCoordinator {
    async fn register(
        &self,
        _: tonic::Request<pb::RegisterRequest>,
    ) -> Result<tonic::Response<pb::RegisterResponse>, Status> {
        Ok(tonic::Response::new(pb::RegisterResponse {
            protocol_version: proto::PROTOCOL_VERSION,
            heartbeat_ms: 300,
            sweep_name: "hostile".into(),
            session_id: "00112233445566778899aabbccddeeff".into(),
            trials_per_device: 1,
        }))
    }

    async fn lease(
        &self,
        _: tonic::Request<pb::LeaseRequest>,
    ) -> Result<tonic::Response<pb::LeaseResponse>, Status> {
        let assignment = self.assignments.lock().unwrap().pop();
        Ok(tonic::Response::new(pb::LeaseResponse {
            assignment,
            lost_leases: vec![],
            sweep_done: self.done(),
        }))
    }

    async fn heartbeat(
        &self,
        _: tonic::Request<pb::HeartbeatRequest>,
    ) -> Result<tonic::Response<pb::HeartbeatResponse>, Status> {
        Ok(tonic::Response::new(pb::HeartbeatResponse { lost_leases: vec![], sweep_done: self.done() }))
    }

    async fn report_epoch(
        &self,
        _: tonic::Request<pb::EpochReportRequest>,
    ) -> Result<tonic::Response<pb::Ack>, Status> {
        Ok(tonic::Response::new(pb::Ack {}))
    }

    async fn upload_checkpoint(
        &self,
        _: tonic::Request<tonic::Streaming<pb::CheckpointChunk>>,
    ) -> Result<tonic::Response<pb::Ack>, Status> {
        Ok(tonic::Response::new(pb::Ack {}))
    }

    type DownloadCheckpointStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<pb::CheckpointChunk, Status>>>;

    async fn download_checkpoint(
        &self,
        _: tonic::Request<pb::CheckpointRequest>,
    ) -> Result<tonic::Response<Self::DownloadCheckpointStream>, Status> {
        self.downloads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(Status::not_found("no checkpoint"))
    }

    async fn complete(
        &self,
        _: tonic::Request<pb::CompleteRequest>,
    ) -> Result<tonic::Response<pb::CompleteResponse>, Status> {
        Ok(tonic::Response::new(pb::CompleteResponse::default()))
    }

    async fn fail(
        &self,
        request: tonic::Request<pb::FailRequest>,
    ) -> Result<tonic::Response<pb::Ack>, Status> {
        self.failures.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(pb::Ack {}))
    }

    async fn release(
        &self,
        _: tonic::Request<pb::ReleaseRequest>,
    ) -> Result<tonic::Response<pb::Ack>, Status> {
        Ok(tonic::Response::new(pb::Ack {}))
    }

    async fn status(
        &self,
        _: tonic::Request<pb::StatusRequest>,
    ) -> Result<tonic::Response<pb::StatusResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn results(
        &self,
        _: tonic::Request<pb::ResultsRequest>,
    ) -> Result<tonic::Response<pb::ResultsResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }
}

#[test]
fn a_worker_refuses_ids_and_paths_that_leave_its_folders() {
    let dir = tempfile::tempdir().unwrap();
    let data_root = dir.path().join("data");
    std::fs::create_dir_all(data_root.join("images")).unwrap();
    let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let downloads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hostile = HostileCoordinator {
        assignments: std::sync::Mutex::new(hostile_assignments()),
        failures: failures.clone(),
        downloads: downloads.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(pb::coordinator_server::CoordinatorServer::new(hostile))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let work_dir = dir.path().join("work");
    let mut worker =
        start_worker_with(&url, &work_dir, "worker-x", &["--data-root", data_root.to_str().unwrap()]);
    worker.wait_success("worker");
    let failures = failures.lock().unwrap();
    let by_trial = |trial: &str| {
        let failure = failures.iter().find(|f| f.lease.as_ref().unwrap().trial_id == trial).unwrap();
        assert!(!failure.retryable, "{failure:?}");
        failure.error.clone()
    };
    let escape = by_trial("../../escape");
    assert!(escape.starts_with("`trial_id`"), "{escape}");
    for (trial, field) in [("00bb", "`dataset.root`"), ("00cc", "`dataset.root`"), ("00dd", "`pretrained`")] {
        let error = by_trial(trial);
        assert!(error.starts_with(field) && error.contains("--data-root"), "{trial}: {error}");
    }
    // Nothing was downloaded or written for any of them.
    assert_eq!(downloads.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!work_dir.join("downloads").exists());
    let escaped: Vec<PathBuf> =
        files_under(dir.path()).into_iter().filter(|p| p.to_string_lossy().contains("escape")).collect();
    assert!(escaped.is_empty(), "{escaped:?}");
    drop(runtime);
}

#[test]
fn a_worker_with_a_wrong_token_exits_saying_so_and_one_with_sal_token_finishes_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let mut coordinator = start_guarded(dir.path(), 2, &[]);
    let url = coordinator.url();
    let wrong = secret_file(dir.path(), "wrong-token", "not-the-token");
    let mut refused = start_worker_with(
        &url,
        &dir.path().join("w1"),
        "worker-wrong",
        &["--token-file", wrong.to_str().unwrap()],
    );
    let status = refused.wait();
    assert!(!status.success());
    let stderr = refused.stderr.all();
    let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(error.contains("invalid token"), "{error}");

    let mut command = Command::new(binary("worker"));
    command
        .args(["--coordinator", &url, "--worker-id", "worker-env"])
        .arg("--work-dir")
        .arg(dir.path().join("w2"))
        .env("SAL_TOKEN", TOKEN);
    let mut worker = Process::spawn(&mut command);
    worker.wait_success("worker with SAL_TOKEN");
    let records = records(&dir.path().join("state"));
    assert!(records.iter().all(|r| r.state == "done"), "{records:?}");
    coordinator.process.terminate();
    coordinator.process.wait();
}
