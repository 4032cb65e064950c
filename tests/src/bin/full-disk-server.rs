//! A server whose disk fills up: `full-disk-server CONFIG LIMIT_BYTES` serves `CONFIG` with every
//! file this process writes capped at `LIMIT_BYTES` (RLIMIT_FSIZE; SIGXFSZ ignored, so a write
//! past the cap fails with EFBIG as on a full disk instead of killing the process). Prints
//! `LISTENING address`, then serves until killed.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: full-disk-server CONFIG LIMIT_BYTES";
    let config = args.next().expect(usage);
    let limit: u64 = args.next().expect(usage).parse().expect(usage);
    // SAFETY: plain libc calls at start-up, before any file is written.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let cap = libc::rlimit { rlim_cur: limit, rlim_max: limit };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &cap), 0, "setrlimit");
    }
    let config = counterpoint::tenants::Config::load(Some(std::path::Path::new(&config)))?;
    let running = counterpoint::api::spawn_server(&config).await?;
    println!("LISTENING {}", running.address);
    std::future::pending::<()>().await;
    Ok(())
}
