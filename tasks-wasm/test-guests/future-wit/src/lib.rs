//! Test guest built against `sei:task@0.2.0`: loading it must fail with
//! `WitVersionMismatch`, not a generic link error.

wit_bindgen::generate!({ world: "task-module", path: "wit" });

struct Future;

impl Guest for Future {
    fn describe() -> String {
        sei::task::log::info("describing");
        "future".into()
    }
}

export!(Future);
