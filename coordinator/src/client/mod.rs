//! A client of a running coordinator, for `coordinator status` and `coordinator report` with
//! `--coordinator URL`: carries the token (`--token-file`, `SAL_TOKEN` or `SAL_READ_TOKEN`) and
//! trusts `--tls-ca`.

use std::path::PathBuf;
use std::time::Duration;

use proto::pb::coordinator_client::CoordinatorClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use crate::store::{StoredEpoch, TrialRecord};
use crate::tls;

/// How to reach a coordinator.
#[derive(Clone, Default)]
pub struct Remote {
    pub url: String,
    pub token: Option<String>,
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and key, for a coordinator that wants mutual TLS.
    pub tls_identity: Option<(PathBuf, PathBuf)>,
}

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Client = CoordinatorClient<InterceptedService<Channel, Bearer>>;

impl Remote {
    /// Connects now: an unreachable coordinator is an error here, not on the first call.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        use anyhow::Context;
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .with_context(|| format!("bad coordinator address {}", self.url))?
            .connect_timeout(Duration::from_secs(5));
        if self.tls_ca.is_some() || self.tls_identity.is_some() {
            let identity = self.tls_identity.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path()));
            endpoint = endpoint.tls_config(tls::client_config(self.tls_ca.as_deref(), identity)?)?;
        }
        let bearer = self
            .token
            .as_ref()
            .map(|token| format!("Bearer {token}").parse())
            .transpose()
            .map_err(|_| anyhow::anyhow!("the token has characters a header cannot carry"))?;
        let channel = endpoint.connect().await.with_context(|| format!("connecting to {}", self.url))?;
        // Results of a large sweep exceed the default 4 MiB.
        Ok(CoordinatorClient::with_interceptor(channel, Bearer(bearer)).max_decoding_message_size(1 << 30))
    }
}

impl Remote {
    /// The sweep's name and every trial's record, as `store::read_records` reads them from a state
    /// dir (the attempt and worker of each epoch report are not sent: 0 and empty).
    pub async fn records(&self) -> anyhow::Result<(String, Vec<TrialRecord>)> {
        use anyhow::Context;
        let mut client = self.connect().await?;
        let asking = || format!("asking {}", self.url);
        let name =
            client.status(proto::pb::StatusRequest {}).await.with_context(asking)?.into_inner().sweep_name;
        let trials =
            client.results(proto::pb::ResultsRequest {}).await.with_context(asking)?.into_inner().trials;
        let records = trials
            .into_iter()
            .map(|trial| {
                let what = |part: &str| format!("{} of trial {}", part, trial.trial_id);
                let epochs = trial
                    .epochs_json
                    .iter()
                    .map(|json| {
                        let report = serde_json::from_str(json).with_context(|| what("an epoch report"))?;
                        anyhow::Ok(StoredEpoch { attempt: 0, worker_id: String::new(), report })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let result = (!trial.result_json.is_empty())
                    .then(|| serde_json::from_str(&trial.result_json))
                    .transpose()
                    .with_context(|| what("the result"))?;
                anyhow::Ok(TrialRecord {
                    spec: serde_json::from_str(&trial.spec_json).with_context(|| what("the definition"))?,
                    id: trial.trial_id,
                    state: trial.state,
                    attempts: trial.attempts,
                    last_error: (!trial.last_error.is_empty()).then_some(trial.last_error),
                    result,
                    epochs,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((name, records))
    }
}
