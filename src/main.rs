use clap::Parser;
use sphere::cli::{self, Cli, Command};

fn main() -> std::process::ExitCode {
    // rustls sees both ring and aws-lc-rs in the dependency graph; pick one before any TLS.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let listen = match &cli.command {
        Command::Serve(args) => args.listen.clone(),
        _ => None,
    };
    let config = match cli.config(listen) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{problems}");
            return std::process::ExitCode::from(2);
        }
    };
    cli::init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match &cli.command {
            Command::Serve(args) => cli::serve::run(config, args).await,
            Command::Rebuild(args) => cli::rebuild::run(config, args).await,
            Command::Log(args) => cli::log::run(config, args).await,
            Command::Audit(args) => cli::audit::run(config, args).await,
            Command::Migrate(args) => cli::migrate::run(args).await,
            Command::Backup(args) => cli::backup::run_backup(&config, args),
            Command::Restore(args) => cli::backup::run_restore(&config, args),
            Command::Generate(args) => cli::generate::run(args),
            Command::Import(args) => cli::import::run(config, args).await,
            Command::Apps(args) => sphere::smart::cli::run_apps(config, args).await,
            Command::Keys(args) => sphere::smart::cli::run_keys(config, args).await,
            Command::Users(args) => sphere::smart::cli::run_users(config, args).await,
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
