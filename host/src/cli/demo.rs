//! `counterpoint demo`: the example slices at work on the embedded store — commands, a boundary
//! across two slices, conflicts resolved by re-running commands, automations, projections and
//! a persistent read model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{json, Value};

use counterpoint::codec::{event_to_json, json_to_msgpack, msgpack_to_json};
use counterpoint::automations::{Automations, RetryPolicy};
use counterpoint::readmodels::{EmbeddedState, ReadModelId, ReadModels};
use counterpoint::runner::{CommandOutput, CommandRunner};
use counterpoint::store::{Query, QueryItem, ReadOptions};

use super::context::Host;

pub async fn run(data_dir: &Path, slices: &[PathBuf]) -> anyhow::Result<()> {
    let host = Arc::new(Host::open_deployed(data_dir, "demo", slices).await?);
    for needed in ["orders", "inventory"] {
        host.slice(needed).context("the demo needs the example slices (`just demo` builds them)")?;
    }
    let automations = Automations::new(host.store.clone(), host.registry.clone(), CommandRunner::default(), RetryPolicy::default());
    automations.start();
    let state = Arc::new(EmbeddedState::open(data_dir.join("readmodels.redb"))?);
    let read_models = ReadModels::new(host.store.clone(), state, host.registry.clone());
    read_models.start();
    out!("Counterpoint demo — data directory {}, tenant \"demo\"\n", data_dir.display());
    for slice in host.slices() {
        let d = slice.description();
        let commands: Vec<&str> = d.commands.iter().map(|c| c.name.as_str()).collect();
        let projections: Vec<&str> = d.projections.iter().map(|p| p.name.as_str()).collect();
        out!("slice {} {} ({} KiB): commands {commands:?}, projections {projections:?}", d.name, d.version, slice.size() / 1024);
    }
    // Ids unique to this run, so the demo can run again on the same log.
    let run = host.store.head(&host.tenant).await?.get();
    let order = format!("order-{run}");
    let sku = format!("apple-{run}");

    step("Receive 10 apples (inventory)");
    command(&host, "inventory", "receive-stock", json!({"sku": sku, "qty": 10})).await?;
    step("Place an order, add 3 apples, reserve them: one decision over both slices' events");
    command(&host, "orders", "place-order", json!({"order_id": order, "customer_id": "ada"})).await?;
    command(&host, "orders", "add-item", json!({"order_id": order, "sku": sku, "qty": 3, "price": 120})).await?;
    command(&host, "inventory", "reserve-stock", json!({"order_id": order, "sku": sku, "qty": 3})).await?;

    step("Two orders race for the last 7 apples, 4 each: both read, one appends first");
    let (a, b) = (format!("{order}-a"), format!("{order}-b"));
    for id in [&a, &b] {
        command(&host, "orders", "place-order", json!({"order_id": id, "customer_id": "bob"})).await?;
    }
    let reserve = |id: &str| {
        let payload = json_to_msgpack(&json!({"order_id": id, "sku": sku, "qty": 4}));
        let host = &host;
        async move { host.run_counted("inventory", "reserve-stock", &payload).await }
    };
    let (ra, rb) = tokio::join!(reserve(&a), reserve(&b));
    for (id, outcome) in [(&a, ra?), (&b, rb?)] {
        match outcome {
            (Ok(_), attempts) => out!("  {id}: reserved (ran {attempts} time(s))"),
            (Err(err), 1) => out!("  {id}: {err:#} (ran once: the other reservation had already landed)"),
            (Err(err), attempts) => out!(
                "  {id}: {err:#} (ran {attempts} times: its first append failed its condition, the re-run saw the other reservation)"
            ),
        }
    }

    step("Eight add-item commands on one order at once: conflicts, re-runs, all succeed");
    let busy = format!("{order}-busy");
    command(&host, "orders", "place-order", json!({"order_id": busy, "customer_id": "cy"})).await?;
    let mut adds = tokio::task::JoinSet::new();
    for i in 0..8 {
        let payload = json_to_msgpack(&json!({"order_id": busy, "sku": format!("item-{i}"), "qty": 1, "price": 100}));
        let host = host.clone();
        adds.spawn(async move { host.run_command("orders", "add-item", &payload).await });
    }
    let mut attempts = Vec::new();
    while let Some(result) = adds.join_next().await {
        if let Ok(out) = result? {
            attempts.push(out.attempts);
        }
    }
    out!(
        "  {} of 8 succeeded; attempts per command {attempts:?} ({} re-runs after conflicts)",
        attempts.len(),
        attempts.iter().map(|a| a - 1).sum::<u32>()
    );

    step("Automations: confirming an order reserves its stock, or cancels it when there is not enough");
    let (c, d) = (format!("{order}-c"), format!("{order}-d"));
    for (id, qty) in [(&c, 2), (&d, 5)] {
        command(&host, "orders", "place-order", json!({"order_id": id, "customer_id": "dee"})).await?;
        command(&host, "orders", "add-item", json!({"order_id": id, "sku": sku, "qty": qty, "price": 120})).await?;
        command(&host, "orders", "confirm-order", json!({"order_id": id})).await?;
    }
    for (id, outcome) in [(&c, "StockReserved"), (&d, "OrderCancelled")] {
        let events = wait_for(&host, id, outcome).await?;
        out!("  {id}: {}", events.join(" -> "));
    }
    out!("  (inventory's reserve-on-confirm reacted to OrderConfirmed; for {d} it recorded StockReservationFailed,");
    out!("   and orders' cancel-when-out-of-stock reacted to that by cancelling the order)");
    automations.stop().await;

    step("Projections");
    projection(&host, "orders", "order-summary", json!({"order_id": order})).await?;
    projection(&host, "orders", "order-summary", json!({"order_id": busy})).await?;
    projection(&host, "orders", "customer-orders", json!({"customer_id": "bob", "last": 1})).await?;
    projection(&host, "inventory", "stock-level", json!({"sku": sku})).await?;

    step("Read models: inventory's stock-levels, kept up to date by the host, answer without replaying the log");
    let id = ReadModelId { tenant: host.tenant.clone(), slice: "inventory".into(), name: "stock-levels".into() };
    let head = host.store.head(&host.tenant).await?;
    let params = json!({"sku": sku});
    let out = read_models.query(&id, &json_to_msgpack(&params), Some(head), std::time::Duration::from_secs(10)).await?;
    out!("  inventory stock-levels {params} -> {}", msgpack_to_json(&out).unwrap_or(Value::Null));
    for status in read_models.status(&host.tenant).await? {
        out!("  {}/{}: checkpoint {}, {} keys, {} events behind", status.id.slice, status.id.name, status.checkpoint, status.keys, status.lag);
    }
    read_models.stop().await;

    step("The last 3 events of the log");
    let (events, head) = host.store.read(&host.tenant, Query::all(), ReadOptions::default().backwards().limit(3)).await?.collect().await?;
    for event in events.iter().rev() {
        out!("  {}", event_to_json(event));
    }
    out!("\nThe log holds {} events in {}. Run the demo again: it adds to them.", head, data_dir.join("events").display());
    out!("They are tenant {}'s: `counterpoint --tenant {} events --type OrderPlaced` prints some.", host.tenant, host.tenant);
    Ok(())
}

/// The types of an order's events, once one of them is `event_type` (automations run in the
/// background); gives up after 10 s.
async fn wait_for(host: &Host, order_id: &str, event_type: &str) -> anyhow::Result<Vec<String>> {
    let query = Query::item(QueryItem::tags([format!("order_id:{order_id}")]));
    for _ in 0..200 {
        let (events, _) = host.store.read(&host.tenant, query.clone(), ReadOptions::default()).await?.collect().await?;
        let types: Vec<String> = events.into_iter().map(|e| e.event.event_type).collect();
        if types.iter().any(|t| t == event_type) {
            return Ok(types);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("no {event_type} for {order_id} after 10 s")
}

fn step(title: &str) {
    out!("\n== {title}");
}

async fn command(host: &Host, slice: &str, command: &str, input: Value) -> anyhow::Result<CommandOutput> {
    let out = host.run_command(slice, command, &json_to_msgpack(&input)).await.with_context(|| format!("{slice} {command}"))?;
    let result = msgpack_to_json(&out.output).unwrap_or(Value::Null);
    out!("  {slice} {command} {input} -> {result} at {:?}", out.positions.iter().map(|p| p.get()).collect::<Vec<_>>());
    Ok(out)
}

async fn projection(host: &Host, slice: &str, name: &str, params: Value) -> anyhow::Result<()> {
    let out = host.query(slice, name, &json_to_msgpack(&params)).await.with_context(|| format!("{slice} {name}"))?;
    out!("  {slice} {name} {params} -> {}", msgpack_to_json(&out).unwrap_or(Value::Null));
    Ok(())
}
