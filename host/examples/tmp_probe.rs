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
        let faults = || { let mut u: libc_rusage = unsafe { std::mem::zeroed() }; unsafe { getrusage(0, &mut u) }; u.minflt };
        let f0 = faults();
        for _ in 0..200 { let _ = s.execute(ReadAppender::new(memory.clone(), tenant.clone(), Access::ReadOnly), "nope", &[]).await; }
        let f1 = faults();
        for _ in 0..200 { s.tags(ReadAppender::new(memory.clone(), tenant.clone(), Access::ReadOnly), "OrderCancelled", &data).await?; }
        let f2 = faults();
        println!("faults per unknown-command {:.1}, per tags call {:.1}", (f1-f0) as f64/200.0, (f2-f1) as f64/200.0);
        println!("{f}: tags {:.1}us unknown-command {:.1}us", median(&mut a), median(&mut b));
    }
    Ok(())
}

#[repr(C)]
struct libc_rusage { utime: [i64; 2], stime: [i64; 2], maxrss: i64, ixrss: i64, idrss: i64, isrss: i64, minflt: i64, majflt: i64, nswap: i64, inblock: i64, oublock: i64, msgsnd: i64, msgrcv: i64, nsignals: i64, nvcsw: i64, nivcsw: i64 }
unsafe extern "C" { fn getrusage(who: i32, usage: *mut libc_rusage) -> i32; }
