//! A server whose disk fills up: `full-disk-server CONFIG LIMIT_BYTES` serves `CONFIG` with every
//! file this process writes capped at `LIMIT_BYTES` (RLIMIT_FSIZE; SIGXFSZ ignored, so a write
//! past the cap fails with EFBIG as on a full disk instead of killing the process). Prints
//! `LISTENING address`, then serves until killed. A line `ROOM` on stdin lifts the cap (the
//! disk has room again) and is answered `ROOM`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: full-disk-server CONFIG LIMIT_BYTES";
    let config = args.next().expect(usage);
    let limit: u64 = args.next().expect(usage).parse().expect(usage);
    // SAFETY: plain libc calls at start-up, before any file is written.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        set_file_size_cap(limit);
    }
    let config = counterpoint::tenants::Config::load(Some(std::path::Path::new(&config)))?;
    let running = counterpoint::api::spawn_server(&config).await?;
    println!("LISTENING {}", running.address);
    for line in std::io::stdin().lines() {
        if line? == "ROOM" {
            // SAFETY: as above; raising the soft limit up to the hard one (unlimited).
            unsafe { set_file_size_cap(libc::RLIM_INFINITY) };
            println!("ROOM");
        }
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// The soft limit on file sizes; the hard one stays unlimited, so it can be lifted again.
unsafe fn set_file_size_cap(bytes: u64) {
    let cap = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a plain syscall on a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &cap) }, 0, "setrlimit");
}
