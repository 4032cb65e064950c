//! The `counterpoint` command line.

mod cli;

// Reads decode many small events; mimalloc roughly halves their allocation cost against glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
