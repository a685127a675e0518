//! zoomate command line: parse, load + validate config, start telemetry, run, exit code.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use zoomate::config::{Config, LogFormat, apply_env_overrides};
use zoomate::plan::Plan;
use zoomate::reload::LogLevelSetter;

#[derive(Parser)]
#[command(
    name = "zoomate",
    version,
    about = "HLS/DASH transcoding origin and live-aware edge cache"
)]
struct Cli {
    /// Configuration file (TOML). Without it the embedded default is used.
    #[arg(long, short, global = true, env = "ZOOMATE_CONFIG")]
    config: Option<PathBuf>,
    /// Log format: text or json (overrides [log] format).
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// Print one JSON line with the bound addresses to stdout once listening (for scripts/tests).
    #[arg(long, global = true)]
    print_ready: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Every role in one process: origin (RTMP ingest, ladder, HLS) and edge. The default.
    Run,
    /// Origin worker only: ingest, transcode, store, origin HTTP, bus publisher.
    Origin,
    /// Edge only: caching, stream-aware proxy in front of origin workers.
    Edge,
    /// Validate a configuration file and exit (0 = valid).
    CheckConfig {
        /// File to check (defaults to --config, else the embedded default).
        file: Option<PathBuf>,
    },
    /// Publish a media file as a VOD HLS asset (same aligned ladder as live).
    Vod {
        /// Input media file.
        input: PathBuf,
        /// Directory the asset is created in (default: [vod] dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Asset name (default: the input's file stem).
        #[arg(long)]
        name: Option<String>,
        /// Segment format: ts (HLS) or cmaf (fMP4: HLS and DASH from the same files).
        /// Default: [ladder] format.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["ts", "cmaf"]))]
        format: Option<String>,
    },
    /// What GStreamer's Discoverer sees in a media file.
    Probe {
        input: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a signed playback URL path (`/t/{expires}/{token}/live/{stream}/…`) for the edge's
    /// `[edge.signed_urls]`. The token covers the whole stream directory.
    SignUrl {
        /// A path of the stream to sign: `/live/demo/` or `/live/demo/master.m3u8`.
        #[arg(long)]
        path: String,
        /// Seconds from now until the URL expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// File holding the secret (trailing newline ignored); default: the config's
        /// `edge.signed_urls.secret` (or ZOOMATE_EDGE_SIGNED_URL_SECRET).
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Segment bus tools.
    Bus {
        #[command(subcommand)]
        command: BusCommand,
    },
}

#[derive(Subcommand)]
enum BusCommand {
    /// Print every bus message as one JSON line.
    Tail {
        /// Endpoints to subscribe to (repeatable).
        #[arg(long = "connect", default_value = "tcp://127.0.0.1:5556")]
        connect: Vec<String>,
        /// Topic prefixes to keep (repeatable), e.g. seg/demo; default all.
        #[arg(long = "topic")]
        topic: Vec<String>,
        /// The publisher's CURVE public key (Z85), when it requires CURVE. The client key is
        /// `[bus] curve_secret_key` from --config, else an ephemeral one.
        #[arg(long)]
        server_key: Option<String>,
    },
    /// Print a new CURVE key pair (Z85) as TOML lines to paste into a config.
    Keygen,
    /// XSUB/XPUB forwarder: origins publish to --frontend, edges subscribe to --backend.
    /// With --config, `[bus] curve_secret_key` and `[bus.proxy] frontend_accept_keys` /
    /// `backend_accept_keys` turn CURVE on for both sides.
    Proxy {
        #[arg(long)]
        frontend: String,
        #[arg(long)]
        backend: String,
    },
}

/// Parses, applies overrides, validates and resolves: every problem is reported here, before
/// any runtime, thread or port exists.
fn load_config(cli: &Cli, file: Option<&PathBuf>) -> Result<Plan, zoomate::config::ConfigError> {
    load_config_from(file.or(cli.config.as_ref()), cli.log_format.as_deref())
}

/// [`load_config`] from its parts: what a hot reload calls again.
fn load_config_from(
    file: Option<&PathBuf>,
    log_format: Option<&str>,
) -> Result<Plan, zoomate::config::ConfigError> {
    let mut config = match file {
        Some(path) => Config::from_file(path)?,
        None => Config::embedded_default(),
    };
    apply_env_overrides(&mut config, std::env::vars())?;
    if let Some(f) = log_format {
        config.log.format = match f {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(zoomate::config::ConfigError::invalid(
                    "--log-format",
                    other,
                    "must be text or json",
                ));
            }
        };
    }
    Plan::resolve(config)
}

/// Installs the logger; returns what sets its filter again on a reload (`log.level`, validated
/// by the config like every other key).
fn init_tracing(config: &Config) -> LogLevelSetter {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            level_setter(handle)
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            level_setter(handle)
        }
    }
}

fn level_setter<S: 'static>(
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
) -> LogLevelSetter
where
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>: Send + Sync,
{
    std::sync::Arc::new(move |level: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// `zoomate sign-url`: the signed form of `path`, valid for `ttl_s` seconds from now.
fn sign_url(
    cli: &Cli,
    path: &str,
    ttl_s: u64,
    secret_file: Option<&PathBuf>,
) -> anyhow::Result<String> {
    use zoomate::edge::signed_url::{MIN_SECRET_BYTES, Signer, scope};
    let secret = match secret_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading --secret-file {}", f.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        None => load_config(cli, None)?
            .config
            .edge
            .signed_urls
            .secret
            .map(|s| s.expose().to_string())
            .context("no secret: pass --secret-file or set edge.signed_urls.secret")?,
    };
    let signer = Signer::new(secret.as_bytes())
        .with_context(|| format!("the secret must be at least {MIN_SECRET_BYTES} bytes"))?;
    // `/live/demo/` names the directory; parse it with a file name so it is a media path.
    let probe = if path.ends_with('/') {
        format!("{path}master.m3u8")
    } else {
        path.to_string()
    };
    let media = zoomate::http::paths::parse_media_path(&probe).map_err(|e| {
        anyhow::anyhow!("--path {path}: not a /live/STREAM/ or /vod/ASSET/ path ({e})")
    })?;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs()
        .saturating_add(ttl_s);
    let scope = scope(&media);
    let prefix = signer.signed_prefix(expires, &scope);
    let canonical = media.canonical();
    let rest = canonical
        .strip_prefix(scope.trim_end_matches('/'))
        .unwrap_or_default();
    Ok(if path.ends_with('/') {
        format!("{prefix}/")
    } else {
        format!("{prefix}{rest}")
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.as_ref().unwrap_or(&Command::Run);
    if let Command::CheckConfig { file } = command {
        return match load_config(&cli, file.as_ref()) {
            Ok(_) => {
                println!("config ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("zoomate: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Bus {
        command: BusCommand::Keygen,
    } = command
    {
        return match zoomate::bus::engine::KeyPair::generate() {
            Ok(pair) => {
                println!("# zoomate bus key pair: the secret line goes in this node's [bus];");
                println!("# give the public key to the peers that must accept it.");
                println!("curve_secret_key = \"{}\"", pair.secret.to_z85());
                println!("# public: \"{}\"", pair.public.to_z85());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("zoomate: bus keygen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::SignUrl {
        path,
        ttl,
        secret_file,
    } = command
    {
        return match sign_url(&cli, path, *ttl, secret_file.as_ref()) {
            Ok(url) => {
                println!("{url}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("zoomate: sign-url: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    // Config errors exit before any runtime, thread or port exists.
    let plan = match load_config(&cli, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zoomate: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Bus {
        command: BusCommand::Proxy { frontend, backend },
    } = command
        && let Err(e) = plan.config.bus.validate_proxy(frontend, backend)
    {
        eprintln!("zoomate: {e}");
        return ExitCode::from(2);
    }
    let log_level = init_tracing(&plan.config);
    // A reload reads the same file with the same overrides, checked by the same code.
    let (file, log_format) = (cli.config.clone(), cli.log_format.clone());
    let loader: zoomate::reload::ConfigLoader = std::sync::Arc::new(move || {
        load_config_from(file.as_ref(), log_format.as_deref()).map(|p| p.config)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zoomate: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(plan, command, cli.print_ready, loader, log_level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("zoomate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    plan: Plan,
    command: &Command,
    print_ready: bool,
    loader: zoomate::reload::ConfigLoader,
    log_level: LogLevelSetter,
) -> anyhow::Result<()> {
    let config = plan.config.clone();
    let shutdown = zoomate::Shutdown::new();
    spawn_signal_handler(shutdown.clone());
    let roles = match command {
        Command::Run => zoomate::app::Roles::All,
        Command::Origin => zoomate::app::Roles::Origin,
        Command::Edge => zoomate::app::Roles::Edge,
        Command::Bus {
            command:
                BusCommand::Tail {
                    connect,
                    topic,
                    server_key,
                },
        } => {
            let targets: Vec<zoomate::config::BusConnect> = connect
                .iter()
                .map(|c| zoomate::config::BusConnect {
                    endpoint: c.clone(),
                    server_key: server_key.clone(),
                    client_secret_key: config.bus.curve_secret_key.clone(),
                })
                .collect();
            let stdout = std::io::stdout();
            return zoomate::bus::tail::run_tail(targets, topic.clone(), stdout.lock(), shutdown)
                .await
                .context("bus tail");
        }
        Command::Bus {
            command: BusCommand::Proxy { frontend, backend },
        } => {
            let options = zoomate::bus::proxy::ProxyOptions::from_config(&config.bus)?;
            return zoomate::bus::proxy::run_proxy(frontend, backend, options, shutdown)
                .await
                .context("bus proxy");
        }
        Command::Bus {
            command: BusCommand::Keygen,
        }
        | Command::SignUrl { .. } => unreachable!("handled before the runtime starts"),
        Command::Vod {
            input,
            out,
            name,
            format,
        } => {
            let format = match format {
                Some(f) => f
                    .parse::<zoomate::config::SegmentFormat>()
                    .map_err(anyhow::Error::msg)?,
                None => config.ladder.format,
            };
            let out = out.clone().unwrap_or_else(|| config.vod.dir.clone());
            let name = match name {
                Some(n) => n.clone(),
                None => input
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("asset")
                    .to_string(),
            };
            let started = std::time::Instant::now();
            let job = zoomate::vod::publish(&config, input, &out, &name, format);
            let summary = tokio::select! {
                r = job => r?,
                _ = shutdown.cancelled() => anyhow::bail!("interrupted; no asset was written"),
            };
            println!(
                "published {} ({} renditions, {} segments, {:.1} s of media in {:.1} s)",
                summary.asset_dir.display(),
                summary.renditions.len(),
                summary.segments,
                summary.duration_ms as f64 / 1000.0,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Command::Probe { input, json } => {
            let input = input.clone();
            let info = tokio::task::spawn_blocking(move || zoomate::vod::probe(&input)).await??;
            if *json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("file:       {}", info.path.display());
                println!("container:  {}", info.container.as_deref().unwrap_or("?"));
                println!("duration:   {:.3} s", info.duration_ms as f64 / 1000.0);
                println!(
                    "video:      {} {}x{} @ {:.3} fps, {} bit/s",
                    info.video_codec.as_deref().unwrap_or("?"),
                    info.width,
                    info.height,
                    info.frame_rate,
                    info.video_bitrate_bps
                );
                match &info.audio_codec {
                    Some(a) => println!(
                        "audio:      {a} {} ch @ {} Hz, {} bit/s",
                        info.audio_channels, info.audio_sample_rate, info.audio_bitrate_bps
                    ),
                    None => println!("audio:      none"),
                }
            }
            return Ok(());
        }
        Command::CheckConfig { .. } => unreachable!("handled before the runtime starts"),
    };
    let running = plan.config.clone();
    let app = zoomate::app::start(plan, roles, shutdown.clone())
        .await
        .context("starting zoomate")?;
    let mut targets = app.reload_targets.clone();
    targets.log_level = Some(log_level);
    let reloader = zoomate::reload::Reloader::new(loader, running, targets);
    if let Some(api) = &app.api {
        api.set_reloader(reloader.clone());
    }
    // Installed before "ready": a SIGHUP from then on reloads instead of ending the process.
    spawn_reload_on_sighup(reloader, shutdown.clone())?;
    tracing::info!(rtmp = ?app.addrs.rtmp, origin_http = ?app.addrs.origin_http, edge_http = ?app.addrs.edge_http, bus = ?app.addrs.bus, "zoomate ready");
    if print_ready {
        println!(
            "{}",
            serde_json::json!({ "event": "ready", "addrs": app.addrs })
        );
    }
    app.wait(shutdown).await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// SIGHUP → a config reload (one at a time; the outcome is logged by the reloader).
fn spawn_reload_on_sighup(
    reloader: zoomate::reload::Reloader,
    shutdown: zoomate::Shutdown,
) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = hup.recv() => if r.is_none() { return },
            }
            let _ = reloader.reload_and_log("SIGHUP").await;
        }
    });
    Ok(())
}

/// SIGINT/SIGTERM → the one shutdown signal. A second signal exits at once.
fn spawn_signal_handler(shutdown: zoomate::Shutdown) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install SIGTERM handler");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested; draining (send again to exit immediately)");
        shutdown.cancel();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        std::process::exit(130);
    });
}
