//! Loading components: the contract version check, and what is not a slice at all.

use counterpoint::runtime::{LoadError, CONTRACT_VERSION};
use counterpoint_tests::slices::{runtime, slice, wasm};

#[tokio::test]
async fn a_slice_describes_itself() {
    let orders = slice("orders").await;
    let d = orders.description();
    assert_eq!(d.name, "orders");
    let commands: Vec<&str> = d.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(commands, ["place-order", "add-item", "confirm-order", "cancel-order"]);
    let projections: Vec<&str> = d.projections.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(projections, ["order-summary", "customer-orders"]);
    assert!(d.emits.contains(&"OrderPlaced".to_string()));
    assert_eq!(orders.hash().len(), 64);
}

#[tokio::test]
async fn a_component_for_another_contract_version_is_refused_naming_both() {
    let err = runtime().load(wasm("future-version")).await.err().expect("must be refused");
    assert!(matches!(err, LoadError::IncompatibleContract { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("counterpoint:slice@0.2.0") && message.contains(&format!("counterpoint:slice@{CONTRACT_VERSION}")), "{message}");
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused() {
    let err = runtime().load(b"definitely not wasm".to_vec()).await.err().unwrap();
    assert!(matches!(err, LoadError::NotAComponent(_)), "{err:?}");
    // A core module (the `(module)` binary) is wasm, but not a component.
    let core_module = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    let err = runtime().load(core_module).await.err().unwrap();
    assert!(matches!(err, LoadError::NotAComponent(_)), "{err:?}");
    // Random bytes with a component header.
    let mut garbage = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    garbage.extend((0..4096).map(|_| fastrand::u8(..)));
    assert!(runtime().load(garbage).await.is_err());
}
