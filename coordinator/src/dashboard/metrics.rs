//! `/metrics` in Prometheus' text format (the `prometheus-client` crate), on the dashboard's
//! address and behind its token.
//!
//! The series budget: no label per trial. `sal_trials{state}` has 6 series, `sal_epochs_total`
//! and `sal_leases` one each; the per-worker gauges (`sal_worker_up`, `sal_worker_cpu_percent`,
//! `sal_worker_rss_mb`) one series per worker and the per-device gauges
//! (`sal_device_utilisation_percent`, `sal_device_memory_used_mb`) one per device of a worker: the
//! cluster's size, not the sweep's; `sal_rpc_seconds` one histogram per gRPC method called (13
//! buckets, a sum and a count; the service's 11 methods, and health checks'). A 13,440-trial
//! sweep on 8 workers of 8 GPUs has about 8 + 24 + 128 + 165 = 325 series (tests/tests/dashboard.rs
//! counts them).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

use super::Shared;
use crate::store::WorkerStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabel {
    worker: String,
    device: String,
}

/// What the coordinator measures as it serves: how long each gRPC call takes. Shared by the gRPC
/// server (which observes) and the dashboard (which exposes).
#[derive(Clone, Debug)]
pub struct RpcTimes(pub Family<MethodLabel, Histogram>);

impl Default for RpcTimes {
    fn default() -> Self {
        // 0.25 ms to about 1 s, doubling.
        Self(Family::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_25, 2.0, 12))
        }))
    }
}

impl RpcTimes {
    pub fn observe(&self, method: &str, seconds: f64) {
        self.0.get_or_create(&MethodLabel { method: method.to_string() }).observe(seconds);
    }
}

/// The dashboard's side of the metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    pub rpc: RpcTimes,
}

/// A worker as the page and the metrics show it.
pub fn worker_json(worker: &WorkerStatus) -> Value {
    json!({
        "worker_id": worker.worker_id,
        "hostname": worker.hostname,
        "devices": worker.devices,
        "trials": worker.trials.len(),
        "idle_ms": worker.idle_ms,
        "condition": worker.condition,
        "usage": worker.usage.as_ref().map(|u| json!({
            "cpu_percent": u.cpu_percent,
            "rss_mb": u.rss_mb,
            "devices": u.devices.iter().map(|d| json!({
                "utilisation_percent": d.utilisation_percent,
                "memory_used_mb": d.memory_used_mb,
                "memory_total_mb": d.memory_total_mb,
            })).collect::<Vec<_>>(),
        })),
    })
}

pub async fn scrape(State(shared): State<Arc<Shared>>) -> Response {
    let mut registry = Registry::default();
    let trials = Family::<StateLabel, Gauge>::default();
    registry.register("sal_trials", "Trials of the sweep, by state", trials.clone());
    let epochs = Counter::<u64>::default();
    registry.register(
        "sal_epochs",
        "Epoch reports stored (a rate of it is epochs per second)",
        epochs.clone(),
    );
    let counted = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            let model = shared.fresh().map_err(|e| e.to_string())?;
            let mut by_state = std::collections::HashMap::<String, i64>::new();
            for trial in &model.trials {
                *by_state.entry(trial.state.clone()).or_default() += 1;
            }
            Ok::<_, String>((by_state, model.epochs_stored().map_err(|e| e.to_string())?))
        })
        .await
    };
    match counted {
        Ok(Ok((by_state, stored))) => {
            for state in ["pending", "leased", "running", "done", "diverged", "failed"] {
                trials
                    .get_or_create(&StateLabel { state: state.into() })
                    .set(by_state.get(state).copied().unwrap_or(0));
            }
            epochs.inc_by(stored);
        }
        Ok(Err(e)) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
    if let Some(store) = &shared.live {
        let leases = Gauge::<i64>::default();
        registry.register("sal_leases", "Leases held by workers", leases.clone());
        let up = Family::<WorkerLabel, Gauge>::default();
        registry.register("sal_worker_up", "1 for a worker heard from within its lease time", up.clone());
        let cpu = Family::<WorkerLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register("sal_worker_cpu_percent", "A worker's node CPU use", cpu.clone());
        let rss = Family::<WorkerLabel, Gauge>::default();
        registry.register(
            "sal_worker_rss_mb",
            "Resident memory of a worker's agent and trial processes",
            rss.clone(),
        );
        let util = Family::<DeviceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register("sal_device_utilisation_percent", "A GPU's utilisation (NVML)", util.clone());
        let memory = Family::<DeviceLabel, Gauge>::default();
        registry.register("sal_device_memory_used_mb", "A GPU's memory in use (NVML)", memory.clone());
        if let Ok(status) = store.status().await {
            leases.set(status.workers.iter().map(|w| w.trials.len() as i64).sum());
            for worker in &status.workers {
                let label = WorkerLabel { worker: worker.worker_id.clone() };
                up.get_or_create(&label).set(i64::from(worker.idle_ms < 30_000));
                if let Some(usage) = &worker.usage {
                    cpu.get_or_create(&label).set(f64::from(usage.cpu_percent));
                    rss.get_or_create(&label).set(i64::try_from(usage.rss_mb).unwrap_or(i64::MAX));
                    for (i, device) in usage.devices.iter().enumerate() {
                        let label = DeviceLabel { worker: worker.worker_id.clone(), device: i.to_string() };
                        util.get_or_create(&label).set(f64::from(device.utilisation_percent));
                        memory
                            .get_or_create(&label)
                            .set(i64::try_from(device.memory_used_mb).unwrap_or(i64::MAX));
                    }
                }
            }
        }
        registry.register(
            "sal_rpc_seconds",
            "How long the coordinator took to answer a gRPC call",
            shared.metrics.rpc.0.clone(),
        );
    }
    let mut text = String::new();
    if let Err(e) = encode(&mut text, &registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
        .into_response()
}
