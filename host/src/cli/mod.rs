//! The `counterpoint` command line: arguments, then one function per subcommand.

/// `println!` for the command line's output: a closed pipe (`| head`) ends the program quietly
/// instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod backup;
mod context;
mod demo;
mod store;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use counterpoint::api::event_json;
use counterpoint::codec::{json_to_msgpack, msgpack_to_json};
use counterpoint::store::{Position, Query, QueryItem, ReadOptions};

use self::context::Host;

#[derive(Parser)]
#[command(name = "counterpoint", version, about = "Host event-sourced backends made of WebAssembly feature slices")]
struct Cli {
    /// The embedded store's data directory.
    #[arg(long, global = true, env = "COUNTERPOINT_DATA", default_value = ".counterpoint")]
    data_dir: PathBuf,
    /// The tenant whose log and slices to use.
    #[arg(long, global = true, env = "COUNTERPOINT_TENANT", default_value = "default")]
    tenant: String,
    /// Slice components to load besides the deployed ones: .wasm files or directories of them.
    #[arg(long = "slices", global = true, env = "COUNTERPOINT_SLICES", value_delimiter = ':')]
    slices: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command of a slice: JSON in, the result as JSON out.
    Run {
        slice: String,
        command: String,
        /// The command's input.
        #[arg(long, default_value = "{}")]
        json: String,
    },
    /// Query a projection of a slice.
    Query {
        slice: String,
        projection: String,
        /// The projection's parameters.
        #[arg(long, default_value = "{}")]
        json: String,
    },
    /// Print events of the log, one JSON object per line (positions as decimal strings).
    Events {
        /// Only events of these types (repeat for several).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Only events carrying all of these tags.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Only events after this position (exclusive).
        #[arg(long)]
        after: Option<Position>,
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long)]
        backwards: bool,
        /// Keep printing new events as they are appended.
        #[arg(long)]
        follow: bool,
    },
    /// Write the tenant's log (or every tenant's) as a stream: JSON lines for people, binary
    /// (checksummed blocks) for volume. `counterpoint import` appends it to any backend.
    Export {
        /// Every tenant the configuration knows (configured and created through the API).
        #[arg(long)]
        all_tenants: bool,
        #[arg(long, value_enum, default_value = "binary")]
        format: counterpoint::transfer::Encoding,
        /// The file to write (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Read the store this configuration names (`[store]`); default: the embedded store in --data-dir.
        #[arg(long, env = "COUNTERPOINT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Append an export stream (a file, or stdin) to the store, tenant by tenant, in order. Run
    /// again after an interruption: it checks what the target holds and goes on after it.
    Import {
        /// The stream (default: stdin).
        input: Option<PathBuf>,
        /// Write each event's old and new position here (`tenant<TAB>old<TAB>new` lines).
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Import a one-tenant stream into this tenant instead of the one it names.
        #[arg(long)]
        into: Option<String>,
        /// Events per append at most (1 or more).
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
        /// Append to the store this configuration names (`[store]`); default: the embedded store in --data-dir.
        #[arg(long, env = "COUNTERPOINT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List the slices: name, version, hash, commands, projections.
    Slices,
    /// Validate a slice component and deploy it for the tenant (the server serves it too).
    Deploy { component: PathBuf },
    /// Run given/when/then scenarios (JSON spec files) against a compiled slice.
    Test {
        component: PathBuf,
        #[arg(required = true)]
        specs: Vec<PathBuf>,
    },
    /// Create a new slice crate that builds and passes its own test.
    New {
        /// The slice's name (a-z, 0-9, '-').
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The slice's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: counterpoint::scaffold::Lang,
    },
    /// The scripted demo: orders and inventory, a retried conflict, projections.
    Demo,
    /// Serve the HTTP API (see the README): tenants, tokens and limits from a TOML file.
    Serve {
        /// The configuration file (`COUNTERPOINT_CONFIG`); without one, no tenant exists.
        #[arg(long, env = "COUNTERPOINT_CONFIG")]
        config: Option<PathBuf>,
        /// Listen here instead of the file's `listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// The tenant's automations: checkpoint, lag, open dead letters (they run in `serve`).
    Automations,
    /// An automation's dead letters: `list`, `retry ID`, `skip ID`.
    Dlq {
        /// `list`, `retry` or `skip`.
        action: String,
        /// The automation, as SLICE/NAME.
        automation: String,
        /// The dead letter's id (for retry and skip).
        id: Option<Position>,
    },
    /// The tenant's persistent read models: `list`, `rebuild SLICE/NAME`, `query SLICE/NAME`.
    Readmodels {
        /// `list`, `rebuild` or `query`.
        action: String,
        /// The read model, as SLICE/NAME (for rebuild and query).
        read_model: Option<String>,
        /// The query's parameters.
        #[arg(long, default_value = "{}")]
        json: String,
    },
    /// The embedded store's log, offline: `check` says where it is damaged and what a repair
    /// loses (exit 2 when the store does not open); `repair --cut-after-damage` cuts it there.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Back up the data directory into DEST while the server runs (through it, with --server),
    /// or from the data directory when no server has it open; adds to an earlier backup in DEST.
    Backup {
        dest: PathBuf,
        /// The running server that has the data directory open, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "COUNTERPOINT_SERVER")]
        server: Option<String>,
        /// The admin token (for --server).
        #[arg(long, env = "COUNTERPOINT_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Restore the backup in SRC into --data-dir, which must be new or empty; checks every file.
    Restore { src: PathBuf },
    /// Print the SHA-256 of a token, as the configuration file stores it.
    HashToken { token: String },
    /// Run a benchmark: prints a table and writes target/bench/NAME.json.
    Bench {
        /// Which benchmark: store, scale, runtime, automations, contention, polyglot, http, http-reads, migrate.
        name: String,
        /// Seconds per timed case.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Events in the log the read cases run on (default: 1,000,000 for store, 100,000,000 for scale).
        #[arg(long)]
        log_events: Option<u64>,
        /// Where the JSON goes.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Trace the benchmark, exporting to this OTLP/HTTP collector: what tracing costs.
        #[arg(long)]
        otlp_endpoint: Option<String>,
        /// The embedded store's group commit window for `contention`, in microseconds (as
        /// `[store] group_commit_window_us`; none by default).
        #[arg(long, default_value_t = 0)]
        group_commit_window_us: u64,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Report every segment, any damage, what cutting the log at it would lose, and any index
    /// file that does not match its segment. Changes nothing.
    Check,
    /// Remove index files that do not match their segments and runs with a damaged block
    /// (derived: the next open builds them again) and, with --cut-after-damage, cut the log at its first damage, keeping the cut
    /// bytes beside the segment.
    Repair {
        /// Really cut: without it, only say what would be cut and lost.
        #[arg(long)]
        cut_after_damage: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` (and a traced `bench`) sets up its own, with the traces asked for.
    if !matches!(cli.command, Command::Serve { .. } | Command::Bench { otlp_endpoint: Some(_), .. })
        && let Err(err) = counterpoint::telemetry::Telemetry::logs_only()
    {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match counterpoint::workers::runtime() {
        Ok((runtime, placement)) => {
            tracing::debug!(?placement, "async runtime started");
            runtime
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON"))
}

fn print_json(value: &Value) {
    out!("{}", serde_json::to_string_pretty(value).expect("JSON"));
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { ref slice, ref command, ref json } => {
            let input = parse_json("--json", json)?;
            let host = Host::open(&cli.data_dir, &cli.tenant, &cli.slices).await?;
            let out = host.run_command(slice, command, &json_to_msgpack(&input)).await?;
            print_json(&json!({
                "result": msgpack_to_json(&out.output),
                "positions": out.positions,
                "attempts": out.attempts,
            }));
        }
        Command::Query { ref slice, ref projection, ref json } => {
            let params = parse_json("--json", json)?;
            let host = Host::open(&cli.data_dir, &cli.tenant, &cli.slices).await?;
            let out = host.query(slice, projection, &json_to_msgpack(&params)).await?;
            print_json(&msgpack_to_json(&out).unwrap_or(Value::Null));
        }
        Command::Events { ref types, ref tags, after, limit, backwards, follow } => {
            let store = Host::open_store(&cli.data_dir)?;
            let tenant = Host::tenant(&cli.tenant)?;
            let query = if types.is_empty() && tags.is_empty() {
                Query::all()
            } else {
                Query::item(QueryItem { types: types.clone(), tags: tags.clone() })
            };
            let options = ReadOptions { after, limit, backwards };
            let mut stream = store.read(&tenant, query.clone(), options).await?;
            let mut last = after;
            while let Some(batch) = stream.next_batch().await? {
                for event in batch {
                    out!("{}", event_json(&event));
                    last = Some(last.map_or(event.position, |l: Position| l.max(event.position)));
                }
            }
            if follow {
                let mut live = store.subscribe(&tenant, query, Some(last.unwrap_or(stream.consistency_position()))).await?;
                loop {
                    tokio::select! {
                        event = live.next() => out!("{}", event_json(&event?)),
                        _ = tokio::signal::ctrl_c() => break,
                    }
                }
            }
        }
        Command::Export { all_tenants, format, ref output, ref config } => {
            let source = transfer::Source { config: config.clone(), data_dir: cli.data_dir.clone() };
            transfer::export(&source, &cli.tenant, all_tenants, format, output.as_deref()).await?;
        }
        Command::Import { ref input, ref mapping, ref into, batch, ref config } => {
            let source = transfer::Source { config: config.clone(), data_dir: cli.data_dir.clone() };
            let into = into.as_deref().map(counterpoint::store::Tenant::new).transpose()?;
            let options = counterpoint::transfer::ImportOptions { batch: batch as usize, into };
            transfer::import(&source, input.as_deref(), mapping.as_deref(), &options).await?;
        }
        Command::Slices => {
            let host = Host::open(&cli.data_dir, &cli.tenant, &cli.slices).await?;
            let slices: Vec<Value> = host
                .slices()
                .iter()
                .map(|s| json!({"hash": s.hash(), "size": s.size(), "description": s.description()}))
                .collect();
            print_json(&Value::Array(slices));
        }
        Command::Deploy { ref component } => {
            let slice = Host::deploy(&cli.data_dir, &cli.tenant, component).await?;
            eprintln!("deployed {} {} ({}) for tenant {}", slice.name(), slice.description().version, &slice.hash()[..12], cli.tenant);
        }
        Command::Test { ref component, ref specs } => return test(&cli.data_dir, component, specs).await,
        Command::New { ref name, ref path, lang } => {
            let dir = path.clone().unwrap_or_else(|| PathBuf::from(name));
            counterpoint::scaffold::new_slice_in(name, &dir, lang)?;
            eprintln!("created slice {name} in {}; its README.md says how to build and test it", dir.display());
        }
        Command::Demo => demo::run(&cli.data_dir, &cli.slices).await?,
        Command::Serve { ref config, ref listen } => {
            let mut config = counterpoint::tenants::Config::load(config.as_deref())?;
            if let Some(listen) = listen {
                config.listen = listen.clone();
            }
            let telemetry = counterpoint::telemetry::Telemetry::install(&config.telemetry)?;
            let served = counterpoint::api::serve(config).await;
            telemetry.shutdown().await;
            served?;
        }
        Command::Automations => {
            let (tenant, automations) = Host::automations(&cli.data_dir, &cli.tenant).await?;
            print_json(&serde_json::to_value(automations.status(&tenant).await?)?);
        }
        Command::Dlq { ref action, ref automation, id } => {
            let (tenant, automations) = Host::automations(&cli.data_dir, &cli.tenant).await?;
            let (slice, name) = automation.split_once('/').context("name the automation as SLICE/NAME")?;
            let automation = counterpoint::automations::AutomationId { tenant, slice: slice.into(), name: name.into() };
            let id = || id.context("give the dead letter's id");
            match action.as_str() {
                "list" => print_json(&serde_json::to_value(automations.dead_letters(&automation).await?)?),
                "retry" => automations.retry(&automation, id()?).await?,
                "skip" => automations.skip(&automation, id()?).await?,
                other => anyhow::bail!("unknown action {other:?}; use list, retry or skip"),
            }
        }
        Command::Readmodels { ref action, ref read_model, ref json } => readmodels(&cli, action, read_model.as_deref(), json).await?,
        Command::Store { ref action } => {
            return match action {
                StoreAction::Check => store::check(&cli.data_dir),
                StoreAction::Repair { cut_after_damage } => store::repair(&cli.data_dir, *cut_after_damage),
            };
        }
        Command::Backup { ref dest, ref server, ref token } => backup::backup(&cli.data_dir, dest, server.as_deref(), token.as_deref()).await?,
        Command::Restore { ref src } => backup::restore(src, &cli.data_dir)?,
        Command::HashToken { ref token } => out!("{}", counterpoint::tenants::hash_token(token)),
        Command::Bench { ref name, seconds, log_events, ref out, ref otlp_endpoint, group_commit_window_us } => {
            let telemetry = match otlp_endpoint {
                Some(endpoint) => {
                    let config = counterpoint::telemetry::TelemetryConfig { otlp_endpoint: Some(endpoint.clone()), ..Default::default() };
                    config.validate().map_err(|e| anyhow::anyhow!("--otlp-endpoint: {e}"))?;
                    Some(counterpoint::telemetry::Telemetry::install(&config)?)
                }
                None => None,
            };
            let scratch = cli.data_dir.join("bench-scratch");
            let slices = cli.slices.first().cloned().unwrap_or_else(|| PathBuf::from("target/wasm32-wasip2/release"));
            let report = match name.as_str() {
                "store" => counterpoint::bench::store(&scratch, seconds, log_events.unwrap_or(1_000_000)).await,
                "scale" => {
                    let dir = counterpoint::bench::scale_dir(&cli.data_dir);
                    counterpoint::bench::scale(&dir, seconds, log_events.unwrap_or(100_000_000)).await
                }
                "runtime" => counterpoint::bench::runtime(&scratch, &slices, seconds).await,
                "automations" => counterpoint::bench::automations(&scratch, &slices, seconds).await,
                "contention" => {
                    let window = std::time::Duration::from_micros(group_commit_window_us);
                    counterpoint::bench::contention(&scratch, &slices, seconds, window).await
                }
                "polyglot" => counterpoint::bench::polyglot(&scratch, &slices, seconds).await,
                "http" => counterpoint::bench::http(&scratch, &slices, seconds).await,
                "http-reads" => counterpoint::bench::http_reads(&scratch).await,
                "migrate" => counterpoint::bench::migrate(&scratch, seconds, log_events.unwrap_or(1_000_000)).await,
                other => anyhow::bail!("unknown benchmark {other:?}; try: store, scale, runtime, automations, contention, polyglot, http, http-reads, migrate"),
            }
            .with_context(|| format!("benchmark {name}"))?;
            if let Some(telemetry) = telemetry {
                telemetry.shutdown().await;
            }
            report.finish(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `counterpoint readmodels`: works on the data directory (not a running server: use the API).
async fn readmodels(cli: &Cli, action: &str, read_model: Option<&str>, json: &str) -> anyhow::Result<()> {
    let (tenant, read_models) = Host::read_models(&cli.data_dir, &cli.tenant).await?;
    let id = || -> anyhow::Result<counterpoint::readmodels::ReadModelId> {
        let (slice, name) = read_model.and_then(|r| r.split_once('/')).context("name the read model as SLICE/NAME")?;
        Ok(counterpoint::readmodels::ReadModelId { tenant: tenant.clone(), slice: slice.into(), name: name.into() })
    };
    match action {
        "list" => print_json(&serde_json::to_value(read_models.status(&tenant).await?)?),
        "rebuild" => {
            let id = id()?;
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events, {per_sec}, eta {eta}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(format!("rebuilding {}/{}", id.slice, id.name));
            let at = read_models.rebuild(&id, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
            bar.finish();
            eprintln!("rebuilt {}/{} up to position {at}", id.slice, id.name);
        }
        "query" => {
            let id = id()?;
            let params = parse_json("--json", json)?;
            // No worker runs here: bring the state up to the log's head first.
            read_models.catch_up(&id).await?;
            let out = read_models.query(&id, &json_to_msgpack(&params), None, std::time::Duration::ZERO).await?;
            print_json(&msgpack_to_json(&out).unwrap_or(Value::Null));
        }
        other => anyhow::bail!("unknown action {other:?}; use list, rebuild or query"),
    }
    Ok(())
}

/// `counterpoint test`: runs spec files against a compiled slice, prints one line per scenario.
async fn test(data_dir: &std::path::Path, component: &std::path::Path, specs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let runtime = Host::runtime(data_dir)?;
    let slice = std::sync::Arc::new(runtime.load_file(component).await.with_context(|| format!("loading {}", component.display()))?);
    let (mut passed, mut failed) = (0, 0);
    for spec_path in specs {
        let text = std::fs::read_to_string(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
        let spec = counterpoint::testing::Spec::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?;
        for outcome in counterpoint::testing::run(&slice, &spec).await {
            match outcome.result {
                Ok(()) => {
                    passed += 1;
                    out!("ok      {} :: {}", slice.name(), outcome.name);
                }
                Err(why) => {
                    failed += 1;
                    out!("FAILED  {} :: {}\n        {why}", slice.name(), outcome.name);
                }
            }
        }
    }
    out!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Cli;

    #[test]
    fn an_import_batch_of_zero_events_is_refused() {
        let refused = Cli::try_parse_from(["counterpoint", "import", "--batch", "0", "stream.cpx"]).err().expect("refused");
        assert!(refused.to_string().contains("--batch"), "{refused}");
        assert!(Cli::try_parse_from(["counterpoint", "import", "--batch", "1", "stream.cpx"]).is_ok());
    }
}
