//! Serving the dashboard's router: plain HTTP, or HTTPS with the sweep's certificate (rustls;
//! each connection's handshake on its own task, so that a slow client holds up nobody).

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

pub async fn serve(listener: TcpListener, router: Router, tls: Option<Arc<ServerConfig>>) {
    let Some(tls) = tls else {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("dashboard: {e}");
        }
        return;
    };
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("dashboard: accept: {e}");
                continue;
            }
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(e) => return tracing::debug!(%peer, "dashboard: TLS handshake: {e}"),
            };
            let service = TowerToHyperService::new(router);
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "dashboard: connection: {e}");
            }
        });
    }
}
