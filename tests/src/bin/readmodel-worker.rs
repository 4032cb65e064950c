//! The child process of the read-model crash test: runs the read-model workers of the slices
//! deployed for tenant `acme` in the data directory given as the first argument, printing
//! `READY` once they run, until it is killed.

use std::sync::Arc;

use counterpoint::deploy::Registry;
use counterpoint::readmodels::{EmbeddedState, ReadModels};
use counterpoint::store::{EmbeddedStore, Tenant};
use counterpoint::tenants::Tenants;

#[tokio::main]
async fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: readmodel-worker DIR"));
    let tenant = Tenant::new("acme").unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.join("events")).expect("open the event store"));
    let registry = Registry::open(counterpoint_tests::slices::runtime(), &dir, Arc::new(Tenants::single(&tenant))).await.expect("registry");
    let state = Arc::new(EmbeddedState::open(dir.join("readmodels.redb")).expect("open the read-model state"));
    let read_models = ReadModels::new(store, state, Arc::new(registry));
    read_models.start();
    println!("READY");
    std::future::pending::<()>().await;
}
