//! `task test`: the case file format and how a case's expectations are checked.
//!
//! A case file (YAML) names a module, a default node and grant, and a list of cases; each case
//! seeds the in-memory cluster (`objects`), scripts the sidecar (`sidecar`), runs up to `steps`
//! steps in the real sandbox, and checks `expect`:
//! - `outcome`: `complete`, `pending`, or an error kind (`transient`, `denied`, `out-of-fuel`, ...);
//! - `output`: every field given must be in the `complete` output (a subset match);
//! - `errorContains`: text the failure message must contain;
//! - `writes`, `deletes`, `sidecarCalls`: the exact lists of those calls, in order, as the
//!   report prints them (`kube apply v1/ConfigMap default/x`, `sidecar submit-task mark-ready ID`);
//! - `objects`: objects that must exist afterwards, each a subset match;
//! - `deniedCalls`: how many calls the capability guard refused.
//!
//! [`check`] is pure (`check_reports_each_unmet_expectation`).

use super::recording::Call;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseFile {
    /// The component to test (relative to the case file); `--module` overrides it.
    #[serde(default)]
    pub module: Option<String>,
    /// Capabilities granted (default: what the module's `describe` asks for). `[]` grants none.
    #[serde(default)]
    pub grant: Option<Vec<String>>,
    /// The default SeiNode: a path relative to the case file, or the object inline.
    #[serde(default)]
    pub node: Option<Value>,
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub task_type: String,
    #[serde(default)]
    pub node: Option<Value>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub checkpoint: Option<String>,
    #[serde(default)]
    pub grant: Option<Vec<String>>,
    /// Objects in the cluster before the first step.
    #[serde(default)]
    pub objects: Vec<Value>,
    #[serde(default)]
    pub sidecar: SidecarScript,
    #[serde(default = "one")]
    pub steps: u32,
    pub expect: Expect,
}

fn one() -> u32 {
    1
}

/// What the in-memory sidecar answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarScript {
    /// `GET /v0/status` (default `Initializing`, `Ready` once a `mark-ready` task completed).
    #[serde(default)]
    pub status: Option<String>,
    /// `GET /v0/healthz`.
    #[serde(default)]
    pub healthz: Option<bool>,
    /// Every sidecar call fails as `unavailable` with this message.
    #[serde(default)]
    pub down: Option<String>,
    /// What the sidecar does with each task type (default: completes at the first poll).
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskScript>,
}

/// A sidecar task's script.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskScript {
    #[serde(default)]
    pub complete_after: Option<u32>,
    #[serde(default)]
    pub fail_after: Option<u32>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub stall: bool,
}

impl TaskScript {
    pub fn to_script(&self) -> crate::adapters::sidecar::Script {
        use crate::adapters::sidecar::Script;
        match (self.stall, self.fail_after, self.complete_after) {
            (true, _, _) => Script::Stall,
            (_, Some(n), _) => Script::FailAfter(n, self.message.clone().unwrap_or_else(|| "failed".into())),
            (_, _, n) => Script::CompleteAfter(n.unwrap_or(0)),
        }
    }
}

/// What a case expects. Every field left out is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error_contains: Option<String>,
    #[serde(default)]
    pub writes: Option<Vec<String>>,
    #[serde(default)]
    pub deletes: Option<Vec<String>>,
    #[serde(default)]
    pub sidecar_calls: Option<Vec<String>>,
    #[serde(default)]
    pub objects: Option<Vec<Value>>,
    #[serde(default)]
    pub denied_calls: Option<usize>,
}

/// What a case's run produced, as `check` reads it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `complete`, `pending` or the error kind of the last step.
    pub outcome: String,
    pub output: Option<Value>,
    /// The last step's failure message, if it failed.
    pub error: Option<String>,
    pub calls: Vec<Call>,
    /// The cluster's objects after the run.
    pub objects: Vec<Value>,
    pub denied_calls: usize,
}

/// Does `actual` contain every field of `expected` (objects recursively, other values equal)?
pub fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|x| contains(x, v))),
        _ => actual == expected,
    }
}

fn lines(calls: &[Call], keep: impl Fn(&Call) -> bool) -> Vec<String> {
    calls.iter().filter(|c| keep(c)).map(Call::line).collect()
}

/// Every expectation `observed` does not meet, each as one sentence.
pub fn check(expect: &Expect, observed: &Observed) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(o) = &expect.outcome
        && *o != observed.outcome
    {
        let why = observed.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        failures.push(format!("outcome is {}{why}, expected {o}", observed.outcome));
    }
    if let Some(want) = &expect.output {
        match &observed.output {
            Some(out) if contains(out, want) => {}
            Some(out) => failures.push(format!("output {out} does not contain {want}")),
            None => failures.push(format!("no output (the task did not complete), expected one containing {want}")),
        }
    }
    if let Some(text) = &expect.error_contains {
        match &observed.error {
            Some(e) if e.contains(text.as_str()) => {}
            Some(e) => failures.push(format!("error `{e}` does not contain `{text}`")),
            None => failures.push(format!("no error, expected one containing `{text}`")),
        }
    }
    let mut compare = |what: &str, want: &Option<Vec<String>>, got: Vec<String>| {
        if let Some(want) = want
            && *want != got
        {
            failures.push(format!("{what} were {got:?}, expected {want:?}"));
        }
    };
    compare("writes", &expect.writes, lines(&observed.calls, |c| matches!(c, Call::Create { .. } | Call::Apply { .. })));
    compare("deletes", &expect.deletes, lines(&observed.calls, |c| matches!(c, Call::Delete { .. })));
    compare(
        "sidecar calls",
        &expect.sidecar_calls,
        lines(&observed.calls, |c| {
            matches!(c, Call::SubmitTask { .. } | Call::GetTask { .. } | Call::Status | Call::Healthz | Call::NodeId)
        }),
    );
    for want in expect.objects.iter().flatten() {
        if !observed.objects.iter().any(|o| contains(o, want)) {
            let name = want.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?");
            failures
                .push(format!("no object matches the expected {} {name}", want.get("kind").and_then(Value::as_str).unwrap_or("object")));
        }
    }
    if let Some(n) = expect.denied_calls
        && n != observed.denied_calls
    {
        failures.push(format!("{} calls were denied, expected {n}", observed.denied_calls));
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observed() -> Observed {
        Observed {
            outcome: "complete".into(),
            output: Some(json!({"status": "Ready", "n": 1})),
            error: None,
            calls: vec![
                Call::Status,
                Call::Apply {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    namespace: "default".into(),
                    name: "x".into(),
                    object: json!({}),
                },
            ],
            objects: vec![json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}})],
            denied_calls: 0,
        }
    }

    #[test]
    fn check_accepts_a_run_that_meets_every_expectation() {
        let expect: Expect = serde_yaml::from_str(
            "outcome: complete\noutput: {status: Ready}\nwrites: [kube apply v1/ConfigMap default/x]\ndeletes: []\n\
             sidecarCalls: [sidecar status]\nobjects: [{kind: ConfigMap, metadata: {name: x}, data: {a: '1'}}]\ndeniedCalls: 0\n",
        )
        .unwrap();
        assert_eq!(check(&expect, &observed()), Vec::<String>::new());
    }

    #[test]
    fn check_reports_each_unmet_expectation() {
        let expect: Expect = serde_yaml::from_str(
            "outcome: pending\noutput: {status: Busy}\nerrorContains: boom\nwrites: []\nsidecarCalls: []\n\
             objects: [{kind: ConfigMap, metadata: {name: y}}]\ndeniedCalls: 1\n",
        )
        .unwrap();
        let failures = check(&expect, &observed());
        assert_eq!(failures.len(), 7, "{failures:#?}");
        assert!(failures[0].starts_with("outcome is complete, expected pending"));
    }

    #[test]
    fn a_case_file_with_an_unknown_field_is_refused() {
        let err = serde_yaml::from_str::<CaseFile>("cases: [{name: a, taskType: t, expect: {outcom: complete}}]").unwrap_err();
        assert!(err.to_string().contains("outcom"), "{err}");
    }
}
