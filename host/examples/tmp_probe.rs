use std::sync::Arc;
use std::time::{Duration, Instant};
use counterpoint::runtime::{Access, ReadAppender, Runtime, RuntimeConfig};
use counterpoint::store::{MemoryStore, SharedStore, Tenant};

fn median(v: &mut Vec<Duration>) -> f64 { v.sort(); v[v.len()/2].as_secs_f64()*1e6 }

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some("/tmp/probe-cache".into()), ..Default::default() })?;
    let tenant = Tenant::new("bench")?;
    let memory: SharedStore = Arc::new(MemoryStore::new());
    let data = counterpoint::codec::json_to_msgpack(&serde_json::json!({"order_id":"o-1","reason":"x"}));
    for f in files {
        let s = Arc::new(runtime.load_file(std::path::Path::new(&f)).await?);
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..500 {
            let t = Instant::now();
            s.tags(ReadAppender::new(memory.clone(), tenant.clone(), Access::ReadOnly), "OrderCancelled", &data).await?;
            a.push(t.elapsed());
            let t = Instant::now();
            let _ = s.execute(ReadAppender::new(memory.clone(), tenant.clone(), Access::ReadOnly), "nope", &[]).await;
            b.push(t.elapsed());
        }
        println!("{f}: tags {:.1}us unknown-command {:.1}us", median(&mut a), median(&mut b));
    }
    Ok(())
}
