//! `counterpoint export` and `counterpoint import`: logs out of one store and into another, on
//! whichever backend a configuration file names (the embedded store in `--data-dir` without one).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;

use counterpoint::store::{EmbeddedStore, SharedStore, Tenant};
use counterpoint::tenants::{Config, Tenants};
use counterpoint::transfer::{self, Encoding, ImportOptions, MappingFile, StreamReader, StreamWriter};

/// Where the logs are: the `[store]` of `config` (and its data directory), or the embedded store
/// in `data_dir` when there is no configuration file.
pub struct Source {
    pub config: Option<PathBuf>,
    pub data_dir: PathBuf,
}

impl Source {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if self.config.is_none() {
            config.data_dir = self.data_dir.clone();
        }
        Ok(config)
    }

    fn open(&self) -> anyhow::Result<(Config, SharedStore)> {
        let config = self.config()?;
        let store: SharedStore = match config.store.kind.as_str() {
            "fdb" => open_fdb(&config)?,
            "embedded" => {
                let dir = config.data_dir.join("events");
                Arc::new(EmbeddedStore::open(&dir).with_context(|| format!("opening the embedded store in {}", dir.display()))?)
            }
            other => anyhow::bail!("[store] kind = {other:?}: use \"embedded\" or \"fdb\""),
        };
        Ok((config, store))
    }
}

#[cfg(feature = "fdb")]
fn open_fdb(config: &Config) -> anyhow::Result<SharedStore> {
    let mut options = counterpoint::store::FdbOptions::new(config.store.prefix.clone());
    options.cluster_file = config.store.cluster_file.clone();
    Ok(Arc::new(counterpoint::store::FdbStore::open(options).context("opening the FoundationDB store")?))
}

#[cfg(not(feature = "fdb"))]
fn open_fdb(_config: &Config) -> anyhow::Result<SharedStore> {
    anyhow::bail!("store.kind = \"fdb\" needs a build with FoundationDB support: cargo build --release --features fdb (and libfdb_c 7.3)")
}

/// `counterpoint export`: `tenant`'s log, or every tenant's, to `output` (stdout when `None` or `-`).
pub async fn export(source: &Source, tenant: &str, all: bool, encoding: Encoding, output: Option<&Path>) -> anyhow::Result<()> {
    let (config, store) = source.open()?;
    let known = Tenants::from_config(&config).with_created(&config.data_dir)?.names();
    let tenants = if all {
        anyhow::ensure!(!known.is_empty(), "--all-tenants: the configuration names no tenant (pass --config, or export one with --tenant)");
        known
    } else {
        let tenant = Tenant::new(tenant)?;
        transfer::check_exportable(store.as_ref(), &tenant, &known).await?;
        vec![tenant]
    };
    let out: Box<dyn Write> = match output {
        None => Box::new(std::io::stdout()),
        Some(path) if path == Path::new("-") => Box::new(std::io::stdout()),
        Some(path) => Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?),
    };
    let start = Instant::now();
    let writer = StreamWriter::new(BufWriter::with_capacity(1 << 20, out), encoding).context("writing the export")?;
    let (_, summary) = transfer::export(store.as_ref(), &tenants, writer).await?;
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "exported {} events of {} tenant(s) in {seconds:.1} s ({:.0} events/s)",
        summary.events,
        summary.tenants,
        summary.events as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// `counterpoint import`: the stream in `input` (stdin when `None` or `-`) appended to the store.
pub async fn import(source: &Source, input: Option<&Path>, mapping: Option<&Path>, options: &ImportOptions) -> anyhow::Result<()> {
    let (_, store) = source.open()?;
    let reader: Box<dyn std::io::Read> = match input {
        None => Box::new(std::io::stdin()),
        Some(path) if path == Path::new("-") => Box::new(std::io::stdin()),
        Some(path) => Box::new(File::open(path).with_context(|| format!("opening {}", path.display()))?),
    };
    let reader = StreamReader::open(BufReader::with_capacity(1 << 20, reader))?;
    // Written whole by every run: a resumed run maps the events it finds already imported too.
    let mut mapping = match mapping {
        Some(path) => {
            let file = File::create(path).with_context(|| format!("creating the mapping file {}", path.display()))?;
            Some(MappingFile::new(BufWriter::with_capacity(1 << 20, file))?)
        }
        None => None,
    };
    let start = Instant::now();
    let summary = transfer::import(store.as_ref(), reader, mapping.as_mut(), options).await?;
    if let Some(mapping) = mapping {
        mapping.finish().context("writing the mapping file")?;
    }
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "imported {} events of {} tenant(s) in {} appends, {seconds:.1} s ({:.0} events/s){}",
        summary.appended,
        summary.tenants,
        summary.appends,
        summary.appended as f64 / seconds.max(1e-9),
        if summary.verified > 0 { format!("; {} were already there (checked)", summary.verified) } else { String::new() }
    );
    Ok(())
}
