//! The child process of the power-cut test of the data directory's files (run under `strace`):
//! into the empty data directory given as the first argument, deploys slice `orders` (the
//! component file given as the second) for tenant `acme`, creates tenant `initech` through the
//! admin path, and opens the read-model state.

use std::sync::Arc;

use counterpoint::deploy::Registry;
use counterpoint::readmodels::EmbeddedState;
use counterpoint::store::Tenant;
use counterpoint::tenants::{Config, LimitOverrides, Tenants};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: catalog-writer DIR COMPONENT";
    let dir = std::path::PathBuf::from(args.next().expect(usage));
    let wasm = std::fs::read(args.next().expect(usage)).expect("read the component");
    let acme = Tenant::new("acme").unwrap();
    let registry = Registry::open(counterpoint_tests::slices::runtime(), &dir, Arc::new(Tenants::single(&acme))).await.expect("registry");
    registry.deploy(&acme, wasm, Some("orders")).await.expect("deploy");
    let tenants = Tenants::from_config(&Config::parse("").unwrap()).with_created(&dir).expect("tenants");
    tenants.create(&Tenant::new("initech").unwrap(), LimitOverrides::default()).expect("create a tenant");
    EmbeddedState::open(dir.join("readmodels.redb")).expect("open the read-model state");
}
