//! Test guest that imports `wasi:clocks/wall-clock`. The host must refuse to load it with a
//! message naming the unlinked import. Its `wit/deps/sei-task` links to the project's `wit/`.

#![allow(clippy::too_many_arguments)] // in the bindings wit-bindgen generates

wit_bindgen::generate!({ world: "wasi-importer", path: "wit", generate_all });

struct Importer;

impl Guest for Importer {
    fn describe() -> TaskInfo {
        TaskInfo {
            name: "test-wasi-importer".into(),
            version: "0.1.0".into(),
            task_types: vec!["clock".into()],
            capabilities: vec![],
            default_timeout_ms: 0,
            max_retries: 0,
        }
    }
    fn execute(_input: TaskInput) -> Result<Step, TaskError> {
        let now = wasi::clocks::wall_clock::now();
        Ok(Step::Complete(now.seconds.to_string()))
    }
}

export!(Importer);
