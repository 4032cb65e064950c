//! The `counterpoint` command line.

mod cli;

// Reads decode many small events; mimalloc roughly halves their allocation cost against glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Before the first large allocation, so that no heap page is a huge one. Where the kernel
    // refuses, the process runs as before: the choice is about speed, not correctness.
    let _ = counterpoint::memory::prefer_small_pages();
    cli::main()
}
