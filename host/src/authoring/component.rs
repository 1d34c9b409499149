//! Turning a guest's build output into the component the controller loads.
//!
//! - [`wasm_kind`] tells a component from a core module (the controller loads components only;
//!   the CLI says how to make one instead of showing a parser error);
//! - [`componentize`] wraps a core module built against `wit/task.wit` (wit-bindgen embeds the
//!   world in a custom section) into a component with the `wit-component` version pinned in
//!   this repository's `Cargo.lock`: the same core module gives the same bytes on any machine
//!   (`componentize_is_deterministic`).

/// What a file of wasm bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    Component,
    CoreModule,
    NotWasm,
}

/// Read the wasm header (magic, then version and layer).
pub fn wasm_kind(bytes: &[u8]) -> WasmKind {
    match bytes {
        [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ..] => WasmKind::CoreModule,
        [0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00, ..] => WasmKind::Component,
        _ => WasmKind::NotWasm,
    }
}

/// Errors of turning a core module into a component.
#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    #[error("this is not a wasm file (no wasm header)")]
    NotWasm,
    #[error("wit-component could not make a component of this module: {0}")]
    Encode(String),
}

/// A component of `bytes`: a core module is componentized, a component is returned unchanged.
pub fn componentize(bytes: &[u8]) -> Result<Vec<u8>, ComponentizeError> {
    match wasm_kind(bytes) {
        WasmKind::Component => Ok(bytes.to_vec()),
        WasmKind::NotWasm => Err(ComponentizeError::NotWasm),
        WasmKind::CoreModule => wit_component::ComponentEncoder::default()
            .module(bytes)
            .and_then(|e| e.validate(true).encode())
            .map_err(|e| ComponentizeError::Encode(format!("{e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::BUILTIN_MODULES;

    #[test]
    fn kinds_are_told_apart() {
        assert_eq!(wasm_kind(BUILTIN_MODULES[0].bytes), WasmKind::Component);
        assert_eq!(wasm_kind(&[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]), WasmKind::CoreModule);
        assert_eq!(wasm_kind(b"#!/bin/sh"), WasmKind::NotWasm);
        assert_eq!(wasm_kind(&[]), WasmKind::NotWasm);
    }

    #[test]
    fn componentize_is_deterministic() {
        // A core module with the world embedded, as wit-bindgen makes one: take a built-in's.
        let core = crate::embedded::test_guest_core_path("test_guest_well_behaved");
        let core = std::fs::read(core).expect("the test guest's core module is built by host/build.rs");
        let a = componentize(&core).unwrap();
        let b = componentize(&core).unwrap();
        assert_eq!(wasm_kind(&a), WasmKind::Component);
        assert_eq!(a, b);
        assert!(matches!(componentize(b"nope"), Err(ComponentizeError::NotWasm)));
    }
}
