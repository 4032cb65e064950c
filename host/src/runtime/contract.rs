//! The version of the WIT contract this host implements, and the check made on every component
//! before it is instantiated.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

/// The WIT package this host implements.
pub const CONTRACT_PACKAGE: &str = "counterpoint:slice";
/// Its version: a component built for a compatible version (same major; for 0.x, same minor) loads.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Finds the version of `counterpoint:slice` that `component` was built for and refuses it,
/// naming both versions, unless it is compatible with this host's.
pub fn check(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let prefix = format!("{CONTRACT_PACKAGE}/slice@");
    let versions: Vec<String> = ty
        .exports(engine)
        .filter_map(|(name, _)| name.strip_prefix(&prefix).map(str::to_string))
        .collect();
    let Some(found) = versions.first() else {
        let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
        return Err(LoadError::NotASlice(format!(
            "it does not export {CONTRACT_PACKAGE}/slice (it exports: {})",
            if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
        )));
    };
    if !compatible(found, CONTRACT_VERSION) {
        return Err(LoadError::IncompatibleContract { found: found.clone(), supported: CONTRACT_VERSION.to_string() });
    }
    Ok(())
}

fn compatible(found: &str, ours: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split(['.', '-', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (parse(found), parse(ours)) {
        (Some((fmaj, fmin)), Some((omaj, omin))) => fmaj == omaj && (omaj > 0 || fmin == omin),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn semver_compatibility() {
        assert!(super::compatible("0.1.0", "0.1.0"));
        assert!(super::compatible("0.1.3", "0.1.0"));
        assert!(!super::compatible("0.2.0", "0.1.0"));
        assert!(super::compatible("1.4.0", "1.0.0"));
        assert!(!super::compatible("2.0.0", "1.0.0"));
        assert!(!super::compatible("garbage", "0.1.0"));
    }
}
