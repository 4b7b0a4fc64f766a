//! Dispatch throughput: how many trials per second the coordinator hands out and takes back,
//! end to end over loopback gRPC, when trials cost nothing.
//!
//! 1344 no-op trials (one epoch each: lease, epoch report, checkpoint upload, completion, all
//! committed to SQLite) and 64 workers (in this process, each its own gRPC client):
//!
//!   cargo run --release -p coordinator --example dispatch_bench [-- TRIALS WORKERS]

use std::time::{Duration, Instant};

use coordinator::spec::{self, LoadOptions};
use coordinator::store::Store;
use worker::client::ClientConfig;
use worker::Devices;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let trials: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1344);
    let workers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let dir = tempfile::tempdir()?;
    let seeds: Vec<String> = (1..=trials).map(|s| s.to_string()).collect();
    let text = format!(
        "name: bench\nepochs: 1\nbatch_size: 1\nlearning_rate: 0.1\nseeds: [{}]\nmethods: [baseline]\n\
         architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\ndatasets:\n  synthetic:\n    format: synthetic\n",
        seeds.join(",")
    );
    let sweep = spec::parse(std::path::Path::new("bench.yaml"), &text, &LoadOptions::default())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let lease_ttl = Duration::from_secs(30);
        let (store, _) = Store::open(&dir.path().join("state"), &sweep, lease_ttl, false)?;
        let (listener, addr) = coordinator::service::bind("127.0.0.1:0".parse()?).await?;
        let server = tokio::spawn(coordinator::service::serve(
            store.clone(),
            listener,
            lease_ttl,
            std::future::pending(),
        ));
        let start = Instant::now();
        let mut handles = Vec::new();
        for index in 0..workers {
            let mut config = ClientConfig::new(
                format!("http://{addr}"),
                Devices::Cpu { ranks: 1 },
                dir.path().join(format!("worker-{index}")),
            );
            config.worker_id = format!("bench-{index}");
            handles.push(tokio::spawn(worker::client::run(config, std::future::pending())));
        }
        let mut progress = store.progress();
        progress.wait_for(|p| p.is_complete()).await?;
        let elapsed = start.elapsed();
        let done = progress.borrow().done;
        println!(
            "{done} trials, {workers} workers: {:.3} s, {:.0} trials/s end to end",
            elapsed.as_secs_f64(),
            f64::from(done) / elapsed.as_secs_f64()
        );
        for handle in handles {
            handle.await??;
        }
        server.abort();
        anyhow::Ok(())
    })
}
