//! Test guest: a well-behaved module. Task type `echo` logs, reads a ConfigMap named in its
//! params from the node's namespace, and completes with its params and attempt as output.
//! Task type `count` is pending until its checkpoint counter reaches `params.steps`.
//! Task type `noop` completes at once with no output (the dispatch benchmark's step).
//! Task types `log-loop` and `kube-get-loop` make `params.n` host calls (`log`, or `kube get` of
//! the ConfigMap `params.name`), for the host-call benchmarks.

mod count;

use sei_task_sdk::prelude::*;

struct WellBehaved;

#[derive(Deserialize)]
struct LoopParams {
    n: u32,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct EchoParams {
    #[serde(default)]
    configmap: Option<String>,
}

impl TaskModule for WellBehaved {
    fn info() -> ModuleInfo {
        ModuleInfo::new("test-well-behaved", "0.1.0")
            .task_type("echo")
            .task_type("count")
            .task_type("noop")
            .task_type("log-loop")
            .task_type("kube-get-loop")
            .capability(Capability::KubeRead)
    }

    fn execute(input: Input) -> Result<Step, TaskError> {
        match input.task_type.as_str() {
            "echo" => {
                let params: EchoParams = input.params()?;
                log::info("echo step");
                let found = match params.configmap {
                    Some(name) => kube::get_raw("v1", "ConfigMap", &name)?.is_some(),
                    None => false,
                };
                let params_value: serde_json::Value = serde_json::from_str(&input.params_json).unwrap_or_default();
                Ok(Step::complete(&serde_json::json!({
                    "params": params_value,
                    "attempt": input.attempt,
                    "configmapFound": found,
                })))
            }
            "count" => match count::count_step(&input.params_json, input.checkpoint.as_deref()) {
                Ok((true, out)) => Ok(Step::Complete(out)),
                Ok((false, checkpoint)) => {
                    Ok(Step::Pending(sei_task_sdk::PendingStep { requeue_after_ms: 10, checkpoint, message: "counting".into() }))
                }
                Err(e) => Err(TaskError::InvalidParams(e)),
            },
            "noop" => Ok(Step::done()),
            "log-loop" => {
                let params: LoopParams = input.params()?;
                for _ in 0..params.n {
                    log::trace("x");
                }
                Ok(Step::done())
            }
            "kube-get-loop" => {
                let params: LoopParams = input.params()?;
                let name = params.name.unwrap_or_default();
                for _ in 0..params.n {
                    kube::get_raw("v1", "ConfigMap", &name)?;
                }
                Ok(Step::done())
            }
            other => Err(TaskError::Permanent(format!("unknown task type {other}"))),
        }
    }
}

sei_task_sdk::export_task_module!(WellBehaved);
