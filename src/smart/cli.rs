//! `sphere apps ...` and `sphere users ...`: operator commands that append to the event log
//! directly, so they work while the server runs (it sees the events within a second).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use sphere_domain::smart::events::{self as ev, AppSecretRotated};
use sphere_projections::token_status::TokenStatus;

use crate::app::open_log;
use crate::config::Config;
use crate::eventlog::{EventLog, ExpectedRevision, NewEvent};
use crate::smart::random_token;
use crate::smart::register::{register, response_body, ClientMetadata};
use crate::smart::users::{add_user, hash_secret};

#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(subcommand)]
    pub command: AppsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Register an app (approved at once); prints the client id and, once, the secret.
    Register(RegisterArgs),
    /// List registered apps and their status.
    List,
    /// Approve an app registered through /auth/register.
    Approve { client_id: String },
    /// Suspend an app: it can no longer get tokens.
    Suspend { client_id: String },
    /// Issue a new client secret (printed once); the old one stops working.
    RotateSecret { client_id: String },
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[arg(long)]
    pub name: String,
    /// Repeat for several redirect URIs (matched exactly).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// Space-separated scopes the app may ask for.
    #[arg(long)]
    pub scope: String,
    /// none (public), client_secret_basic, client_secret_post or private_key_jwt.
    #[arg(long, default_value = "client_secret_basic")]
    pub auth_method: String,
    /// Repeat: authorization_code, refresh_token, client_credentials.
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
    /// A JWKS file with the app's public keys (private_key_jwt).
    #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
    pub jwks: Option<PathBuf>,
    /// An https URL where the app publishes its JWKS (private_key_jwt), fetched and cached.
    #[arg(long, value_name = "URL")]
    pub jwks_uri: Option<String>,
    /// The app's EHR launch URL.
    #[arg(long)]
    pub launch_uri: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new RSA and EC P-384 signing pair with fresh kids and sign with it from now
    /// on; the old public keys stay in the JWKS until every token they signed has expired.
    /// Works while the server runs (it re-reads the key ring within half a second).
    Rotate,
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user linked to a Patient or a Practitioner.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        #[arg(long, conflicts_with = "practitioner")]
        patient: Option<String>,
        #[arg(long)]
        practitioner: Option<String>,
    },
}

async fn apps_view(log: &dyn EventLog) -> anyhow::Result<TokenStatus> {
    let mut status = TokenStatus::default();
    let mut after = None;
    loop {
        let page = log.read_category(ev::APP, after, 1000).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        for event in &page {
            status.apply(event)?;
        }
        after = Some(last);
    }
    Ok(status)
}

async fn require_app(log: &dyn EventLog, client_id: &str) -> anyhow::Result<()> {
    if log
        .stream_revision(&ev::app_stream(client_id))
        .await?
        .is_none()
    {
        anyhow::bail!("no app with client id {client_id}");
    }
    Ok(())
}

pub async fn run_apps(config: Config, args: &AppsArgs) -> anyhow::Result<()> {
    let log = open_log(&config).await?;
    match &args.command {
        AppsCommand::Register(a) => {
            let jwks = match &a.jwks {
                Some(path) => Some(serde_json::from_slice(&std::fs::read(path)?)?),
                None => None,
            };
            let metadata = ClientMetadata {
                client_name: Some(a.name.clone()),
                redirect_uris: a.redirect_uris.clone(),
                grant_types: a.grant_types.clone(),
                token_endpoint_auth_method: Some(a.auth_method.clone()),
                scope: Some(a.scope.clone()),
                jwks,
                jwks_uri: a.jwks_uri.clone(),
                launch_uri: a.launch_uri.clone(),
            };
            let registered = register(log.as_ref(), metadata, true).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&response_body(&registered))?
            );
            if registered.client_secret.is_some() {
                eprintln!("The client secret is shown only now; store it safely.");
            }
        }
        AppsCommand::List => {
            let status = apps_view(log.as_ref()).await?;
            let mut apps: Vec<_> = status.apps.values().collect();
            apps.sort_by_key(|a| a.registration.registered_ms);
            println!("{:<34} {:<10} {:<20} name", "client_id", "status", "auth");
            for a in apps {
                let state = if a.suspended {
                    "suspended"
                } else if a.approved {
                    "approved"
                } else {
                    "pending"
                };
                println!(
                    "{:<34} {:<10} {:<20} {}",
                    a.registration.client_id,
                    state,
                    a.registration.token_endpoint_auth_method.as_str(),
                    a.registration.client_name
                );
            }
        }
        AppsCommand::Approve { client_id } | AppsCommand::Suspend { client_id } => {
            require_app(log.as_ref(), client_id).await?;
            let kind = if matches!(args.command, AppsCommand::Approve { .. }) {
                ev::APP_APPROVED
            } else {
                ev::APP_SUSPENDED
            };
            log.append(
                &ev::app_stream(client_id),
                ExpectedRevision::StreamExists,
                vec![NewEvent::new(kind, "{}")],
            )
            .await?;
            println!(
                "{client_id}: {}",
                if kind == ev::APP_APPROVED {
                    "approved"
                } else {
                    "suspended"
                }
            );
        }
        AppsCommand::RotateSecret { client_id } => {
            require_app(log.as_ref(), client_id).await?;
            let status = apps_view(log.as_ref()).await?;
            let uses_secret = status
                .apps
                .get(client_id)
                .is_some_and(|a| a.registration.token_endpoint_auth_method.uses_secret());
            if !uses_secret {
                anyhow::bail!("{client_id} does not authenticate with a client secret");
            }
            let secret = random_token();
            let hash = hash_secret(&secret).map_err(|e| anyhow::anyhow!(e))?;
            let event = NewEvent::json(
                ev::APP_SECRET_ROTATED,
                &AppSecretRotated { secret_hash: hash },
            )?;
            log.append(
                &ev::app_stream(client_id),
                ExpectedRevision::StreamExists,
                vec![event],
            )
            .await?;
            println!(
                "{}",
                serde_json::json!({"client_id": client_id, "client_secret": secret})
            );
            eprintln!("The new client secret is shown only now; the old one no longer works.");
        }
    }
    log.close().await?;
    Ok(())
}

pub async fn run_keys(config: Config, args: &KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Rotate => {
            let dir = config.data_dir.join("keys");
            let rotation = crate::smart::keys::SigningKeys::rotate(&dir, crate::smart::now_ms())?;
            // The log records the rotation for auditors: public keys and kids only.
            let log = open_log(&config).await?;
            let event = NewEvent::json(
                ev::SIGNING_KEYS_ROTATED,
                &ev::SigningKeysRotated {
                    rsa_kid: rotation.rsa_kid.clone(),
                    ec_kid: rotation.ec_kid.clone(),
                    jwks: serde_json::to_value(&rotation.jwks)?,
                    retired_kids: rotation.retired_kids.clone(),
                    dropped_kids: rotation.dropped_kids.clone(),
                    rotated_ms: rotation.rotated_ms,
                },
            )?;
            log.append(
                &ev::signing_keys_stream(),
                ExpectedRevision::Any,
                vec![event],
            )
            .await?;
            log.close().await?;
            println!(
                "{}",
                serde_json::json!({
                    "rsa_kid": rotation.rsa_kid,
                    "ec_kid": rotation.ec_kid,
                    "retired_kids": rotation.retired_kids,
                    "dropped_kids": rotation.dropped_kids,
                })
            );
            eprintln!(
                "New tokens are signed with the new keys; the retired keys stay in the JWKS for {} s (the token lifetime).",
                config.smart.access_token_seconds
            );
        }
    }
    Ok(())
}

pub async fn run_users(config: Config, args: &UsersArgs) -> anyhow::Result<()> {
    let log = open_log(&config).await?;
    match &args.command {
        UsersCommand::Add {
            username,
            password,
            patient,
            practitioner,
        } => {
            add_user(
                log.as_ref(),
                username,
                password,
                patient.as_deref(),
                practitioner.as_deref(),
            )
            .await?;
            println!("user {username} added");
        }
    }
    log.close().await?;
    Ok(())
}
