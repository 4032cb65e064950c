//! The version of the WIT contract this host implements, and the checks made on every component:
//! on its bytes before it is compiled ([`precheck`]), and on the compiled component before it is
//! instantiated ([`check`]).

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
    let exports: Vec<String> = component.component_type().exports(engine).map(|(name, _)| name.to_string()).collect();
    check_exports(&exports)
}

fn check_exports(exports: &[String]) -> Result<(), LoadError> {
    let prefix = format!("{CONTRACT_PACKAGE}/slice@");
    let Some(found) = exports.iter().find_map(|name| name.strip_prefix(&prefix)) else {
        return Err(LoadError::NotASlice(format!(
            "it does not export {CONTRACT_PACKAGE}/slice (it exports: {})",
            if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
        )));
    };
    if !compatible(found, CONTRACT_VERSION) {
        return Err(LoadError::IncompatibleContract { found: found.to_string(), supported: CONTRACT_VERSION.to_string() });
    }
    Ok(())
}

/// Checks a component's bytes without compiling them (compiling is the expensive part of a
/// deploy): a component, not a core module; it exports a compatible `counterpoint:slice/slice`;
/// it imports only WASI and interfaces of a compatible `counterpoint:slice`. Linking after
/// compilation still checks every import exactly; this refuses early what it would refuse.
pub fn precheck(wasm: &[u8]) -> Result<(), LoadError> {
    use wasmparser::{Encoding, Parser, Payload};
    let malformed = |e: wasmparser::BinaryReaderError| LoadError::NotAComponent(e.to_string());
    let (mut depth, mut imports, mut exports) = (0usize, Vec::new(), Vec::new());
    // Nested modules and components come inline, each between its header and its end: only the
    // outermost component's imports and exports are the slice's.
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(malformed)? {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err(LoadError::NotAComponent("a core module: build a component (wasm32-wasip2)".into()));
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    imports.push(import.map_err(malformed)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    exports.push(export.map_err(malformed)?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    check_exports(&exports)?;
    let ours = format!("{CONTRACT_PACKAGE}/");
    for import in &imports {
        if let Some(interface) = import.strip_prefix(&ours) {
            let found = interface.split_once('@').map_or("", |(_, version)| version);
            if !compatible(found, CONTRACT_VERSION) {
                return Err(LoadError::IncompatibleContract { found: found.to_string(), supported: CONTRACT_VERSION.to_string() });
            }
        } else if !import.starts_with("wasi:") {
            return Err(LoadError::Link(format!("{import} (a slice may import WASI and {CONTRACT_PACKAGE} only)")));
        }
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
