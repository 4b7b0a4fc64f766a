//! Serving a sweep to its end: the store, the gRPC server, lease expiry, and in local mode the
//! worker processes (over loopback gRPC like any other worker), with a progress bar.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use crate::export::tensorboard;
use crate::server::auth::{self, Tokens};
use crate::server::local_workers::{LocalError, LocalWorkerProcesses, LocalWorkers};
use crate::server::service::{self, ServerSettings};
use crate::store::state_lock::{StateLock, StateLockError};
use crate::store::{Full, Progress, Store, StoreError};
use crate::sweep::spec::Sweep;
use crate::tls::{ServerTlsFiles, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another coordinator serves this state dir (or its lock file cannot be opened).
    #[error(transparent)]
    StateLock(#[from] StateLockError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("gRPC server: {0}")]
    Server(#[from] tonic::transport::Error),
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(transparent)]
    Dashboard(#[from] crate::dashboard::DashboardError),
    #[error("every local worker has exited with trials left; their logs are in {}", dir.display())]
    WorkersGone { dir: PathBuf },
    /// The state dir stayed full for longer than `--full-disk-wait`.
    #[error(
        "stopped after {seconds} s without room: {}; nothing committed was lost, and the workers keep \
         (or kept in their orphans folder) what they could not send: free space and run the same command again",
        full.describe()
    )]
    StateDirFull { full: Box<Full>, seconds: u64 },
}

/// How long the server waits for open connections when it stops.
const SERVER_DRAIN: Duration = Duration::from_secs(5);

/// How long an interrupted coordinator keeps serving while workers still hold leases: workers
/// signalled with it (`scancel` signals every task of the job at once) hand their leases back as
/// they stop, so that the next run finds those trials pending instead of leased until expiry.
const HANDBACK_GRACE: Duration = Duration::from_secs(5);

/// Credentials, transport and limits of the server.
#[derive(Clone, Default)]
pub struct Security {
    /// The worker token; `None`: no authentication (loopback, or `--insecure`). Local mode makes
    /// a random one when none is given.
    pub token: Option<String>,
    /// A token for Status and Results only.
    pub read_token: Option<String>,
    pub tls: ServerTlsFiles,
    pub max_message_bytes: Option<usize>,
    pub max_checkpoint_bytes: Option<u64>,
}

impl std::fmt::Debug for Security {
    /// Never prints a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("read_token", &self.read_token.as_ref().map(|_| "<set>"))
            .field("tls", &self.tls)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_checkpoint_bytes", &self.max_checkpoint_bytes)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub lease_ttl: Duration,
    pub retry_failed: bool,
    /// Also write the bound address here (for scripts; stdout gets it too).
    pub addr_file: Option<PathBuf>,
    pub local: Option<LocalWorkers>,
    /// Keep serving after the sweep is done (until a signal).
    pub keep_serving: bool,
    pub progress_bar: bool,
    pub security: Security,
    /// How long a full state dir is waited out before the coordinator stops; `None`: for ever.
    pub full_disk_wait: Option<Duration>,
    /// Serve the dashboard on this address (port 0: any free port).
    pub dashboard: Option<SocketAddr>,
    /// Also write the sweep's TensorBoard logdir here as its epochs arrive
    /// ([`crate::export::tensorboard::follow`]).
    pub tensorboard: Option<PathBuf>,
}

/// Serves `sweep` until every trial has ended (or `shutdown` resolves); answers the final counts.
pub async fn serve_sweep(
    sweep: &Sweep,
    options: &ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Progress, RunnerError> {
    // Held until this function returns: the store, its checkpoints and the lease table are ours.
    let _lock = StateLock::acquire(&options.state_dir)?;
    let (store, summary) = Store::open(&options.state_dir, sweep, options.lease_ttl, options.retry_failed)?;
    tracing::info!(
        sweep = %sweep.name,
        trials = summary.trials,
        new = summary.new,
        finished = summary.already_finished,
        leases_expired = summary.leases_expired,
        state_dir = %options.state_dir.display(),
        "sweep loaded"
    );
    let tls = options.security.tls.load()?;
    // Local workers get a token of their own: nothing else on this machine can act as a worker.
    let token = match (&options.security.token, &options.local) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(_)) => Some(auth::random_token()),
        (None, None) => None,
    };
    let settings = ServerSettings {
        tokens: token.as_deref().map(|t| Tokens::new(t, options.security.read_token.as_deref())),
        tls,
        max_message_bytes: options.security.max_message_bytes,
        max_checkpoint_bytes: options.security.max_checkpoint_bytes,
        ..ServerSettings::for_sweep(sweep)
    };
    let (listener, addr) = service::bind(options.listen)
        .await
        .map_err(|source| RunnerError::Bind { addr: options.listen, source })?;
    // Readiness: scripts and tests wait for this line (or the address file) before connecting.
    {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "listening on {addr}");
    }
    if let Some(path) = &options.addr_file {
        let partial = path.with_extension("partial");
        std::fs::write(&partial, addr.to_string())
            .map_err(|source| RunnerError::Io { path: partial.clone(), source })?;
        std::fs::rename(&partial, path).map_err(|source| RunnerError::Io { path: path.clone(), source })?;
    }
    let rpc_times = crate::dashboard::metrics::RpcTimes::default();
    let tensorboard = options.tensorboard.as_ref().map(|dir| {
        let trials = sweep.trials.iter().map(|t| t.id.clone()).collect();
        tensorboard::Following::start(options.state_dir.clone(), dir.clone(), trials)
    });
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service::serve(
        store.clone(),
        listener,
        options.lease_ttl,
        settings,
        rpc_times.clone(),
        async {
            let _ = server_stopped.await;
        },
    ));
    // The dashboard reads the store beside the server; stopped when this function returns.
    let dashboard = match options.dashboard {
        Some(listen) => {
            let dashboard = crate::dashboard::start(
                crate::dashboard::DashboardOptions {
                    state_dir: options.state_dir.clone(),
                    sweep: Some(sweep.name.clone()),
                    listen,
                    token: options.security.token.clone(),
                    tls: options.security.tls.clone(),
                    rpc: rpc_times,
                },
                Some(store.clone()),
            )
            .await?;
            {
                use std::io::Write as _;
                // Readiness, like `listening on`: scripts and tests wait for this line.
                let _ = writeln!(std::io::stdout(), "dashboard on {}", dashboard.url);
            }
            Some(dashboard)
        }
        None => None,
    };

    let local_dir = options.state_dir.join("local-workers");
    let workers = match &options.local {
        Some(local) => {
            Some(LocalWorkerProcesses::start(local, &format!("http://{addr}"), &local_dir, token.as_deref())?)
        }
        None => None,
    };
    // Resolves when every local worker has exited (never without local workers).
    let (workers_gone_tx, mut workers_gone) = watch::channel(false);
    let workers_done = workers.map(|workers| {
        let stopper = workers.stopper();
        let waiter = tokio::spawn(async move {
            let result = workers.wait().await;
            let _ = workers_gone_tx.send(true);
            result
        });
        (stopper, waiter)
    });

    let bar = options
        .progress_bar
        .then(|| progress_bar(store.progress(), store.health(), dashboard.as_ref().map(|d| d.url.clone())));
    let mut progress = store.progress();
    tokio::pin!(shutdown);
    let interrupted = tokio::select! {
        _ = progress.wait_for(|p| p.is_complete() && !options.keep_serving) => false,
        () = &mut shutdown => true,
        _ = workers_gone.wait_for(|gone| *gone), if workers_done.is_some() => false,
        full = full_for(store.health(), options.full_disk_wait.unwrap_or_default()), if options.full_disk_wait.is_some() => {
            if let Some(workers) = &workers_done {
                workers.0.terminate();
            }
            let seconds = options.full_disk_wait.unwrap_or_default().as_secs();
            return Err(RunnerError::StateDirFull { full: Box::new(full), seconds });
        }
    };
    if !interrupted && !store.progress().borrow().is_complete() {
        // Every local worker exited while trials were left: nobody will run them.
        return Err(RunnerError::WorkersGone { dir: local_dir });
    }
    if interrupted {
        tracing::info!("interrupted: stopping");
    }
    if interrupted && options.local.is_none() {
        let deadline = tokio::time::Instant::now() + HANDBACK_GRACE.min(options.lease_ttl);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while tokio::time::Instant::now() < deadline && store.live_leases().await? > 0 {
            tick.tick().await;
        }
        let left = store.live_leases().await?;
        if left > 0 {
            tracing::info!(
                leases = left,
                "stopping with leases held; they expire and their trials resume next run"
            );
        }
    }
    let mut worker_error = None;
    if let Some((workers, waiter)) = workers_done {
        if interrupted {
            workers.terminate();
        }
        match waiter.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => worker_error = Some(RunnerError::Local(error)),
            Err(e) => tracing::error!("waiting for the local workers failed: {e}"),
        }
    }
    if !interrupted && options.local.is_none() {
        // Let remote workers hear that the sweep is done, so that they exit too.
        let deadline = tokio::time::Instant::now() + options.lease_ttl;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while tokio::time::Instant::now() < deadline && !store.workers_told_done().await? {
            tick.tick().await;
        }
    }
    let _ = stop_server.send(());
    // Calls in flight get a few seconds to finish; a client that keeps an idle connection open
    // must not keep the coordinator from exiting.
    let mut server = server;
    match tokio::time::timeout(SERVER_DRAIN, &mut server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => tracing::error!("gRPC server task: {e}"),
        Err(_) => {
            tracing::warn!(
                "connections still open {} s after shutdown: closing them",
                SERVER_DRAIN.as_secs()
            );
            server.abort();
        }
    }
    if let Some(following) = tensorboard {
        // Every result is committed: it reads the store once more, then closes its files.
        following.stop().await;
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    let last = *store.progress().borrow();
    match worker_error {
        Some(error) => Err(error),
        None => Ok(last),
    }
}

/// Resolves once the state dir has been full for `wait` without a break, with what is full.
async fn full_for(mut health: watch::Receiver<Option<Full>>, wait: Duration) -> Full {
    loop {
        if health.wait_for(Option::is_some).await.is_err() {
            return std::future::pending().await;
        }
        let emptied = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            _ = health.wait_for(Option::is_none) => true,
        };
        if !emptied {
            if let Some(full) = health.borrow().clone() {
                return full;
            }
        }
    }
}

fn progress_bar(
    mut progress: watch::Receiver<Progress>,
    mut health: watch::Receiver<Option<Full>>,
    dashboard: Option<String>,
) -> ProgressBar {
    let initial = *progress.borrow();
    let bar = ProgressBar::new(u64::from(initial.total()));
    // The dashboard's address beside the bar, for the whole run: one click to watch it.
    let template = match &dashboard {
        Some(url) => {
            format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} trials {{msg}} (eta {{eta}}) {url}")
        }
        None => "{elapsed_precise} [{bar:40}] {pos}/{len} trials {msg} (eta {eta})".to_string(),
    };
    let style = ProgressStyle::with_template(&template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let shown = bar.clone();
    tokio::spawn(async move {
        loop {
            let p = *progress.borrow_and_update();
            shown.set_position(u64::from(p.finished()));
            let counts =
                format!("running {}, pending {}, failed {}", p.running + p.leased, p.pending, p.failed);
            // A full state dir stops the sweep: the line says so for as long as it lasts.
            match health.borrow_and_update().as_ref() {
                Some(full) => shown.set_message(format!(
                    "{counts}; STATE DIR FULL ({} free), waiting for room",
                    common::space::human(full.free_bytes)
                )),
                None => shown.set_message(counts),
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { return },
                changed = health.changed() => if changed.is_err() { return },
            }
        }
    });
    bar
}
