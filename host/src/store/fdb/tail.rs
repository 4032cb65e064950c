//! Live tailing: one task per watched tenant keeps a FoundationDB watch on the tenant's head
//! key, which every append (on any host) changes, and publishes the head to subscriptions.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::keys::TenantKeys;
use super::read::head_position;
use super::{advance, binding, Inner};
use crate::store::{Position, StoreError, Tenant};

/// A receiver of the tenant's head, starting a watch task for the tenant if none runs.
pub(super) async fn heads(inner: &Arc<Inner>, keys: TenantKeys, tenant: &Tenant) -> Result<watch::Receiver<Position>, StoreError> {
    if let Some(sender) = inner.heads.lock().expect("heads lock").get(tenant) {
        return Ok(sender.subscribe());
    }
    // The first subscriber waits for the current head, so it starts from a known point.
    let head_key = keys.head();
    let key = &head_key;
    let head = inner
        .db
        .run(|trx, _| async move { Ok(trx.get(key, true).await?) })
        .await
        .map_err(|e| binding("cannot read the head", e))
        .and_then(|value| head_position(value.as_deref()))?;
    let mut map = inner.heads.lock().expect("heads lock");
    if let Some(sender) = map.get(tenant) {
        return Ok(sender.subscribe()); // another subscriber started it meanwhile
    }
    let sender = watch::Sender::new(head);
    let receiver = sender.subscribe();
    map.insert(tenant.clone(), sender.clone());
    tokio::spawn(follow(inner.clone(), tenant.clone(), head_key, sender));
    Ok(receiver)
}

/// Re-arms the watch after every change until no subscriber is left.
async fn follow(inner: Arc<Inner>, tenant: Tenant, head_key: Vec<u8>, sender: watch::Sender<Position>) {
    let key = &head_key;
    let mut backoff = Duration::from_millis(100);
    loop {
        let armed = inner
            .db
            .run(|trx, _| async move {
                let value = trx.get(key, false).await?;
                // Set when the head changes after this read (the watch outlives the transaction).
                Ok((value, trx.watch(key)))
            })
            .await;
        let fired = match armed {
            Ok((value, fired)) => {
                match head_position(value.as_deref()) {
                    Ok(head) => {
                        sender.send_if_modified(|seen| advance(seen, head));
                    }
                    Err(err) => tracing::warn!(%tenant, %err, "cannot follow the head"),
                }
                Some(fired)
            }
            Err(err) => {
                tracing::warn!(%tenant, err = %binding("cannot watch the head", err), "retrying");
                None
            }
        };
        let wait = async {
            match fired {
                Some(fired) => match fired.await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    // A watch can end with an error (a timeout, too many watches, a
                    // recovery): arm it again after a pause.
                    Err(err) => {
                        tracing::debug!(%tenant, code = err.code(), "head watch ended; re-arming");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                },
                None => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        tokio::select! {
            () = wait => {}
            () = sender.closed() => {
                // Subscribing happens under the map's lock, so no receiver can appear between
                // this check and the removal.
                let mut map = inner.heads.lock().expect("heads lock");
                if sender.receiver_count() == 0 {
                    if map.get(&tenant).is_some_and(|s| s.same_channel(&sender)) {
                        map.remove(&tenant);
                    }
                    return;
                }
            }
        }
    }
}
