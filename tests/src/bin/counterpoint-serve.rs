//! `counterpoint serve --config CONFIG` for tests that need real server processes (the two-host
//! test on FoundationDB kills one with SIGKILL). The test binary cannot reach the `counterpoint`
//! binary (it belongs to another package and is not built for this one's tests), so this calls
//! what its `serve` subcommand calls, after the same configuration loading:
//! `counterpoint-serve CONFIG`. Prints `counterpoint serving on http://ADDRESS` on stderr once it
//! listens; stops gracefully on SIGTERM or Ctrl-C (sending the traces still buffered, when
//! `[telemetry]` names a collector) and exits 0, or 1 with the error on stderr.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(config) = std::env::args_os().nth(1) else {
        eprintln!("usage: counterpoint-serve CONFIG");
        return ExitCode::from(2);
    };
    let served = tokio::runtime::Runtime::new().map_err(anyhow::Error::from).and_then(|runtime| {
        runtime.block_on(async {
            let config = counterpoint::tenants::Config::load(Some(std::path::Path::new(&config)))?;
            let telemetry = counterpoint::telemetry::Telemetry::install(&config.telemetry)?;
            let served = counterpoint::api::serve(config).await;
            telemetry.shutdown().await;
            served
        })
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
