#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let report = counterpoint::bench::polyglot(std::path::Path::new("/tmp/polyglot-scratch"), std::path::Path::new("target/wasm32-wasip2/release"), 6.0).await?;
    report.finish(std::path::Path::new("/tmp/polyglot-bench-out"))?;
    Ok(())
}
