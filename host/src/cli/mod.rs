//! The `counterpoint` command line: arguments, then one function per subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "counterpoint", version, about = "Host event-sourced backends made of WebAssembly feature slices")]
struct Cli {
    /// The embedded store's data directory.
    #[arg(long, global = true, env = "COUNTERPOINT_DATA", default_value = ".counterpoint")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a benchmark: prints a table and writes target/bench/NAME.json.
    Bench {
        /// Which benchmark: store.
        name: String,
        /// Seconds per timed case.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Events in the log the read cases run on.
        #[arg(long, default_value_t = 1_000_000)]
        log_events: u64,
        /// Where the JSON goes.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench { name, seconds, log_events, out } => {
            let scratch = cli.data_dir.join("bench-scratch");
            let report = match name.as_str() {
                "store" => counterpoint::bench::store(&scratch, seconds, log_events).await,
                other => anyhow::bail!("unknown benchmark {other:?}; try: store"),
            }
            .with_context(|| format!("benchmark {name}"))?;
            report.finish(&out)?;
            Ok(())
        }
    }
}
