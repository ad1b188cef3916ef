//! `sphere serve`: open the log, start the projections, serve HTTPS until SIGINT/SIGTERM.

use std::time::Duration;

use clap::Args;

use crate::app::App;
use crate::config::Config;
use crate::http;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT (also SPHERE_LISTEN; default 127.0.0.1:8443).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// On an empty data directory, load a demo population, apps and users first.
    #[arg(long)]
    pub demo: bool,
}

pub async fn run(config: Config, args: &ServeArgs) -> anyhow::Result<()> {
    if !config.tls.enabled {
        tracing::warn!(
            "TLS is off: only run this way behind a TLS-terminating proxy; SMART and (g)(10) require HTTPS"
        );
    }
    let tls = if config.tls.enabled {
        Some(http::tls::server_config(&config)?)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(config.listen_addr())
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr()?;
    // With port 0 the OS picks the port: links, Location headers and the issuer must name it.
    let mut config = config;
    if config.listen_addr().port() == 0 {
        config.listen = local.to_string();
    }
    let app = App::start(config.clone()).await?;
    let demo = if args.demo {
        println!("--demo: preparing the demo population, apps and users...");
        let demo = crate::demo::prepare(&app).await?;
        if demo.is_none() {
            println!(
                "--demo: {} already holds data that is not the demo; nothing added",
                config.data_dir.display()
            );
        }
        demo
    } else {
        None
    };
    let base = config.base_url();
    println!(
        "Sphere EHR {} listening on {local}",
        env!("CARGO_PKG_VERSION")
    );
    println!("  base URL:  {base}");
    println!("  FHIR base: {}", config.fhir_base_url());
    println!("  data:      {}", config.data_dir.display());
    let insecure = if config.tls.enabled && config.tls.cert.is_empty() {
        " -k"
    } else {
        ""
    };
    println!(
        "  try:       curl{insecure} {}/metadata",
        config.fhir_base_url()
    );
    if let Some(demo) = &demo {
        println!(
            "{}",
            crate::demo::instructions(demo, &base, &config.fhir_base_url(), insecure)
        );
    }
    let auditor = if config.audit.enabled {
        Some(app.audit.clone())
    } else {
        tracing::warn!(
            "[audit] enabled = false: accesses are NOT recorded (benchmark baseline only)"
        );
        None
    };
    let grace = Duration::from_millis(config.http.shutdown_grace_ms);
    http::server::serve(
        listener,
        tls,
        http::routes(app.clone()),
        auditor,
        shutdown_signal(),
        grace,
    )
    .await;
    tracing::info!("stopped accepting; closing the event log");
    app.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown requested");
}
