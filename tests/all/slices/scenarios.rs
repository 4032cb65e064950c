//! The example slices' given/when/then specs, run on their compiled components, and a new
//! slice from `counterpoint new` that builds and passes its own tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use counterpoint::testing::{run, Spec};
use counterpoint_tests::slices::{runtime, slice, target_dir};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn spec_passes(slice_name: &str, spec_path: &Path) {
    let spec = Spec::parse(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    assert!(!spec.scenarios.is_empty());
    let outcomes = run(&slice(slice_name).await, &spec).await;
    let failures: Vec<String> =
        outcomes.iter().filter_map(|o| o.result.as_ref().err().map(|why| format!("{}: {why}", o.name))).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn orders_scenarios() {
    spec_passes("orders", &repo().join("slices/orders/scenarios.json")).await;
}

#[tokio::test]
async fn inventory_scenarios() {
    spec_passes("inventory", &repo().join("slices/inventory/scenarios.json")).await;
}

#[tokio::test]
async fn a_failing_expectation_is_reported() {
    let spec = Spec::parse(
        r#"{"scenarios": [{"name": "wrong", "when": {"command": "place-order", "input": {"order_id": "o", "customer_id": "c"}},
            "then": {"error": "rejected"}}]}"#,
    )
    .unwrap();
    let outcomes = run(&slice("orders").await, &spec).await;
    let why = outcomes[0].result.as_ref().unwrap_err();
    assert!(why.contains("expected a rejected error, but it succeeded"), "{why}");
}

fn cargo(dir: &Path, args: &[&str], target: &Path) {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo {args:?} failed in {}", dir.display());
}

#[tokio::test]
async fn a_new_slice_builds_and_passes_its_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("greeter");
    counterpoint::scaffold::new_slice("greeter", &crate_dir).unwrap();
    // Shared with later runs, so only the first one compiles the dependencies.
    let target = target_dir().join("scaffold-test");
    cargo(&crate_dir, &["test", "--quiet"], &target);
    cargo(&crate_dir, &["build", "--quiet", "--release", "--target", "wasm32-wasip2"], &target);
    let wasm = target.join("wasm32-wasip2/release/greeter.wasm");
    let greeter = std::sync::Arc::new(runtime().load_file(&wasm).await.expect("the new slice loads"));
    assert_eq!(greeter.name(), "greeter");
    let spec = Spec::parse(&std::fs::read_to_string(crate_dir.join("scenarios.json")).unwrap()).unwrap();
    for outcome in run(&greeter, &spec).await {
        assert!(outcome.result.is_ok(), "{}: {:?}", outcome.name, outcome.result);
    }
    let err = counterpoint::scaffold::new_slice("greeter", &crate_dir).unwrap_err();
    assert!(err.to_string().contains("already exists"));
    assert!(counterpoint::scaffold::new_slice("Bad Name", &dir.path().join("x")).is_err());
}
