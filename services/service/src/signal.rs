//! Shutdown signals: SIGTERM (Kubernetes stopping the pod) or Ctrl-C, whichever comes first.

/// Resolves on SIGTERM or Ctrl-C. Without a SIGTERM handler (it cannot be installed) only
/// Ctrl-C stops the process, and that is logged.
pub async fn terminated() {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
